"""`router`: a classifier role picks a label under constrained decoding; that label's role answers.

The label is forced to be one of the configured labels (vLLM structured outputs, `choice`), so
the classifier can never answer off-list. Its confidence is the probability the classifier gave
the chosen label's first token, renormalised over the first tokens of all labels (from the
engine's top logprobs). Below `min_confidence`, or when the classifier call fails, the request
goes to `fallback`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from cluster.spec import Strict
from serving.types import Choice, TokenLogprob

from orchestrator.patterns.kit import prompts
from orchestrator.core.context import Context, StepOutput
from cluster.errors import StepFailed
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase

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
    mass = {label: 0.0 for label in labels}
    for token, lp in alternatives.items():
        piece = token.strip()
        starts = [label for label in labels if piece and label.startswith(piece)]
        for label in starts:
            mass[label] += math.exp(lp) / len(starts)
    total = sum(mass.values())
    if total == 0.0:
        return 1.0
    return mass.get(chosen, 0.0) / total


async def classify(
    ctx: Context, classifier: str, labels: dict[str, str], question: str, *, logprobs: int | None = None
) -> StepOutput:
    """One `classify` step: `classifier` picks a label (label → when to pick it) under a Choice
    constraint, so it cannot answer off the list. Shared by router and adaptive."""
    return await ctx.call(
        classifier,
        prompts.router_messages(labels, question),
        name="classify",
        constraint=Choice(options=list(labels)),
        max_tokens=32,
        temperature=0.0,
        logprobs=logprobs,
    )


@dataclass(frozen=True)
class RouterPattern:
    spec: RouterSpec

    async def classify(self, request: PatternRequest, ctx: Context) -> tuple[str, str, float, str | None]:
        """Returns (role, label, confidence, why-fallback-or-None)."""
        labels = list(self.spec.routes)
        try:
            out = await classify(
                ctx, self.spec.classifier, {k: r.when for k, r in self.spec.routes.items()}, request.question,
                logprobs=TOP_LOGPROBS,
            )
        except StepFailed as exc:
            return self.spec.fallback, "", 0.0, f"classifier failed: {exc}"
        label = out.text.strip()
        confidence = label_confidence(out.result.logprobs, label, labels)
        if label not in self.spec.routes:
            return self.spec.fallback, label, confidence, f"unknown label {label!r}"
        if confidence < self.spec.min_confidence:
            return self.spec.fallback, label, confidence, (
                f"confidence {confidence:.2f} below min_confidence {self.spec.min_confidence:.2f}"
            )
        return self.spec.routes[label].role, label, confidence, None

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        role, label, confidence, why = await self.classify(request, ctx)
        ctx.note("route", {"label": label, "confidence": round(confidence, 4), "role": role, "fallback": why})
        out = await ctx.call(role, request.messages, name="answer", final=True)
        return Answer(text=out.text, finish_reason=out.result.finish_reason)

