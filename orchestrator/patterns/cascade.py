"""`cascade`: the cheapest role answers first; a verifier accepts the answer or the next, stronger
role is asked; the first accepted answer is returned.

The verifier answers `yes`/`no` (a constrained choice) or a 1–10 score (accepted at `min_score`).
The last tier's answer is returned without verification: there is nobody left to escalate to.
A tier that fails, or a verification that fails, escalates. If the budget cannot pay for another
tier, the latest answer is returned and the trace says so.
Decisions: `cascade` (one entry per tier tried), `accepted_tier`, `escalated`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from cluster.errors import PatternFailed, StepFailed
from orchestrator.core.context import Context
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


@dataclass(frozen=True)
class CascadePattern:
    spec: CascadeSpec

    async def _verify(self, ctx: Context, question: str, answer: str, tier: int) -> tuple[bool, object]:
        """(accepted, what the verifier said)."""
        if self.spec.check == "score":
            value = await judging.score(ctx, self.spec.verifier, question, answer, name=f"verify[{tier}]")
            return value >= self.spec.min_score, value
        out = await ctx.call(
            self.spec.verifier,
            prompts.verify_messages(question, answer),
            name=f"verify[{tier}]",
            constraint=VERDICT,
            max_tokens=2,
            temperature=0.0,
        )
        verdict = out.text.strip().lower()
        return verdict == "yes", verdict

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        tiers = self.spec.tiers
        log: list[dict[str, object]] = []
        ctx.note("cascade", log)  # one entry per tier, filled in as the cascade goes
        latest: Answer | None = None
        for tier, role in enumerate(tiers):
            final = tier == len(tiers) - 1
            if tier > 0 and not can_afford(ctx, 1 if final else 2) and latest is not None:
                ctx.note("escalated", tier > 1)
                ctx.note("accepted_tier", {"tier": tier - 1, "reason": "budget: could not escalate further"})
                return latest
            try:
                out = await ctx.call(role, request.messages, name=f"tier[{tier}]")
            except StepFailed as exc:
                log.append({"tier": tier, "role": role, "error": str(exc)})
                continue
            latest = Answer(text=out.text, finish_reason=out.result.finish_reason)
            if final:
                log.append({"tier": tier, "role": role, "verdict": None, "accepted": True})
                break
            try:
                accepted, verdict = await self._verify(ctx, request.question, out.text, tier)
            except StepFailed as exc:
                accepted, verdict = False, f"verification failed: {exc}"
            log.append({"tier": tier, "role": role, "verdict": verdict, "accepted": accepted})
            if accepted:
                ctx.note("escalated", tier > 0)
                ctx.note("accepted_tier", {"tier": tier, "reason": "verified"})
                return latest
        if latest is None:
            raise PatternFailed(f"every cascade tier failed: {[e.get('error') for e in log]}")
        accepted_tier = next(e["tier"] for e in reversed(log) if "error" not in e)
        ctx.note("escalated", True)
        reason = (
            "last tier" if accepted_tier == len(tiers) - 1 else "stronger tiers failed; not accepted by the verifier"
        )
        ctx.note("accepted_tier", {"tier": accepted_tier, "reason": reason})
        return latest
