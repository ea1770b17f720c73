"""`single`: one role answers the conversation as it is. Decision: `SingleDecision` (nothing to
choose: only the common fields)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrator.core.context import Context
from orchestrator.core.decisions import PatternDecisionBase
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


class SingleDecision(PatternDecisionBase):
    """One role answered; there was nothing to choose."""

    kind: Literal["single"] = "single"


@dataclass(frozen=True)
class SinglePattern:
    spec: SingleSpec
    # A hosted model asked by name (trace kind "model") runs as this pattern, but no pattern
    # decided anything: its trace has no decision.
    hosted: bool = False

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        if not self.hosted:
            ctx.decide(SingleDecision())
        out = await ctx.call(self.spec.role, request.messages, name="answer", final=True)
        return Answer(text=out.text, finish_reason=out.result.finish_reason)
