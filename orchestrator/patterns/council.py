"""`council`: members answer independently and in parallel; their answers are combined by
`merge` (a synthesizer writes one answer from them), `vote` (the majority answer) or `best_of_n`
(the judge's favourite). Agreement is always measured (same rules as `vote`); the answer ends
with a line stating it, flagging uncertainty when it is below `diverge_below`. If the
synthesizer fails, the representative member answer is returned (and the decision says so).
Decision: `CouncilDecision`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from cluster.errors import PatternFailed, StepFailed
from orchestrator.core.context import Context
from orchestrator.core.decisions import PatternDecisionBase
from orchestrator.patterns.kit import judging, prompts
from orchestrator.patterns.kit.ballot import BallotSpec, TallyRecord, embedder_for, poll_and_tally
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest
from orchestrator.patterns.kit.embedding import Embedder
from orchestrator.patterns.kit.members import MemberAnswer

Combine = Literal["merge", "vote", "best_of_n"]


class CouncilSpec(BallotSpec):
    kind: Literal["council"]
    combine: Combine = Field("merge", description="How the answers become one.")
    synthesizer: str = Field("synthesizer", description="combine: merge: the role that writes the combined answer.")
    judge: str = Field("judge", description="combine: best_of_n: the role that scores each answer.")
    diverge_below: float = Field(
        0.5, ge=0.0, le=1.0, description="Agreement below this is stated as divergence: the answer is flagged uncertain."
    )
    state_agreement: bool = Field(True, description="End the answer with a line stating the members' agreement.")
    extract: Literal["exact", "label", "numeric", "semantic"] = Field(
        "semantic", description="How agreement is measured (see vote); free text clusters by meaning."
    )

    def roles(self) -> set[str]:
        extra = {"merge": {self.synthesizer}, "best_of_n": {self.judge}, "vote": set()}[self.combine]
        return {*self.members, *extra}

    def max_calls(self) -> int:
        n = len(self.members)
        return n + {"merge": 1, "best_of_n": n, "vote": 0}[self.combine]

    def build(self, env: BuildEnv | None = None) -> CouncilPattern:
        return CouncilPattern(self, embedder_for(self, env))


class CouncilDecision(PatternDecisionBase):
    """How the members agreed and how their answers became one."""

    kind: Literal["council"] = "council"
    combine: Combine = Field(description="How the answers became one (the spec's combine).")
    tally: TallyRecord = Field(description="The members' agreement, measured as vote measures it.")
    uncertain: bool = Field(description="Agreement was below diverge_below: the answer is flagged uncertain.")
    answered: int = Field(description="Members that answered.")
    scores: list[judging.JudgedAnswer] = Field(
        default_factory=list, description="combine: best_of_n: the judge's score of each answer."
    )
    merge_failed: str | None = Field(
        default=None, description="combine: merge: why the synthesizer failed (the representative answer was returned)."
    )


def agreement_line(agreeing: int, answered: int, asked: int, agreement: float, uncertain: bool) -> str:
    line = f"Council agreement: {agreeing} of {answered} members agree ({agreement:.0%})"
    if answered < asked:
        line += f"; {asked - answered} of {asked} members failed to answer"
    if uncertain:
        line += ". The members diverge: treat this answer as uncertain."
    return line + "."


@dataclass(frozen=True)
class CouncilPattern:
    spec: CouncilSpec
    embedder: Embedder | None = None

    async def _combine(
        self,
        request: PatternRequest,
        ctx: Context,
        answers: list[MemberAnswer],
        winner: int | None,
        decision: CouncilDecision,
    ) -> str:
        spec = self.spec
        if spec.combine == "vote":
            if winner is None:
                raise PatternFailed(f"no council member's answer held a {spec.extract} answer to vote on")
            return answers[winner].text
        if spec.combine == "best_of_n":
            scores = await judging.score_all(ctx, spec.judge, request.question, [a.text for a in answers], name="judge")
            decision.scores = judging.judged(answers, scores)
            return answers[judging.best(scores) or 0].text
        messages = prompts.references_messages(prompts.MERGE_SYSTEM, request.question, [a.text for a in answers])
        try:
            out = await ctx.call(spec.synthesizer, messages, name="merge", final=True)
        except StepFailed as exc:
            # The members did answer: fall back to the one most of them agree with, and say so.
            decision.merge_failed = str(exc)
            return answers[winner if winner is not None else 0].text
        return out.text

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        spec = self.spec
        # With merge the synthesizer writes the answer; otherwise a member's answer is it.
        candidates = spec.combine != "merge"
        count = await poll_and_tally(spec, self.embedder, request, ctx, "the council", candidates=candidates)
        answers, tally = count.answers, count.tally
        uncertain = tally.agreement < spec.diverge_below
        decision = ctx.decide(
            CouncilDecision(
                combine=spec.combine,
                tally=count.record(),
                uncertain=uncertain,
                answered=len(answers),
                failed_members=count.failed,
            )
        )
        text = await self._combine(request, ctx, answers, tally.winner, decision)
        if spec.state_agreement and ctx.answer_format is None:  # a line after JSON would break it
            agreeing = len(tally.groups[0].members) if tally.groups else 0
            line = agreement_line(agreeing, len(answers), len(spec.members), tally.agreement, uncertain)
            text = f"{text.rstrip()}\n\n{line}"
        return Answer(text=text)
