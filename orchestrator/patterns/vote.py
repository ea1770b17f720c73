"""`vote`: N members answer; the answer most of them (by weight) agree on wins.

What counts as agreeing is the extractor's business (`agreement`): exact text, a label, a final
number, or a semantic cluster. The winning group's representative answer is returned whole.
Decisions: `vote` (the tally), `agreement`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from orchestrator.core.context import Context
from cluster.errors import PatternFailed
from orchestrator.patterns.kit.tally import Tally
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.embedding import Embedder
from orchestrator.patterns.kit.members import MemberAnswer, ask_all, require_answers
from orchestrator.patterns.kit.ballot import AgreementFields, decide, embedder_for, tally_note


class BallotSpec(PatternSpecBase, AgreementFields):
    """Members that vote and how their answers are compared (vote, consensus and council)."""

    members: list[str] = Field(
        min_length=2, max_length=16, description="Voting roles; repeat a role to sample it again."
    )
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="Members' temperature; > 0 makes a repeated role sample different answers."
    )

    @model_validator(mode="after")
    def _weights_name_members(self) -> BallotSpec:
        self.check_weighted_roles(self.members)
        return self

    def roles(self) -> set[str]:
        return set(self.members)

    def max_calls(self) -> int:
        return len(self.members)


class VoteSpec(BallotSpec):
    kind: Literal["vote"]

    def build(self, env: BuildEnv | None = None) -> VotePattern:
        return VotePattern(self, embedder_for(self, env))


async def poll_and_tally(
    spec: BallotSpec,
    embedder: Embedder | None,
    request: PatternRequest,
    ctx: Context,
    what: str,
    candidates: bool = True,
) -> tuple[list[MemberAnswer], Tally]:
    """Ask every member, tally their answers, note the tally; shared with consensus and council."""
    poll = await ask_all(
        ctx,
        spec.members,
        spec.member_messages(request.messages),
        name="member",
        constraint=spec.member_constraint(),
        temperature=spec.temperature,
        candidate=candidates,
    )
    answers = require_answers(poll, what)
    tally = await decide(spec, answers, embedder)
    ctx.note("vote", tally_note(tally, answers))
    ctx.note("agreement", round(tally.agreement, 4))
    return answers, tally


@dataclass(frozen=True)
class VotePattern:
    spec: VoteSpec
    embedder: Embedder | None = None

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        answers, tally = await poll_and_tally(self.spec, self.embedder, request, ctx, "the vote")
        if tally.winner is None:
            raise PatternFailed(
                f"no member's answer held a {self.spec.extract} answer to vote on "
                f"({len(answers)} answered); check the members' answer format"
            )
        won = answers[tally.winner]
        return Answer(text=won.text, finish_reason=won.finish_reason)
