"""`pyramid`: a layered mixture of agents, e.g. 5 → 3 → 1 roles.

Layer 1 answers the conversation. Each later layer sees the question and the previous layer's
answers as numbered references, placed after a prefix every member of every layer shares (so the
engine's prefix cache serves it). After any layer but the last, if its members' agreement reaches
`early_stop`, the pyramid stops and returns that layer's representative answer. The last layer
(one role) aggregates. A layer whose members all fail ends the request; some failing is recorded;
if the aggregator fails, the layer below's representative answer stands (recorded too).
Decision: `PyramidDecision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cluster.errors import StepFailed
from orchestrator.core.context import Context
from orchestrator.core.decisions import FailedMember, PatternDecisionBase
from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.ballot import AgreementFields, decide, embedder_for
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.embedding import Embedder
from orchestrator.patterns.kit.members import ask_all, require_answers
from orchestrator.patterns.kit.spending import can_afford
from serving.types import Message


class PyramidSpec(PatternSpecBase, AgreementFields):
    kind: Literal["pyramid"]
    layers: list[list[str]] = Field(
        min_length=2, max_length=6, description="Roles per layer, first to last; the last layer has one role."
    )
    early_stop: float | None = Field(
        0.8, gt=0.0, le=1.0, description="Stop after a layer whose agreement reaches this; null never stops early."
    )
    extract: Literal["exact", "label", "numeric", "semantic"] = Field(
        "semantic", description="How a layer's agreement is measured (see vote)."
    )
    temperature: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        description="Temperature of every layer but the last (the aggregator samples as the request says).",
    )

    @model_validator(mode="after")
    def _shape(self) -> PyramidSpec:
        for i, layer in enumerate(self.layers, start=1):
            if not 1 <= len(layer) <= 16:
                raise ValueError(f"layer {i} has {len(layer)} roles; give each layer 1 to 16")
        if len(self.layers[-1]) != 1:
            raise ValueError(
                f"the last layer aggregates and must have exactly one role, not {self.layers[-1]}; "
                f"add a final layer such as [synthesizer]"
            )
        self.check_weighted_roles({r for layer in self.layers for r in layer})
        return self

    def roles(self) -> set[str]:
        return {r for layer in self.layers for r in layer}

    def max_calls(self) -> int:
        return sum(len(layer) for layer in self.layers)

    def build(self, env: BuildEnv | None = None) -> PyramidPattern:
        return PyramidPattern(self, embedder_for(self, env))


class LayerRun(BaseModel):
    """One layer that ran."""

    model_config = ConfigDict(extra="forbid")

    layer: int = Field(description="1-based layer number.")
    answered: int = Field(description="Members of the layer that answered.")
    agreement: float | None = Field(
        default=None, description="The layer's agreement (4 places); null for the last layer, which aggregates."
    )


class PyramidDecision(PatternDecisionBase):
    """The layers that ran, their agreement, and whether the pyramid stopped early (`early_stop`)."""

    kind: Literal["pyramid"] = "pyramid"
    layers: list[LayerRun] = Field(default_factory=list, description="Each layer that ran, in order.")
    agreement: float | None = Field(default=None, description="The agreement of the last layer that measured one.")
    stopped_after_layer: int | None = Field(default=None, description="On an early stop: the last layer that ran.")
    stop_reason: Literal["agreement", "budget"] | None = Field(
        default=None,
        description="On an early stop: agreement reached early_stop, or the budget could not pay for more.",
    )

    def stop(self, after_layer: int, reason: Literal["agreement", "budget"]) -> None:
        self.early_stop, self.stopped_after_layer, self.stop_reason = True, after_layer, reason


@dataclass(frozen=True)
class PyramidPattern:
    spec: PyramidSpec
    embedder: Embedder | None = None

    def _messages(self, request: PatternRequest, references: list[str]) -> list[Message]:
        # Every layer answers in the same format, so numeric voting can read later layers too.
        return self.spec.member_messages(prompts.pyramid_messages(request.messages, references))

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        spec = self.spec
        decision = ctx.decide(PyramidDecision())  # filled in as layers finish
        references: list[str] = []
        representative = ""
        for depth, roles in enumerate(spec.layers[:-1]):
            if depth > 0 and not can_afford(ctx, len(roles) + 1):
                decision.stop(depth, "budget")
                return Answer(text=representative)
            poll = await ask_all(
                ctx,
                roles,
                self._messages(request, references),
                name=f"layer{depth + 1}",
                constraint=spec.member_constraint(),
                temperature=spec.temperature,
            )
            decision.failed_members += poll.failed
            answers = require_answers(poll, f"pyramid layer {depth + 1}")
            tally = await decide(spec, answers, self.embedder)
            agreement = round(tally.agreement, 4)
            decision.layers.append(LayerRun(layer=depth + 1, answered=len(answers), agreement=agreement))
            decision.agreement = agreement
            references = [a.text for a in answers]
            representative = answers[tally.winner if tally.winner is not None else 0].text
            if spec.early_stop is not None and tally.winner is not None and tally.agreement >= spec.early_stop:
                decision.stop(depth + 1, "agreement")
                return Answer(text=representative, finish_reason=answers[tally.winner].finish_reason)
        if not can_afford(ctx, 1):
            decision.stop(len(spec.layers) - 1, "budget")
            return Answer(text=representative)
        top = len(spec.layers)
        try:
            out = await ctx.call(
                spec.layers[-1][0],
                self._messages(request, references),
                name=f"layer{top}[0]",
                constraint=spec.member_constraint(),
            )
        except StepFailed as exc:
            # The layer below did answer: its representative answer stands, and the trace says why.
            decision.layers.append(LayerRun(layer=top, answered=0))
            decision.failed_members.append(FailedMember(step=f"layer{top}[0]", role=spec.layers[-1][0], error=str(exc)))
            return Answer(text=representative)
        decision.layers.append(LayerRun(layer=top, answered=1))
        return Answer(text=out.text, finish_reason=out.result.finish_reason)
