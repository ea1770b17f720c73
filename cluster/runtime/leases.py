"""What `reserve()` asks Ray for, worked out before asking: pure data, no Ray calls.

Each replica of a config is one of three kinds (`ReplicaRequests`): on CPU (no group), pinned to
GPU ids of a plan node (a lease of that node's GPUs), or on GPUs Ray picks (a group of its own).
`lease_groups` turns them into the placement groups to create (`GroupRequest`) and, per replica,
which group and bundles it will use (`PendingReplica`). `start_waves` orders the started slots.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import PlacementError
from cluster.spec import ModelSpec, PlacementSpec

GROUP_PREFIX = "chorus-"  # every placement group chorus makes is named with it (a teardown finds them)
NODE_LABEL = "ray.io/node-id"  # the label every Ray node carries with its node id
REPLAN = "run `chorus plan --gpus auto` against this cluster and use its placement"


@dataclass(frozen=True)
class ReplicaSlot:
    """Where one replica starts and what it holds."""

    model: str
    replica: int
    options: dict[str, Any]  # kwargs for RayActorClass.options(...): num_cpus, num_gpus, scheduling_strategy…
    gpus: float  # GPUs this replica holds (gpu_share × tensor_parallel_size), for GPU-seconds accounting
    gpu_memory_utilization: float | None  # what vLLM should be given (None on CPU)
    node_id: str | None = None  # Ray node the replica lands on (None: CPU, Ray decides)
    gpu_ids: tuple[int, ...] = ()  # GPU ids on that node, one per rank (empty on CPU)


@dataclass(frozen=True)
class PinnedReplica:
    """A replica whose placement names its node and GPU ids."""

    model: str
    replica: int
    spec: PlacementSpec  # with this replica's own gpu_share
    node: int  # plan node index
    gpu_ids: tuple[int, ...]  # one per rank

    @property
    def label(self) -> str:
        return f"{self.model}#{self.replica}"


@dataclass(frozen=True)
class UnpinnedReplica:
    """A GPU replica whose GPUs Ray picks."""

    model: str
    replica: int
    spec: PlacementSpec

    @property
    def label(self) -> str:
        return f"{self.model}#{self.replica}"


@dataclass(frozen=True)
class ReplicaRequests:
    """Every replica of a config, by how it gets its resources."""

    on_cpu: list[ReplicaSlot] = field(default_factory=list)
    pinned: list[PinnedReplica] = field(default_factory=list)
    unpinned: list[UnpinnedReplica] = field(default_factory=list)


@dataclass(frozen=True)
class GroupRequest:
    """One placement group to create (STRICT_PACK)."""

    name: str
    bundles: list[dict[str, float]]
    users: tuple[str, ...]  # "model#replica" of the replicas that need it, for error messages
    node: int | None = None  # the plan node a lease holds (None: a replica's own group)
    node_id: str | None = None  # the Ray node a lease is held on

    @property
    def label_selector(self) -> list[dict[str, str]] | None:
        """Holds every bundle of a lease on its node (Ray's `ray.io/node-id` label)."""
        if self.node_id is None:
            return None
        return [{NODE_LABEL: self.node_id}] * len(self.bundles)



@dataclass(frozen=True)
class PendingReplica:
    """A replica while its group is made: the group, and per rank a GPU id or a bundle index."""

    model: str
    replica: int
    spec: PlacementSpec
    group: int  # index into the groups
    ranks: tuple[int, ...]  # pinned: the planned GPU ids (mapped to bundles once Ray says which
    # bundle got which GPU); unpinned: the bundle indices themselves
    pinned: bool


def sort_replicas(
    models: Sequence[ModelSpec], placement: Mapping[str, PlacementSpec], node_gpus: Sequence[int]
) -> ReplicaRequests:
    """Every replica as CPU, pinned or unpinned; refuses pins beyond the cluster's nodes or GPUs
    (`node_gpus`: GPU count of each node, in plan order)."""
    requests = ReplicaRequests()
    for m in models:
        p = placement.get(m.name) or PlacementSpec()
        for r in range(p.replicas):
            if not p.on_gpu:
                requests.on_cpu.append(ReplicaSlot(m.name, r, {"num_cpus": p.num_cpus, "num_gpus": 0}, 0.0, None))
            elif p.gpus is not None:
                slot = p.gpus[r]
                _check_pin(m.name, r, slot.node, slot.gpu_ids, node_gpus)
                own = p.model_copy(update={"gpu_share": p.share_of(r)})  # this replica's own share
                requests.pinned.append(PinnedReplica(m.name, r, own, slot.node, tuple(slot.gpu_ids)))
            else:
                requests.unpinned.append(UnpinnedReplica(m.name, r, p))
    return requests


def _check_pin(model: str, replica: int, node: int, gpu_ids: Sequence[int], node_gpus: Sequence[int]) -> None:
    if node >= len(node_gpus):
        raise PlacementError(
            model,
            f"replica {replica} is placed on node {node}, but the Ray cluster has {len(node_gpus)} node(s) "
            "with GPUs (numbered from 0)",
            fixes=(REPLAN,),
        )
    count = node_gpus[node]
    bad = [g for g in gpu_ids if g >= count]
    if bad:
        raise PlacementError(
            model,
            f"replica {replica} names GPU id(s) {bad} on node {node}, which has {count} GPU(s) (ids 0-{count - 1})",
            fixes=(REPLAN,),
        )
    if len(set(gpu_ids)) != len(gpu_ids):
        raise PlacementError(model, f"replica {replica} lists a GPU twice: {list(gpu_ids)}; give one id per rank")


def refuse_oversubscribed(pinned: Sequence[PinnedReplica]) -> None:
    """Shares on one GPU above 1 would leave an actor pending forever: say so before asking Ray."""
    load: dict[tuple[int, int], list[PinnedReplica]] = defaultdict(list)
    for rep in pinned:
        for g in rep.gpu_ids:
            load[(rep.node, g)].append(rep)
    for (node, g), users in sorted(load.items()):
        total = sum(u.spec.gpu_share for u in users)
        if total > 1.0 + 1e-9:
            who = ", ".join(f"{u.label} {u.spec.gpu_share:g}" for u in users)
            raise PlacementError(
                users[0].model,
                f"node {node} GPU {g} is over-subscribed: shares sum to {total:.3f} ({who})",
                fixes=("check the placement with `chorus plan --check`", "lower gpu_share or move a replica"),
            )


def lease_groups(
    requests: ReplicaRequests, node_ids: Sequence[str]
) -> tuple[list[GroupRequest], list[PendingReplica]]:
    """The groups to create and each GPU replica's place in them.

    Pinned replicas share one lease per node: a whole-GPU bundle for every GPU id from 0 to the
    highest the plan uses there, each carrying the CPUs of the replicas whose first rank is on
    it. An unpinned replica gets a group of its own: its first rank's bundle takes its share and
    CPUs, any further rank a whole GPU.
    """
    groups: list[GroupRequest] = []
    pending: list[PendingReplica] = []
    by_node: dict[int, list[PinnedReplica]] = defaultdict(list)
    for rep in requests.pinned:
        by_node[rep.node].append(rep)
    lease_of_node: dict[int, int] = {}
    for node in sorted(by_node):
        reps = by_node[node]
        cpus = [0.0] * (max(g for rep in reps for g in rep.gpu_ids) + 1)
        for rep in reps:
            cpus[rep.gpu_ids[0]] += rep.spec.num_cpus
        groups.append(
            GroupRequest(
                name=f"{GROUP_PREFIX}node{node}-gpus",
                bundles=[_bundle(1.0, c) for c in cpus],
                users=tuple(sorted({rep.label for rep in reps})),
                node=node,
                node_id=node_ids[node],
            )
        )
        lease_of_node[node] = len(groups) - 1
    for rep in requests.pinned:
        pending.append(PendingReplica(rep.model, rep.replica, rep.spec, lease_of_node[rep.node], rep.gpu_ids, True))
    for own in requests.unpinned:
        tp = own.spec.tensor_parallel_size
        first = own.spec.gpu_share if tp == 1 else 1.0
        bundles = [_bundle(first, own.spec.num_cpus)] + [_bundle(1.0, 0.0) for _ in range(tp - 1)]
        groups.append(GroupRequest(name=f"{GROUP_PREFIX}{own.model}-{own.replica}", bundles=bundles, users=(own.label,)))
        pending.append(PendingReplica(own.model, own.replica, own.spec, len(groups) - 1, tuple(range(tp)), False))
    return groups, pending


def _bundle(gpu: float, cpus: float) -> dict[str, float]:
    b = {"GPU": gpu}
    if cpus > 0:
        b["CPU"] = cpus
    return b


def start_waves(slots: Sequence[ReplicaSlot]) -> list[list[ReplicaSlot]]:
    """Groups slots into start waves so that no two engines on one GPU start in the same wave.

    First fit in slot order: a slot joins the first wave none of whose slots uses one of its
    (node, GPU) pairs. CPU slots share no GPU and all start in the first wave.
    """
    waves: list[list[ReplicaSlot]] = []
    used: list[set[tuple[str | None, int]]] = []
    for s in slots:
        mine = {(s.node_id, g) for g in s.gpu_ids}
        for w, u in zip(waves, used, strict=True):
            if not (mine & u):
                w.append(s)
                u |= mine  # noqa: PLW2901 - grows this wave's set in place, on purpose
                break
        else:
            waves.append([s])
            used.append(set(mine))
    return waves
