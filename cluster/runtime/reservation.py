"""A placement turned into Ray: placement groups, ModelHost actor options and the start order.

`reserve()` must run with ray initialised. What it asks Ray for is worked out first, as plain
data, in `cluster.runtime.leases`; this module makes the groups, measures which GPU each bundle
got and turns every replica into a `ReplicaSlot`.

How a replica lands on the GPUs its placement names (`PlacementSpec.gpus`)
------------------------------------------------------------------------
Ray has no "give me GPU 3" request: it hands out the GPU instances of a node itself. What it
does guarantee is that an actor scheduled into a placement-group bundle gets that bundle's
GPU (`ray.get_gpu_ids()` and `CUDA_VISIBLE_DEVICES` follow it). So chorus leases GPUs per node:

* one placement group per node the plan uses, STRICT_PACK, held on that node with a
  `ray.io/node-id` label selector, with one whole-GPU bundle for every GPU id from 0 to the
  highest id the plan uses there (plus the CPUs of the replicas starting on that GPU);
* once the group is ready, a zero-CPU probe task in each bundle reports which GPU Ray gave the
  bundle, so bundle ↔ GPU id is measured, not assumed; if Ray leased other GPUs than the plan
  names (something else holds one), `reserve` fails and says which;
* a replica is then scheduled into the bundle of its GPU with `num_gpus = gpu_share`: several
  replicas share one GPU bundle with fractional shares, and Ray's own accounting matches the plan.

This works the same for a real cluster and for fake GPUs (`ray.init(num_gpus=4)`,
`ray.cluster_utils.Cluster`), and needs no custom resources declared when nodes start.

Plan node index → Ray node: nodes with GPUs, head node first, then by address and node id
(`cluster.runtime.nodes.gpu_nodes()`); `ray_inventory()` there lists them in that same order.

Tensor parallel > 1: the ranks' bundles all sit in the node's lease group (one node by
construction). The replica's actor is scheduled into the first rank's bundle for its CPUs and
holds none of the GPU itself; it captures child tasks, and its environment names the ranks'
bundles (`VLLM_RAY_BUNDLE_INDICES`) and the share each of vLLM's Ray workers takes
(`VLLM_RAY_PER_WORKER_GPUS`), so vLLM's workers, one per rank, use exactly those GPUs.
That path needs real GPUs and is not exercised on CPU.

Replicas without pinned GPUs get one STRICT_PACK group each (one bundle per rank) and Ray picks
the GPUs; the probe still reports where they went, so the start waves stay right.

Start order: vLLM sizes its KV cache from the memory free when it starts, so two engines
starting together on one GPU mis-size each other. `Reservation.waves` puts engines that share
a GPU in different waves; the serving layer starts one wave after the other.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cluster.errors import PlacementError
from cluster.runtime.leases import (
    GROUP_PREFIX,
    GroupRequest,
    PendingReplica,
    ReplicaSlot,
    lease_groups,
    refuse_oversubscribed,
    sort_replicas,
    start_waves,
)
from cluster.runtime.nodes import gpu_nodes
from cluster.spec import ModelSpec, PlacementSpec

# A probe takes this sliver of a bundle's GPU to learn the GPU id; it returns it at once.
PROBE_GPU = 0.0001
PROBE_FLOOR_S = 5.0


@dataclass
class Reservation:
    slots: list[ReplicaSlot]
    waves: list[list[ReplicaSlot]]  # start order: engines that share a GPU are never in the same wave
    groups: list[PlacementGroup] = field(default_factory=list)

    def release(self) -> None:
        """Removes the placement groups (and so stops any actor still scheduled in them)."""
        groups, self.groups = self.groups, []
        for pg in groups:
            remove_placement_group(pg)


@dataclass(frozen=True)
class _Made:
    """A placement group Ray made, with what was asked of it and what it got."""

    request: GroupRequest
    group: PlacementGroup
    node_id: str  # the Ray node its bundles are on
    bundle_gpus: tuple[int, ...]  # the GPU id Ray gave each bundle, by bundle index


def reserve(
    models: list[ModelSpec],
    placement: Mapping[str, PlacementSpec],
    *,
    timeout_s: float = 60.0,
    lifetime: str | None = None,
) -> Reservation:
    """Creates placement groups for every replica (must be called with ray initialised); raises
    PlacementError naming the model and the resources when a group is not ready by the deadline.

    `lifetime="detached"` keeps the groups after this driver exits (for detached ModelHosts);
    `Reservation.release()` still removes them.
    """
    deadline = time.monotonic() + timeout_s
    nodes = gpu_nodes()
    requests = sort_replicas(models, placement, [int(n["Resources"]["GPU"]) for n in nodes])
    refuse_oversubscribed(requests.pinned)
    wanted, pending = lease_groups(requests, [n["NodeID"] for n in nodes])
    groups: list[PlacementGroup] = []
    try:
        for request in wanted:
            groups.append(_create(request, lifetime))
        _await_ready(wanted, groups, deadline, timeout_s, gpu_node_count=len(nodes))
        made = _measure(wanted, groups, deadline, timeout_s)
        slots = list(requests.on_cpu) + [_place(rep, made[rep.group]) for rep in pending]
    except BaseException:
        for pg in groups:
            remove_placement_group(pg)
        raise
    rank = {m.name: i for i, m in enumerate(models)}
    slots.sort(key=lambda s: (rank[s.model], s.replica))
    return Reservation(slots=slots, waves=start_waves(slots), groups=groups)


def release_leftover_groups() -> list[str]:
    """Removes the chorus placement groups of this driver's namespace that nobody releases: the
    detached ones `chorus up --address` made for its hosts before its driver exited. Names are
    looked up in this namespace only, so another deployment's groups on the cluster stay."""
    names = sorted(
        {g["name"] for g in placement_group_table().values() if g["name"].startswith(GROUP_PREFIX) and g["state"] != "REMOVED"}
    )
    removed = []
    for name in names:
        try:
            group = get_placement_group(name)
        except ValueError:
            continue  # another namespace's group of the same name
        remove_placement_group(group)
        removed.append(name)
    return removed


