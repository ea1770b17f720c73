"""`vote`: N members answer; the answer most of them (by weight) agree on wins.

What counts as agreeing is the extractor's business (`kit/tally.py`): exact text, a label, a final
number, or a semantic cluster. The winning group's representative answer is returned whole.
Decision: `VoteDecision` (the tally).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from cluster.errors import PatternFailed
from orchestrator.core.context import Context
from orchestrator.core.decisions import PatternDecisionBase
from orchestrator.patterns.kit.ballot import BallotSpec, TallyRecord, embedder_for, poll_and_tally
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest
from orchestrator.patterns.kit.embedding import Embedder


class VoteSpec(BallotSpec):
    kind: Literal["vote"]

    def build(self, env: BuildEnv | None = None) -> VotePattern:
        return VotePattern(self, embedder_for(self, env))


class VoteDecision(PatternDecisionBase):
    """How the members' answers were counted and which won."""

    kind: Literal["vote"] = "vote"
    tally: TallyRecord = Field(description="The count: winner, agreement, tie, groups.")


@dataclass(frozen=True)
class VotePattern:
    spec: VoteSpec
    embedder: Embedder | None = None

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        count = await poll_and_tally(self.spec, self.embedder, request, ctx, "the vote")
        ctx.decide(VoteDecision(tally=count.record(), failed_members=count.failed))
        if count.tally.winner is None:
            raise PatternFailed(
                f"no member's answer held a {self.spec.extract} answer to vote on "
                f"({len(count.answers)} answered); check the members' answer format"
            )
        won = count.answers[count.tally.winner]
        return Answer(text=won.text, finish_reason=won.finish_reason)
