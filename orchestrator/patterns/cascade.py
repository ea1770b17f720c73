"""`cascade`: the cheapest role answers first; a verifier accepts the answer or the next, stronger
role is asked; the first accepted answer is returned.

The verifier answers `yes`/`no` (a constrained choice) or a 1–10 score (accepted at `min_score`).
The last tier's answer is returned without verification: there is nobody left to escalate to.
A tier that fails, or a verification that fails, escalates. If the budget cannot pay for another
tier, the latest answer is returned and the decision says so. Decision: `CascadeDecision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cluster.errors import PatternFailed, StepFailed
from orchestrator.core.context import Context
from orchestrator.core.decisions import PatternDecisionBase
from orchestrator.patterns.kit import judging, prompts
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.spending import can_afford
from serving.types import Choice

VERDICT = Choice(options=["yes", "no"])


class CascadeSpec(PatternSpecBase):
    kind: Literal["cascade"]
    tiers: list[str] = Field(min_length=2, max_length=6, description="Roles from cheapest to strongest.")
    verifier: str = Field("verifier", description="Role that checks each answer but the last.")
    check: Literal["yes_no", "score"] = Field(
        "yes_no", description="yes_no: accept on 'yes'; score: accept at min_score."
    )
    min_score: int = Field(7, ge=1, le=10, description="check: score: the lowest accepted score (1-10).")

    @model_validator(mode="after")
    def _distinct(self) -> CascadeSpec:
        if len(set(self.tiers)) != len(self.tiers):
            raise ValueError(f"tiers repeat a role ({self.tiers}); escalating to the same role cannot help")
        return self

    def roles(self) -> set[str]:
        return {*self.tiers, self.verifier}

    def max_calls(self) -> int:
        return 2 * len(self.tiers) - 1

    def build(self, env: BuildEnv | None = None) -> CascadePattern:
        return CascadePattern(self)


class TierTried(BaseModel):
    """One tier the cascade asked, and what the verifier made of its answer."""

    model_config = ConfigDict(extra="forbid")

    tier: int = Field(description="Position in tiers (0 = cheapest).")
    role: str = Field(description="The tier's role.")
    error: str | None = Field(default=None, description="Why the tier's call failed; null when it answered.")
    verdict: str | None = Field(default=None, description="check: yes_no: what the verifier said ('yes' or 'no').")
    score: int | None = Field(default=None, description="check: score: the verifier's score, 1-10.")
    verify_error: str | None = Field(default=None, description="Why the verification failed (the cascade escalated).")
    accepted: bool = Field(
        default=False, description="Its answer was accepted (the last tier's always is, unverified)."
    )


AcceptedBecause = Literal["verified", "last_tier", "budget", "stronger_tiers_failed"]


class CascadeDecision(PatternDecisionBase):
    """Every tier tried, and which tier's answer was returned and why (`escalated`: not the first)."""

    kind: Literal["cascade"] = "cascade"
    tiers: list[TierTried] = Field(default_factory=list, description="Each tier asked, in order.")
    accepted_tier: int | None = Field(default=None, description="The tier whose answer was returned.")
    accepted_because: AcceptedBecause | None = Field(
        default=None,
        description="verified: the verifier accepted it; last_tier: nobody left to escalate to; budget: no "
        "budget to escalate further; stronger_tiers_failed: the stronger tiers failed, the answer was not accepted.",
    )


@dataclass(frozen=True)
class CascadePattern:
    spec: CascadeSpec

    async def _verify(self, ctx: Context, question: str, answer: str, tried: TierTried) -> None:
        """Records the verifier's verdict or score, and whether it accepts, in `tried`."""
        tier = tried.tier
        if self.spec.check == "score":
            value = await judging.score(ctx, self.spec.verifier, question, answer, name=f"verify[{tier}]")
            tried.score, tried.accepted = value, value >= self.spec.min_score
            return
        out = await ctx.call(
            self.spec.verifier,
            prompts.verify_messages(question, answer),
            name=f"verify[{tier}]",
            constraint=VERDICT,
            max_tokens=2,
            temperature=0.0,
        )
        tried.verdict = out.text.strip().lower()
        tried.accepted = tried.verdict == "yes"

    @staticmethod
    def _accept(decision: CascadeDecision, tier: int, because: AcceptedBecause) -> None:
        decision.accepted_tier, decision.accepted_because = tier, because
        decision.escalated = tier > 0

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        tiers = self.spec.tiers
        decision = ctx.decide(CascadeDecision())  # one entry per tier, filled in as the cascade goes
        latest: Answer | None = None
        for tier, role in enumerate(tiers):
            final = tier == len(tiers) - 1
            if tier > 0 and not can_afford(ctx, 1 if final else 2) and latest is not None:
                self._accept(decision, tier - 1, "budget")
                return latest
            tried = TierTried(tier=tier, role=role)
            decision.tiers.append(tried)
            try:
                out = await ctx.call(role, request.messages, name=f"tier[{tier}]")
            except StepFailed as exc:
                tried.error = str(exc)
                continue
            latest = Answer(text=out.text, finish_reason=out.result.finish_reason)
            if final:
                tried.accepted = True
                break
            try:
                await self._verify(ctx, request.question, out.text, tried)
            except StepFailed as exc:
                tried.verify_error, tried.accepted = str(exc), False
            if tried.accepted:
                self._accept(decision, tier, "verified")
                return latest
        if latest is None:
            raise PatternFailed(f"every cascade tier failed: {[t.error for t in decision.tiers]}")
        accepted_tier = next(t.tier for t in reversed(decision.tiers) if t.error is None)
        self._accept(
            decision, accepted_tier, "last_tier" if accepted_tier == len(tiers) - 1 else "stronger_tiers_failed"
        )
        decision.escalated = True  # the cascade went past the accepted tier, even if only to fail
        return latest
