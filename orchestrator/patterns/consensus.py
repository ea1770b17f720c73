"""`consensus`: a vote; when agreement is below `threshold` (or fewer than `min_votes` members
agree), a stronger role decides instead.

Thresholds are read to two decimals (0.67 accepts 2 of 3 members). The escalation role sees the
question and the members' answers as numbered references (unless `show_answers: false`), with the
members' answer format and constraint, so an escalated answer reads like an accepted one. When
every member fails, the escalation role answers alone. Below the threshold with no budget left for
the escalation, the plurality answer is returned and the decision says the escalation was skipped.
With `early_stop` (the default) it stops asking once the answers in hand decide the vote and
cancels the members still running (their engine requests aborted). Decision: `ConsensusDecision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from orchestrator.core.context import Context
from orchestrator.core.decisions import PatternDecisionBase
from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.ballot import (
    BallotSpec,
    TallyRecord,
    accepts,
    decided,
    embedder_for,
    poll_members,
    tally_poll,
)
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest
from orchestrator.patterns.kit.embedding import Embedder
from orchestrator.patterns.kit.members import MemberAnswer, require_answers
from orchestrator.patterns.kit.spending import can_afford


class ConsensusSpec(BallotSpec):
    kind: Literal["consensus"]
    threshold: float = Field(
        0.6,
        gt=0.0,
        le=1.0,
        description="Agreement (winning weight / answered weight) needed to accept the vote, read to two "
        "decimals: 0.67 accepts 2 of 3.",
    )
    min_votes: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Instead of threshold: accept when at least this many members agree (2 = any two agree).",
    )
    escalate_to: str = Field("reasoner", description="Stronger role that answers when members disagree.")
    show_answers: bool = Field(True, description="Give the escalation role the members' answers as references.")
    early_stop: bool = Field(
        True,
        description="Stop once the answers in hand carry the vote whatever the rest say; the members still "
        "running are cancelled and their engine requests aborted (not with extract: semantic).",
    )

    @model_validator(mode="after")
    def _min_votes_fits(self) -> ConsensusSpec:
        if self.min_votes is not None and self.min_votes > len(self.members):
            raise ValueError(f"min_votes={self.min_votes} exceeds the {len(self.members)} members; no vote could pass")
        return self

    def roles(self) -> set[str]:
        return {*self.members, self.escalate_to}

    def max_calls(self) -> int:
        return len(self.members) + 1

    def build(self, env: BuildEnv | None = None) -> ConsensusPattern:
        return ConsensusPattern(self, embedder_for(self, env))


class ConsensusDecision(PatternDecisionBase):
    """The members' vote and whether a stronger role answered instead (`escalated`)."""

    kind: Literal["consensus"] = "consensus"
    tally: TallyRecord | None = Field(
        description="The members' count: winner, agreement, tie, groups; null when no member answered."
    )
    threshold: float = Field(description="The agreement the vote needed (the spec's threshold, read to two decimals).")
    min_votes: int | None = Field(
        default=None, description="The members that had to agree instead of the threshold (the spec's); null: threshold."
    )
    escalated_to: str | None = Field(
        default=None, description="The role that answered instead of the vote; null if none."
    )
    escalation_skipped: bool = Field(
        default=False, description="Agreement was below the threshold but the budget left no call to escalate."
    )
    why: str = Field(
        default="",
        description="Why the vote was not accepted (agreement, votes, or no member answered), in words; '' when it was.",
    )
    stopped_members: list[str] = Field(
        default_factory=list,
        description="Member steps ('member[2]') cancelled, their engine requests aborted, because the answers "
        "already in carried the vote (`early_stop`); `early_stop` is true when any were.",
    )


@dataclass(frozen=True)
class ConsensusPattern:
    spec: ConsensusSpec
    embedder: Embedder | None = None

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        spec = self.spec
        threshold = None if spec.min_votes is not None else spec.threshold
        settled = decided(spec, spec.members, threshold, spec.min_votes) if spec.early_stop else None
        poll = await poll_members(spec, request, ctx, settled)
        decision = ctx.decide(
            ConsensusDecision(
                tally=None,
                threshold=spec.threshold,
                min_votes=spec.min_votes,
                failed_members=poll.failed,
                early_stop=bool(poll.stopped),
                stopped_members=poll.stopped,
            )
        )
        if not poll.answers:
            # Every member failed: the stronger role is exactly who should answer now.
            if not can_afford(ctx, 1):
                require_answers(poll, "the consensus")  # raises PatternFailed naming every error
            decision.why = f"no member answered ({len(poll.failed)} failed)"
            return await self._escalate(request, ctx, decision, [])
        count = await tally_poll(spec, self.embedder, poll, "the consensus")
        answers, tally = count.answers, count.tally
        decision.tally = count.record()
        votes = len(tally.groups[0].members) if tally.groups else 0
        if tally.winner is not None and accepts(tally.agreement, votes, threshold, spec.min_votes):
            won = answers[tally.winner]
            return Answer(text=won.text, finish_reason=won.finish_reason)
        if spec.min_votes is not None:
            decision.why = f"{votes} member(s) agree, fewer than min_votes {spec.min_votes}"
        else:
            decision.why = f"agreement {tally.agreement:.2f} below threshold {spec.threshold:.2f}"
        if not can_afford(ctx, 1):
            # Out of budget: the plurality answer is still an answer; say it was not confirmed.
            decision.escalation_skipped = True
            won = answers[tally.winner if tally.winner is not None else 0]
            return Answer(text=won.text, finish_reason=won.finish_reason)
        return await self._escalate(request, ctx, decision, answers)

    async def _escalate(
        self, request: PatternRequest, ctx: Context, decision: ConsensusDecision, answers: list[MemberAnswer]
    ) -> Answer:
        """The escalation role answers in the members' format (one output contract for both paths)."""
        spec = self.spec
        decision.escalated, decision.escalated_to = True, spec.escalate_to
        if spec.show_answers and answers:
            messages = prompts.references_messages(prompts.ESCALATE_SYSTEM, request.question, [a.text for a in answers])
        else:
            messages = request.messages
        out = await ctx.call(
            spec.escalate_to, spec.member_messages(messages), name="escalate", constraint=spec.member_constraint()
        )
        return Answer(text=out.text, finish_reason=out.result.finish_reason)
