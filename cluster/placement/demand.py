"""What the planner places: each model's memory facts and its targets, from a config."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from cluster.sizing.memory import ModelMemory, estimate, kv_target
from cluster.spec import ModelSpec, PlacementSpec


@dataclass(frozen=True)
class ModelDemand:
    """What the planner places: a model's memory facts and its targets."""

    name: str
    memory: ModelMemory
    replicas: int = 1
    seqs: int = 16  # minimum concurrent sequences…
    context: int = 2048  # …of this many tokens each
    fill: bool = False
    weight: int = 1  # how busy: roles bound to the model (fill order)

    @property
    def min_tokens(self) -> int:
        return self.seqs * self.context


def model_demands(
    models: list[ModelSpec],
    placement: Mapping[str, PlacementSpec],
    roles: Mapping[str, str] | None = None,
    memory: Mapping[str, ModelMemory] | None = None,
) -> list[ModelDemand]:
    """Planner input from a config's models, placement targets and roles (roles set fill order)."""
    bound = Counter((roles or {}).values())
    out = []
    for m in models:
        p = placement.get(m.name) or PlacementSpec()
        seqs, context = kv_target(m, p)
        mem = (memory or {}).get(m.name) or estimate(m)
        # A fill deployment's `replicas` is the planner's own output: start again from one, so
        # planning a planned config gives the same plan.
        replicas = 1 if p.fill else p.replicas
        out.append(ModelDemand(m.name, mem, replicas, seqs, context, p.fill, max(1, bound[m.name])))
    return out