def _create(request: GroupRequest, lifetime: str | None) -> PlacementGroup:
    group: PlacementGroup = placement_group(
        request.bundles,
        strategy="STRICT_PACK",
        name=request.name,
        lifetime=lifetime,
        bundle_label_selector=request.label_selector,
    )
    return group


def _await_ready(
    wanted: Sequence[GroupRequest],
    groups: Sequence[PlacementGroup],
    deadline: float,
    timeout_s: float,
    *,
    gpu_node_count: int,
) -> None:
    late = _late([pg.ready() for pg in groups], max(0.0, deadline - time.monotonic()))
    if late:
        raise _not_ready(wanted, late, timeout_s, gpu_node_count)


@ray.remote(num_cpus=0)
def _probe_gpu() -> list[int]:
    return [int(i) for i in ray.get_gpu_ids()]


def _measure(
    wanted: Sequence[GroupRequest], groups: Sequence[PlacementGroup], deadline: float, timeout_s: float
) -> list[_Made]:
    """Which GPU did each bundle get, and which node holds each group? One probe per bundle."""
    probes = [
        [
            _probe_gpu.options(
                num_gpus=PROBE_GPU,
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=b),
            ).remote()
            for b in range(pg.bundle_count)
        ]
        for pg in groups
    ]
    refs = [ref for per_group in probes for ref in per_group]
    # Probes are quick once the groups exist; a floor keeps a group ready just before the
    # deadline from failing on its probe.
    if _late(refs, max(PROBE_FLOOR_S, deadline - time.monotonic())):
        raise PlacementError("", f"GPU probes did not finish within {timeout_s:g}s; is the Ray cluster healthy?")
    return [
        _Made(request, pg, _group_node(pg), tuple(ids[0] for ids in ray.get(per_group)))
        for request, pg, per_group in zip(wanted, groups, probes, strict=True)
    ]


def _place(rep: PendingReplica, made: _Made) -> ReplicaSlot:
    """The replica's bundles and GPU ids in the group Ray made."""
    if not rep.pinned:
        bundles = list(rep.ranks)
        return _slot(rep, made, bundles, tuple(made.bundle_gpus[b] for b in bundles))
    # Planned GPU ids → the bundles Ray gave those GPUs.
    bundle_of = {gpu: b for b, gpu in enumerate(made.bundle_gpus)}
    missing = [g for g in rep.ranks if g not in bundle_of]
    if missing:
        raise PlacementError(
            rep.model,
            f"replica {rep.replica} needs GPU(s) {missing} on node {made.request.node}, but Ray leased GPUs "
            f"{sorted(bundle_of)}: another Ray workload holds the planned GPU(s)",
            fixes=("stop the other workload", "re-plan with `chorus plan --gpus auto` and use free GPUs"),
        )
    return _slot(rep, made, [bundle_of[g] for g in rep.ranks], rep.ranks)


def _slot(rep: PendingReplica, made: _Made, bundles: list[int], gpu_ids: tuple[int, ...]) -> ReplicaSlot:
    p = rep.spec
    tp = p.tensor_parallel_size
    options: dict[str, Any] = {
        "num_cpus": p.num_cpus,
        "num_gpus": p.gpu_share if tp == 1 else 0,
        "scheduling_strategy": PlacementGroupSchedulingStrategy(
            made.group, placement_group_bundle_index=bundles[0], placement_group_capture_child_tasks=tp > 1
        ),
    }
    if tp > 1:
        options["runtime_env"] = {
            "env_vars": {
                "VLLM_RAY_BUNDLE_INDICES": ",".join(str(b) for b in bundles),
                "VLLM_RAY_PER_WORKER_GPUS": f"{p.gpu_share:g}",
            }
        }
    return ReplicaSlot(
        model=rep.model,
        replica=rep.replica,
        options=options,
        gpus=p.gpu_share * tp,
        gpu_memory_utilization=p.gpu_share,
        node_id=made.node_id,
        gpu_ids=gpu_ids,
    )


def _late(refs: list[ray.ObjectRef[Any]], timeout_s: float) -> list[int]:
    """Indices of `refs` not done by the deadline (one ray.wait, no polling)."""
    if not refs:
        return []
    _, not_ready = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    pending = set(not_ready)
    return [i for i, r in enumerate(refs) if r in pending]


def _group_node(pg: PlacementGroup) -> str:
    table: dict[str, Any] = ray.util.placement_group_table(pg)
    return str(table["bundles_to_node_id"][0])


def _not_ready(wanted: Sequence[GroupRequest], late: list[int], timeout_s: float, gpu_node_count: int) -> PlacementError:
    first = wanted[late[0]]
    free = ray.available_resources()
    models = {u.split("#")[0] for u in first.users}
    return PlacementError(
        models.pop() if len(models) == 1 else "",
        f"placement group for {', '.join(first.users)} (bundles {first.bundles}) was not ready after "
        f"{timeout_s:g}s; the cluster has {gpu_node_count} GPU node(s) and {free.get('GPU', 0):g} GPU / "
        f"{free.get('CPU', 0):g} CPU free" + (f"; {len(late) - 1} more group(s) also pending" if len(late) > 1 else ""),
        fixes=(
            "free the GPUs other Ray workloads hold",
            "re-plan with `chorus plan --gpus auto` for the GPUs this cluster has",
            "lower replicas or gpu_share",
        ),
    )
