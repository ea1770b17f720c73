"""A placement plan: where every replica of every deployment runs and what it gets. Pure data.

`cluster.placement.planner.plan_placement()` computes one; `cluster.placement.report` renders
it; `placement_specs()` turns it into the `placement:` section of a config (which
`cluster.runtime.reservation.reserve()` applies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cluster.inventory import Inventory
from cluster.spec import GpuSlot, PlacementSpec

# GPU shares are whole thousandths: what a user reads and edits in YAML is what the plan checked.
SHARE_UNITS = 1000


@dataclass(frozen=True)
class ReplicaPlacement:
    model: str
    replica: int
    node: int
    gpu_ids: tuple[int, ...]  # one per tensor-parallel rank
    gpu_memory_utilization: float  # share of each of its GPUs (vLLM's gpu_memory_utilization)
    kv_tokens: int  # KV cache tokens the replica is expected to hold
    need_bytes: int  # per GPU: weights + overhead + the minimum KV target
    weight_bytes: int  # per GPU: its shard of the weights
    extra: bool = False  # an extra replica given spare GPUs (fill)

    @property
    def tensor_parallel_size(self) -> int:
        return len(self.gpu_ids)


@dataclass(frozen=True)
class PlacementPlan:
    replicas: tuple[ReplicaPlacement, ...]
    inventory: Inventory
    ceiling: float  # shares on one GPU sum to at most this (or its free memory, if less)
    models: tuple[str, ...]  # deployment order

    def replicas_of(self, model: str) -> list[ReplicaPlacement]:
        return [r for r in self.replicas if r.model == model]

    def on_gpu(self, node: int, gpu: int) -> list[ReplicaPlacement]:
        return [r for r in self.replicas if r.node == node and gpu in r.gpu_ids]

    def gpus_used(self) -> int:
        return len({(r.node, g) for r in self.replicas for g in r.gpu_ids})

    def placement_specs(self, base: Mapping[str, PlacementSpec] | None = None) -> dict[str, PlacementSpec]:
        """The `placement:` section for this plan; keeps num_cpus and sizing targets from `base`.

        The deployment's gpu_share is the smallest its replicas were given; a replica given more
        (e.g. an extra replica with a GPU to itself) carries its own in its GPU slot.
        """
        base = base or {}
        out: dict[str, PlacementSpec] = {}
        for model in self.models:
            reps = self.replicas_of(model)
            old = base.get(model) or PlacementSpec()
            share = min(r.gpu_memory_utilization for r in reps)
            slots = [
                GpuSlot(
                    node=r.node,
                    gpu_ids=list(r.gpu_ids),
                    gpu_share=r.gpu_memory_utilization if r.gpu_memory_utilization != share else None,
                )
                for r in reps
            ]
            out[model] = PlacementSpec(
                replicas=len(reps),
                tensor_parallel_size=reps[0].tensor_parallel_size,
                gpu_share=share,
                num_cpus=old.num_cpus,
                gpus=slots,
                min_concurrency=old.min_concurrency,
                context=old.context,
                fill=old.fill,
            )
        return out
