"""`adaptive`: picks one of the configured patterns per request, then runs it.

The classifier role labels the request (a constrained choice over the configured labels, e.g.
`simple` / `hard`); each label names a pattern (`simple → single`, `hard → council`). If the
request's budget cannot pay for that pattern's worst case (its `max_calls`, and for a token
budget those calls at the sampling token limit), the most thorough configured pattern that fits
is taken instead (most worst-case calls; config order on ties). A failed classifier means the
`fallback` pattern. The chosen pattern runs with the same context, so its steps join this trace;
its decision is nested in this one's (`AdaptiveDecision.chosen_decision`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, SerializeAsAny, model_validator

from cluster.errors import BudgetExceeded, StepFailed
from cluster.spec import Strict
from orchestrator.core.context import Context
from orchestrator.core.decisions import DecisionBase, PatternDecisionBase
from orchestrator.patterns.kit.base import Answer, BuildEnv, Pattern, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.classify import classify
from orchestrator.patterns.kit.spending import calls_left, tokens_left


class AdaptiveRoute(Strict):
    pattern: str = Field(description="Name of a configured pattern (under patterns:) that answers this label.")
    when: str = Field("", max_length=500, description="What requests get this label; shown to the classifier.")


class AdaptiveSpec(PatternSpecBase):
    kind: Literal["adaptive"]
    classifier: str = Field("classifier", description="Role that labels the request.")
    routes: dict[str, AdaptiveRoute] = Field(
        min_length=1, max_length=16, description="Label → the pattern that answers."
    )
    fallback: str = Field(description="Pattern for a failed classifier; also a candidate when the budget is tight.")

    @model_validator(mode="after")
    def _labels(self) -> AdaptiveSpec:
        for label in self.routes:
            if not label.strip() or label != label.strip():
                raise ValueError(f"label {label!r} must be non-empty with no surrounding spaces")
        return self

    def roles(self) -> set[str]:
        return {self.classifier}

    def uses(self) -> set[str]:
        return {self.fallback, *(r.pattern for r in self.routes.values())}

    def candidates(self) -> list[str]:
        """Every pattern it may run, in config order (routes, then the fallback), once each."""
        return list(dict.fromkeys([*(r.pattern for r in self.routes.values()), self.fallback]))

    def max_calls(self) -> int:
        raise NotImplementedError("adaptive's worst case depends on the patterns it names; see AdaptivePattern.costs")

    def build(self, env: BuildEnv | None = None) -> AdaptivePattern:
        env = env or BuildEnv()
        missing = sorted(self.uses() - set(env.patterns))
        if missing:
            raise ValueError(
                f"adaptive needs the built pattern(s) {', '.join(missing)}; build it with build_patterns()"
            )
        names = self.candidates()
        return AdaptivePattern(
            self,
            patterns={n: env.patterns[n] for n in names},
            costs={n: env.specs[n].max_calls() for n in names},
        )


class AdaptiveDecision(PatternDecisionBase):
    """Which pattern adaptive ran and why, with that pattern's own decision nested.

    `early_stop` and `escalated` are the chosen pattern's, so the trace totals show them.
    """

    kind: Literal["adaptive"] = "adaptive"
    label: str = Field(description="The classifier's label; '' when the classifier call failed.")
    preferred: str = Field(description="The pattern the label names (the fallback pattern on a fallback).")
    chosen: str = Field(description="The pattern that ran: the preferred one, unless the budget could not pay for it.")
    fallback: Literal["classifier_failed", "unknown_label"] | None = Field(
        default=None, description="Why the fallback pattern was preferred; null when the label named it."
    )
    over_budget: bool = Field(default=False, description="The preferred pattern's worst case did not fit the budget.")
    why: str = Field(description="The choice in words: the label, the fallback reason, the budget left.")
    chosen_decision: SerializeAsAny[DecisionBase] | None = Field(
        default=None,
        description="The chosen pattern's decision (read it with orchestrator.patterns.parse_decision); "
        "null until that pattern has run.",
    )

    def nest(self, decision: DecisionBase | None) -> None:
        """Take in the chosen pattern's decision, and its outcome flags for the trace totals."""
        self.chosen_decision = decision
        self.early_stop = decision is not None and decision.early_stop
        self.escalated = decision is not None and decision.escalated


@dataclass(frozen=True)
class AdaptivePattern:
    spec: AdaptiveSpec
    patterns: Mapping[str, Pattern]
    costs: Mapping[str, int]  # worst-case model calls of each candidate

    def affordable(self, ctx: Context, name: str) -> bool:
        calls, tokens = calls_left(ctx), tokens_left(ctx)
        cost = self.costs[name]
        return (calls is None or cost <= calls) and (tokens is None or cost * ctx.sampling.max_tokens <= tokens)

    async def classify(self, request: PatternRequest, ctx: Context) -> AdaptiveDecision:
        """The preferred pattern and why (`chosen` is the preferred one, before the budget check)."""
        spec = self.spec
        try:
            out = await classify(ctx, spec.classifier, {k: r.when for k, r in spec.routes.items()}, request.question)
        except StepFailed as exc:
            return AdaptiveDecision(
                label="",
                preferred=spec.fallback,
                chosen=spec.fallback,
                fallback="classifier_failed",
                why=f"classifier failed ({exc}); fallback",
            )
        label = out.text.strip()
        if label not in spec.routes:
            return AdaptiveDecision(
                label=label,
                preferred=spec.fallback,
                chosen=spec.fallback,
                fallback="unknown_label",
                why=f"unknown label {label!r}; fallback",
            )
        pattern = spec.routes[label].pattern
        return AdaptiveDecision(label=label, preferred=pattern, chosen=pattern, why=f"label {label!r}")

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        decision = await self.classify(request, ctx)
        preferred = decision.preferred
        if not self.affordable(ctx, preferred):
            fitting = [n for n in self.spec.candidates() if self.affordable(ctx, n)]
            budget = f"{calls_left(ctx)} calls / {tokens_left(ctx)} tokens left"
            if not fitting:
                raise BudgetExceeded(
                    f"adaptive: no configured pattern fits the remaining budget ({budget}); "
                    f"worst cases: {dict(self.costs)}"
                )
            chosen = max(fitting, key=lambda n: self.costs[n])  # max keeps the first of equals: config order
            decision.chosen, decision.over_budget = chosen, True
            decision.why += (
                f"; {preferred} needs up to {self.costs[preferred]} calls, over budget ({budget}): took {chosen}"
            )
        ctx.decide(decision)
        answer = await self.patterns[decision.chosen].run(request, ctx)
        # The chosen pattern recorded its own decision in the trace; adaptive's holds it.
        decision.nest(ctx.trace.decision if ctx.trace.decision is not decision else None)
        ctx.decide(decision)
        return answer
