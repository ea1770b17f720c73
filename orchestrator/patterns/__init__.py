"""The pattern registry: a config's `kind` selects the spec class, and the spec builds its pattern.

To add a pattern: a module with `XSpec(PatternSpecBase)` (a `kind: Literal["x"]` field) and its
pattern class, then add `XSpec` to `PatternSpec` below. `assembly.build_patterns` builds a
config's patterns (those that run other patterns last).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .adaptive import AdaptiveSpec
from .base import Answer, BuildEnv, Pattern, PatternRequest, PatternSpecBase
from .best_of_n import BestOfNSpec
from .cascade import CascadeSpec
from .consensus import ConsensusSpec
from .council import CouncilSpec
from .fanout import FanoutSpec
from .pipeline import PipelineSpec
from .planner_executor import PlannerExecutorSpec
from .pyramid import PyramidSpec
from .router import RouterSpec
from .single import SingleSpec
from .supervisor_worker import SupervisorWorkerSpec
from .vote import VoteSpec

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
