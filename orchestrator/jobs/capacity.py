"""How many requests a job keeps in flight: the batch capacity of the models it uses.

A pattern's calls land on the models its roles are bound to (and those of the patterns it runs,
for `adaptive`); each replica batches `max_num_seqs` sequences. The job keeps the sum of those
capacities in flight: enough to fill every engine's batch, no more, so the waiting is done in
the job's queue (where it costs nothing) and not in the engines' queues, where interactive
requests would find it in front of them.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.core.schema import FleetStatus
from orchestrator.service.config import ChorusConfig


def models_of(config: ChorusConfig, name: str) -> set[str]:
    """Every hosted model a request for `name` (a pattern or a model) may call."""
    spec = config.patterns.get(name)
    if spec is None:
        return {name}
    models = {config.roles[r] for r in spec.roles() if r in config.roles}
    for used in spec.uses():
        if used != name:
            models |= models_of(config, used)
    return models


def fleet_capacity(status: FleetStatus, models: Iterable[str]) -> int:
    """Sequences the healthy replicas of `models` batch together (at least 1)."""
    wanted = set(models)
    return max(1, sum(h.capacity for h in status.hosts if h.model in wanted and h.ok))


def in_flight_for(config: ChorusConfig, status: FleetStatus, names: Iterable[str]) -> int:
    involved: set[str] = set()
    for name in names:
        involved |= models_of(config, name)
    return fleet_capacity(status, involved)
