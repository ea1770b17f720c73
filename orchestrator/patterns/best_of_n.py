"""`best_of_n`: N members answer concurrently; a judge scores each 1–10 (concurrently too); the
highest score wins, the earliest member on ties. If no judgement succeeds, the first answer is
returned and the decision says it was unjudged. Decision: `BestOfNDecision`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from orchestrator.core.context import Context
from orchestrator.core.decisions import PatternDecisionBase
from orchestrator.patterns.kit import judging
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.members import ask_all, require_answers


class BestOfNSpec(PatternSpecBase):
    kind: Literal["best_of_n"]
    members: list[str] = Field(
        min_length=2, max_length=16, description="Roles that answer; repeat a role for N samples."
    )
    judge: str = Field("judge", description="Role that scores each answer 1-10.")
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="Members' temperature; > 0 makes a repeated role sample different answers."
    )

    def roles(self) -> set[str]:
        return {*self.members, self.judge}

    def max_calls(self) -> int:
        return 2 * len(self.members)

    def build(self, env: BuildEnv | None = None) -> BestOfNPattern:
        return BestOfNPattern(self)


class BestOfNDecision(PatternDecisionBase):
    """The judge's score of every answer and which answer was returned."""

    kind: Literal["best_of_n"] = "best_of_n"
    scores: list[judging.JudgedAnswer] = Field(description="One per member that answered, in member order.")
    best: int = Field(description="Member index of the returned answer.")
    judged: bool = Field(description="False when no judgement succeeded and the first answer was returned.")


@dataclass(frozen=True)
class BestOfNPattern:
    spec: BestOfNSpec

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        poll = await ask_all(
            ctx, self.spec.members, request.messages, name="member", temperature=self.spec.temperature, candidate=True
        )
        answers = require_answers(poll, "best_of_n")
        scores = await judging.score_all(
            ctx, self.spec.judge, request.question, [a.text for a in answers], name="judge"
        )
        pick = judging.best(scores)
        won = answers[pick or 0]
        ctx.decide(
            BestOfNDecision(
                scores=judging.judged(answers, scores),
                best=won.index,
                judged=pick is not None,
                failed_members=poll.failed,
            )
        )
        return Answer(text=won.text, finish_reason=won.finish_reason)
