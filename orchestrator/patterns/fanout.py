"""`fanout`: the same request to N roles at once; every answer comes back, side by side.
Decision: `FanoutDecision`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from orchestrator.core.context import Context
from orchestrator.core.decisions import PatternDecisionBase
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.members import ask_all, require_answers


class FanoutSpec(PatternSpecBase):
    kind: Literal["fanout"]
    members: list[str] = Field(min_length=1, max_length=16, description="Roles asked; a role may repeat.")
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="Members' temperature (default: the request's)."
    )

    def roles(self) -> set[str]:
        return set(self.members)

    def max_calls(self) -> int:
        return len(self.members)

    def build(self, env: BuildEnv | None = None) -> FanoutPattern:
        return FanoutPattern(self)


class FanoutDecision(PatternDecisionBase):
    """How many members answered (the failed ones are in `failed_members`)."""

    kind: Literal["fanout"] = "fanout"
    answered: int = Field(description="Members that answered.")
    asked: int = Field(description="Members asked.")


@dataclass(frozen=True)
class FanoutPattern:
    spec: FanoutSpec

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        poll = await ask_all(ctx, self.spec.members, request.messages, name="member", temperature=self.spec.temperature)
        require_answers(poll, "the fanout")
        sections = []
        by_index = {a.index: a for a in poll.answers}
        for i, role in enumerate(self.spec.members):
            body = by_index[i].text.strip() if i in by_index else "(no answer: this member failed)"
            sections.append(f"### {i + 1}. {role}\n{body}")
        ctx.decide(FanoutDecision(answered=len(poll.answers), asked=len(self.spec.members), failed_members=poll.failed))
        return Answer(text="\n\n".join(sections))
