"""`consensus`: a vote; when agreement is below `threshold`, a stronger role decides instead.

The escalation role sees the question and the members' answers as numbered references (unless
`show_answers: false`). With `early_stop` (the default) it stops asking once the answers in hand
decide the vote and cancels the members still running. Decisions: `vote`, `agreement`,
`escalated` (False, or the reason and role), `escalation_skipped` (below threshold but no budget
left for the escalation), `stopped_members` (members cancelled by the early stop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from orchestrator.core.context import Context
from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.ballot import decided, embedder_for
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest
from orchestrator.patterns.kit.embedding import Embedder
from orchestrator.patterns.kit.spending import can_afford
from orchestrator.patterns.vote import BallotSpec, poll_and_tally


class ConsensusSpec(BallotSpec):
    kind: Literal["consensus"]
    threshold: float = Field(
        0.6, gt=0.0, le=1.0, description="Agreement (winning weight / answered weight) needed to accept the vote."
    )
    escalate_to: str = Field("reasoner", description="Stronger role that answers when members disagree.")
    show_answers: bool = Field(True, description="Give the escalation role the members' answers as references.")
    early_stop: bool = Field(
        True,
        description="Stop once the answers in hand carry the vote whatever the rest say; the members still "
        "running are cancelled and their engine requests aborted (not with extract: semantic).",
    )

    def roles(self) -> set[str]:
        return {*self.members, self.escalate_to}

    def max_calls(self) -> int:
        return len(self.members) + 1

    def build(self, env: BuildEnv | None = None) -> ConsensusPattern:
        return ConsensusPattern(self, embedder_for(self, env))


@dataclass(frozen=True)
class ConsensusPattern:
    spec: ConsensusSpec
    embedder: Embedder | None = None

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        spec = self.spec
        settled = decided(spec, spec.members, spec.threshold) if spec.early_stop else None
        answers, tally = await poll_and_tally(spec, self.embedder, request, ctx, "the consensus", settled)
        if tally.winner is not None and tally.agreement >= spec.threshold:
            ctx.note("escalated", False)
            won = answers[tally.winner]
            return Answer(text=won.text, finish_reason=won.finish_reason)
        why = f"agreement {tally.agreement:.2f} below threshold {spec.threshold:.2f}"
        if not can_afford(ctx, 1):
            # Out of budget: the plurality answer is still an answer; say it was not confirmed.
            ctx.note("escalated", False)
            ctx.note("escalation_skipped", {"reason": why, "skipped": "budget"})
            won = answers[tally.winner if tally.winner is not None else 0]
            return Answer(text=won.text, finish_reason=won.finish_reason)
        ctx.note("escalated", {"reason": why, "role": spec.escalate_to})
        if spec.show_answers:
            messages = prompts.references_messages(prompts.ESCALATE_SYSTEM, request.question, [a.text for a in answers])
        else:
            messages = request.messages
        out = await ctx.call(spec.escalate_to, messages, name="escalate")
        return Answer(text=out.text, finish_reason=out.result.finish_reason)
