"""The pattern registry: a config's `kind` selects the spec class, and the spec builds its pattern.

To add a pattern: a module with `XSpec(PatternSpecBase)` (a `kind: Literal["x"]` field) and its
pattern class, then add `XSpec` to `PatternSpec` below. `assembly.build_patterns` builds a
config's patterns (those that run other patterns last).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.patterns.adaptive import AdaptiveSpec
from orchestrator.patterns.best_of_n import BestOfNSpec
from orchestrator.patterns.cascade import CascadeSpec
from orchestrator.patterns.consensus import ConsensusSpec
from orchestrator.patterns.council import CouncilSpec
from orchestrator.patterns.fanout import FanoutSpec
from orchestrator.patterns.kit.base import Answer, BuildEnv, Pattern, PatternRequest, PatternSpecBase
from orchestrator.patterns.pipeline import PipelineSpec
from orchestrator.patterns.planner_executor import PlannerExecutorSpec
from orchestrator.patterns.pyramid import PyramidSpec
from orchestrator.patterns.router import RouterSpec
from orchestrator.patterns.single import SingleSpec
from orchestrator.patterns.supervisor_worker import SupervisorWorkerSpec
from orchestrator.patterns.vote import VoteSpec

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

__all__ = [
    "AdaptiveSpec",
    "Answer",
    "BestOfNSpec",
    "BuildEnv",
    "CascadeSpec",
    "ConsensusSpec",
    "CouncilSpec",
    "FanoutSpec",
    "Pattern",
    "PatternRequest",
    "PatternSpec",
    "PatternSpecBase",
    "PipelineSpec",
    "PlannerExecutorSpec",
    "PyramidSpec",
    "RouterSpec",
    "SingleSpec",
    "SupervisorWorkerSpec",
    "VoteSpec",
]
