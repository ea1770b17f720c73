"""`consensus`: a vote; when agreement is below `threshold`, a stronger role decides instead.

The escalation role sees the question and the members' answers as numbered references (unless
`show_answers: false`). Below the threshold with no budget left for the escalation, the plurality
answer is returned and the decision says the escalation was skipped. Decision: `ConsensusDecision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from orchestrator.core.context import Context
from orchestrator.core.decisions import PatternDecisionBase
from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.ballot import BallotSpec, TallyRecord, embedder_for, poll_and_tally
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest
from orchestrator.patterns.kit.embedding import Embedder
from orchestrator.patterns.kit.spending import can_afford


class ConsensusSpec(BallotSpec):
    kind: Literal["consensus"]
    threshold: float = Field(
        0.6, gt=0.0, le=1.0, description="Agreement (winning weight / answered weight) needed to accept the vote."
    )
    escalate_to: str = Field("reasoner", description="Stronger role that answers when members disagree.")
    show_answers: bool = Field(True, description="Give the escalation role the members' answers as references.")

    def roles(self) -> set[str]:
        return {*self.members, self.escalate_to}

    def max_calls(self) -> int:
        return len(self.members) + 1

    def build(self, env: BuildEnv | None = None) -> ConsensusPattern:
        return ConsensusPattern(self, embedder_for(self, env))


class ConsensusDecision(PatternDecisionBase):
    """The members' vote and whether a stronger role answered instead (`escalated`)."""

    kind: Literal["consensus"] = "consensus"
    tally: TallyRecord = Field(description="The members' count: winner, agreement, tie, groups.")
    threshold: float = Field(description="The agreement the vote needed (the spec's threshold).")
    escalated_to: str | None = Field(
        default=None, description="The role that answered instead of the vote; null if none."
    )
    escalation_skipped: bool = Field(
        default=False, description="Agreement was below the threshold but the budget left no call to escalate."
    )
    why: str = Field(default="", description="Why the vote was not accepted, in words; '' when it was.")


@dataclass(frozen=True)
class ConsensusPattern:
    spec: ConsensusSpec
    embedder: Embedder | None = None

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        spec = self.spec
        count = await poll_and_tally(spec, self.embedder, request, ctx, "the consensus")
        answers, tally = count.answers, count.tally
        decision = ctx.decide(
            ConsensusDecision(tally=count.record(), threshold=spec.threshold, failed_members=count.failed)
        )
        if tally.winner is not None and tally.agreement >= spec.threshold:
            won = answers[tally.winner]
            return Answer(text=won.text, finish_reason=won.finish_reason)
        decision.why = f"agreement {tally.agreement:.2f} below threshold {spec.threshold:.2f}"
        if not can_afford(ctx, 1):
            # Out of budget: the plurality answer is still an answer; say it was not confirmed.
            decision.escalation_skipped = True
            won = answers[tally.winner if tally.winner is not None else 0]
            return Answer(text=won.text, finish_reason=won.finish_reason)
        decision.escalated, decision.escalated_to = True, spec.escalate_to
        if spec.show_answers:
            messages = prompts.references_messages(prompts.ESCALATE_SYSTEM, request.question, [a.text for a in answers])
        else:
            messages = request.messages
        out = await ctx.call(spec.escalate_to, messages, name="escalate")
        return Answer(text=out.text, finish_reason=out.result.finish_reason)
