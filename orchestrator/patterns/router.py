"""`router`: a classifier role picks a label under constrained decoding; that label's role answers.

The label is forced to be one of the configured labels (vLLM structured outputs, `choice`), so
the classifier can never answer off-list. Its confidence is the probability the classifier gave
the chosen label's first token, renormalised over the first tokens of all labels (from the
engine's top logprobs). Below `min_confidence`, or when the classifier call fails, the request
goes to `fallback`. Decision: `RouterDecision`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from cluster.errors import StepFailed
from cluster.spec import Strict
from orchestrator.core.context import Context
from orchestrator.core.decisions import PatternDecisionBase
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.classify import classify
from serving.types import TokenLogprob

TOP_LOGPROBS = 20


class Route(Strict):
    role: str = Field(description="Role that answers requests with this label.")
    when: str = Field("", description="What requests belong here; shown to the classifier.")


class RouterSpec(PatternSpecBase):
    kind: Literal["router"]
    classifier: str = Field("classifier", description="Role that labels the request.")
    routes: dict[str, Route] = Field(min_length=1, description="Label → the role that answers it.")
    fallback: str = Field("generalist", description="Role for unknown labels, low confidence or a failed classifier.")
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, description="Below this the fallback role answers.")

    @model_validator(mode="after")
    def _labels_distinct(self) -> RouterSpec:
        for label in self.routes:
            if not label.strip() or label != label.strip():
                raise ValueError(f"route label {label!r} must be non-empty with no surrounding spaces")
        return self

    def roles(self) -> set[str]:
        return {self.classifier, self.fallback, *(r.role for r in self.routes.values())}

    def max_calls(self) -> int:
        return 2

    def build(self, env: BuildEnv | None = None) -> RouterPattern:
        return RouterPattern(self)


RouterFallback = Literal["classifier_failed", "unknown_label", "low_confidence"]


class RouterDecision(PatternDecisionBase):
    """Which label the classifier chose, how sure it was, and which role answered."""

    kind: Literal["router"] = "router"
    label: str = Field(description="The classifier's label; '' when the classifier call failed.")
    confidence: float = Field(
        description="The label's probability among the labels (4 places); 0 when the call failed."
    )
    role: str = Field(description="The role that answered: the label's, or the fallback role.")
    fallback: RouterFallback | None = Field(
        default=None, description="Why the fallback role answered; null when routed."
    )
    why: str = Field(
        default="", description="The fallback reason in words (the classifier's error, the label, the confidence)."
    )


def label_confidence(logprobs: list[TokenLogprob] | None, chosen: str, labels: list[str]) -> float:
    """P(chosen) among the labels, judged at the first generated token.

    Each top alternative at position 0 votes its probability to the labels it begins; the
    chosen label's share of that mass is the confidence. Labels sharing a first token split it.
    Without logprobs the confidence is 1.0 (the constrained choice is all we know).
    """
    if not logprobs:
        return 1.0
    first = logprobs[0]
    alternatives = dict(first.top)
    alternatives.setdefault(first.token, first.logprob)
    mass = dict.fromkeys(labels, 0.0)
    for token, lp in alternatives.items():
        piece = token.strip()
        starts = [label for label in labels if piece and label.startswith(piece)]
        for label in starts:
            mass[label] += math.exp(lp) / len(starts)
    total = sum(mass.values())
    if total == 0.0:
        return 1.0
    return mass.get(chosen, 0.0) / total


@dataclass(frozen=True)
class RouterPattern:
    spec: RouterSpec

    async def classify(self, request: PatternRequest, ctx: Context) -> RouterDecision:
        """The route: the label's role, or the fallback role and why."""
        spec = self.spec
        labels = list(spec.routes)
        try:
            labelled = {k: r.when for k, r in spec.routes.items()}
            out = await classify(ctx, spec.classifier, labelled, request.question, logprobs=TOP_LOGPROBS)
        except StepFailed as exc:
            why = f"classifier failed: {exc}"
            return RouterDecision(label="", confidence=0.0, role=spec.fallback, fallback="classifier_failed", why=why)
        label = out.text.strip()
        confidence = label_confidence(out.result.logprobs, label, labels)
        routed = RouterDecision(label=label, confidence=round(confidence, 4), role=spec.fallback)
        if label not in spec.routes:
            routed.fallback, routed.why = "unknown_label", f"unknown label {label!r}"
        elif confidence < spec.min_confidence:
            routed.fallback = "low_confidence"
            routed.why = f"confidence {confidence:.2f} below min_confidence {spec.min_confidence:.2f}"
        else:
            routed.role = spec.routes[label].role
        return routed

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        route = ctx.decide(await self.classify(request, ctx))
        out = await ctx.call(route.role, request.messages, name="answer", final=True)
        return Answer(text=out.text, finish_reason=out.result.finish_reason)
