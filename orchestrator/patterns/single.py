"""`single`: one role answers the conversation as it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrator.core.context import Context
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase


class SingleSpec(PatternSpecBase):
    kind: Literal["single"]
    role: str = "generalist"

    def roles(self) -> set[str]:
        return {self.role}

    def max_calls(self) -> int:
        return 1

    def build(self, env: BuildEnv | None = None) -> SinglePattern:
        return SinglePattern(self)


@dataclass(frozen=True)
class SinglePattern:
    spec: SingleSpec

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        out = await ctx.call(self.spec.role, request.messages, name="answer", final=True)
        return Answer(text=out.text, finish_reason=out.result.finish_reason)
