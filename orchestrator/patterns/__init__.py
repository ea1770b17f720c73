"""The pattern registry: a config's `kind` selects the spec class, and the spec builds its pattern;
a trace's decision `kind` selects the pattern's decision model.

To add a pattern: a module with `XSpec(PatternSpecBase)` (a `kind: Literal["x"]` field), its
decision model `XDecision(PatternDecisionBase)` (the same `kind`) and its pattern class, which
records an `XDecision` with `ctx.decide`; then add `XSpec` to `PatternSpec` and `XDecision` to
`PatternDecision` below, and regenerate docs/trace.md (`python scripts/trace_doc.py`).
`assembly.build_patterns` builds a config's patterns (those that run other patterns last).
Pattern modules never import each other: what two patterns share lives in `patterns/kit/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from orchestrator.core.decisions import DecisionBase
from orchestrator.core.trace import Trace
from orchestrator.patterns.adaptive import AdaptiveDecision, AdaptiveSpec
from orchestrator.patterns.best_of_n import BestOfNDecision, BestOfNSpec
from orchestrator.patterns.cascade import CascadeDecision, CascadeSpec
from orchestrator.patterns.consensus import ConsensusDecision, ConsensusSpec
from orchestrator.patterns.council import CouncilDecision, CouncilSpec
from orchestrator.patterns.fanout import FanoutDecision, FanoutSpec
from orchestrator.patterns.kit.base import Answer, BuildEnv, Pattern, PatternRequest, PatternSpecBase
from orchestrator.patterns.pipeline import PipelineDecision, PipelineSpec
from orchestrator.patterns.planner_executor import PlannerExecutorDecision, PlannerExecutorSpec
from orchestrator.patterns.pyramid import PyramidDecision, PyramidSpec
from orchestrator.patterns.router import RouterDecision, RouterSpec
from orchestrator.patterns.single import SingleDecision, SingleSpec
from orchestrator.patterns.supervisor_worker import SupervisorWorkerDecision, SupervisorWorkerSpec
from orchestrator.patterns.vote import VoteDecision, VoteSpec

PatternSpec = Annotated[
    SingleSpec
    | RouterSpec
    | PipelineSpec
    | CascadeSpec
    | FanoutSpec
    | VoteSpec
    | BestOfNSpec
    | ConsensusSpec
    | PlannerExecutorSpec
    | SupervisorWorkerSpec
    | CouncilSpec
    | PyramidSpec
    | AdaptiveSpec,
    Field(discriminator="kind"),
]

PatternDecision = Annotated[
    SingleDecision
    | RouterDecision
    | PipelineDecision
    | CascadeDecision
    | FanoutDecision
    | VoteDecision
    | BestOfNDecision
    | ConsensusDecision
    | PlannerExecutorDecision
    | SupervisorWorkerDecision
    | CouncilDecision
    | PyramidDecision
    | AdaptiveDecision,
    Field(discriminator="kind"),
]

_DECISIONS: TypeAdapter[PatternDecision] = TypeAdapter(PatternDecision)


def parse_decision(decision: DecisionBase | Mapping[str, Any] | None) -> PatternDecision | None:
    """A decision as its pattern's model, whichever way it arrived: as that model (through Ray), as
    the base model (a `Trace` validated from JSON keeps the pattern's fields as extras) or as JSON
    data (`trace["decision"]` of an HTTP body). Raises pydantic's ValidationError when the data
    fits no pattern's decision model."""
    if decision is None:
        return None
    data = decision.model_dump() if isinstance(decision, DecisionBase) else decision
    return _DECISIONS.validate_python(data)


def decision_of(trace: Trace) -> PatternDecision | None:
    """The trace's decision as its pattern's model; None for a hosted model."""
    return parse_decision(trace.decision)


__all__ = [
    "AdaptiveDecision",
    "AdaptiveSpec",
    "Answer",
    "BestOfNDecision",
    "BestOfNSpec",
    "BuildEnv",
    "CascadeDecision",
    "CascadeSpec",
    "ConsensusDecision",
    "ConsensusSpec",
    "CouncilDecision",
    "CouncilSpec",
    "FanoutDecision",
    "FanoutSpec",
    "Pattern",
    "PatternDecision",
    "PatternRequest",
    "PatternSpec",
    "PatternSpecBase",
    "PipelineDecision",
    "PipelineSpec",
    "PlannerExecutorDecision",
    "PlannerExecutorSpec",
    "PyramidDecision",
    "PyramidSpec",
    "RouterDecision",
    "RouterSpec",
    "SingleDecision",
    "SingleSpec",
    "SupervisorWorkerDecision",
    "SupervisorWorkerSpec",
    "VoteDecision",
    "VoteSpec",
    "decision_of",
    "parse_decision",
]
