"""A placement turned into Ray: placement groups, ModelHost actor options and the start order.

The only module of `cluster/` that imports ray. `reserve()` must run with ray initialised.

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
(`gpu_nodes()`); `ray_inventory()` lists them in that same order.

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
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cluster.errors import PlacementError
from cluster.inventory import Gpu, Inventory, Node
from cluster.spec import ModelSpec, PlacementSpec

NODE_LABEL = "ray.io/node-id"
# A probe takes this sliver of a bundle's GPU to learn the GPU id; it returns it at once.
PROBE_GPU = 0.0001
PROBE_FLOOR_S = 5.0


@dataclass(frozen=True)
class ReplicaSlot:
    model: str
    replica: int
    options: dict[str, Any]  # kwargs for RayActorClass.options(...): num_cpus, num_gpus, scheduling_strategy…
    gpus: float  # GPUs this replica holds (gpu_share × tensor_parallel_size), for GPU-seconds accounting
    gpu_memory_utilization: float | None  # what vLLM should be given (None on CPU)
    node_id: str | None = None  # Ray node the replica lands on (None: CPU, Ray decides)
    gpu_ids: tuple[int, ...] = ()  # GPU ids on that node, one per rank (empty on CPU)


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


def gpu_nodes() -> list[dict[str, Any]]:
    """Alive Ray nodes with GPUs, in plan order: head node first, then address, then node id."""
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0]
    head_of = {n["NodeID"]: any(k.startswith("node:__internal_head__") for k in n["Resources"]) for n in nodes}
    return sorted(nodes, key=lambda n: (not head_of[n["NodeID"]], n.get("NodeManagerAddress", ""), n["NodeID"]))


def ray_inventory(gpu_memory_bytes: int, gpu_name: str = "GPU") -> Inventory:
    """The running cluster's GPU nodes as an inventory.

    Ray knows how many GPUs a node has, not their memory: the caller gives it (e.g. from NVML on
    this machine or from a spec string), and `gpu_name` labels them.
    """
    nodes = []
    for k, n in enumerate(gpu_nodes()):
        count = int(n["Resources"]["GPU"])
        gpus = tuple(Gpu(i, gpu_name, gpu_memory_bytes, gpu_memory_bytes) for i in range(count))
        nodes.append(Node(k, f"{n.get('NodeManagerAddress', '?')} {n['NodeID'][:12]}", gpus, ray_node_id=n["NodeID"]))
    if not nodes:
        return Inventory((), source="ray", reason="the Ray cluster has no node with GPUs")
    return Inventory(tuple(nodes), source="ray")


@ray.remote(num_cpus=0)
def _probe_gpu() -> list[int]:
    return [int(i) for i in ray.get_gpu_ids()]


@dataclass
class _Pending:
    """A replica while groups are made: which group, which bundles."""

    model: str
    replica: int
    spec: PlacementSpec
    group: int  # index into the groups list
    bundles: list[int]  # one per rank


def _bundle(gpu: float, cpus: float) -> dict[str, float]:
    b = {"GPU": gpu}
    if cpus > 0:
        b["CPU"] = cpus
    return b


def _wait(refs: list[Any], timeout_s: float) -> set[int]:
    """Indices of `refs` not done by the deadline (one ray.wait, no polling)."""
    if not refs:
        return set()
    _, not_ready = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    late = set(not_ready)
    return {i for i, r in enumerate(refs) if r in late}


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
    cpu_slots: list[ReplicaSlot] = []
    pinned: list[tuple[str, int, PlacementSpec, int, list[int]]] = []  # model, replica, spec, node, ids
    unpinned: list[tuple[str, int, PlacementSpec]] = []
    for m in models:
        p = placement.get(m.name) or PlacementSpec()
        for r in range(p.replicas):
            if not p.on_gpu:
                cpu_slots.append(ReplicaSlot(m.name, r, {"num_cpus": p.num_cpus, "num_gpus": 0}, 0.0, None))
            elif p.gpus is not None:
                slot = p.gpus[r]
                own = p.model_copy(update={"gpu_share": p.share_of(r)})  # this replica's own share
                if slot.node >= len(nodes):
                    raise PlacementError(
                        m.name,
                        f"replica {r} is placed on node {slot.node}, but the Ray cluster has {len(nodes)} node(s) "
                        "with GPUs (numbered from 0)",
                        fixes=("run `chorus plan --gpus auto` against this cluster and use its placement",),
                    )
                count = int(nodes[slot.node]["Resources"]["GPU"])
                bad = [g for g in slot.gpu_ids if g >= count]
                if bad:
                    raise PlacementError(
                        m.name,
                        f"replica {r} names GPU id(s) {bad} on node {slot.node}, which has {count} GPU(s) (ids 0-{count - 1})",
                        fixes=("run `chorus plan --gpus auto` against this cluster and use its placement",),
                    )
                if len(set(slot.gpu_ids)) != len(slot.gpu_ids):
                    raise PlacementError(m.name, f"replica {r} lists a GPU twice: {slot.gpu_ids}; give one id per rank")
                pinned.append((m.name, r, own, slot.node, list(slot.gpu_ids)))
            else:
                unpinned.append((m.name, r, p))

    _refuse_oversubscribed(pinned)
    groups: list[PlacementGroup] = []
    groups_for: list[list[str]] = []  # per group: "model#replica" that need it, for error messages
    pending: list[_Pending] = []
    try:
        # One lease per node: bundles for GPU ids 0..highest used, CPUs on the first rank's bundle.
        lease_of_node: dict[int, int] = {}
        by_node: dict[int, list[tuple[str, int, PlacementSpec, int, list[int]]]] = defaultdict(list)
        for entry in pinned:
            by_node[entry[3]].append(entry)
        for node in sorted(by_node):
            items = by_node[node]
            top = max(g for it in items for g in it[4])
            cpus = [0.0] * (top + 1)
            for _, _, p, _, ids in items:
                cpus[ids[0]] += p.num_cpus
            node_id = nodes[node]["NodeID"]
            groups.append(
                placement_group(
                    [_bundle(1.0, c) for c in cpus],
                    strategy="STRICT_PACK",
                    name=f"chorus-node{node}-gpus",
                    lifetime=lifetime,
                    bundle_label_selector=[{NODE_LABEL: node_id}] * (top + 1),
                )
            )
            groups_for.append(sorted({f"{it[0]}#{it[1]}" for it in items}))
            lease_of_node[node] = len(groups) - 1
        for name, r, p, node, ids in pinned:
            pending.append(_Pending(name, r, p, lease_of_node[node], ids))  # bundles = GPU ids, remapped below
        for name, r, p in unpinned:
            tp = p.tensor_parallel_size
            first = p.gpu_share if tp == 1 else 1.0
            shapes = [_bundle(first, p.num_cpus)] + [_bundle(1.0, 0.0) for _ in range(tp - 1)]
            groups.append(placement_group(shapes, strategy="STRICT_PACK", name=f"chorus-{name}-{r}", lifetime=lifetime))
            groups_for.append([f"{name}#{r}"])
            pending.append(_Pending(name, r, p, len(groups) - 1, list(range(tp))))

        late = _wait([pg.ready() for pg in groups], max(0.0, deadline - time.monotonic()))
        if late:
            raise _not_ready(groups, groups_for, late, nodes, timeout_s)

        # Which GPU did each bundle get? Probe every bundle once.
        probes, where = [], []
        for gi, pg in enumerate(groups):
            for bi in range(pg.bundle_count):
                strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=bi)
                probes.append(_probe_gpu.options(num_gpus=PROBE_GPU, scheduling_strategy=strategy).remote())
                where.append((gi, bi))
        # Probes are quick once the groups exist; a floor keeps a group ready just before the
        # deadline from failing on its probe.
        late = _wait(probes, max(PROBE_FLOOR_S, deadline - time.monotonic()))
        if late:
            raise PlacementError("", f"GPU probes did not finish within {timeout_s:g}s; is the Ray cluster healthy?")
        gpu_of = {w: ids[0] for w, ids in zip(where, ray.get(probes))}
        node_of_group = {gi: _group_node(pg) for gi, pg in enumerate(groups)}

        slots = list(cpu_slots)
        for item in pending:
            pg = groups[item.group]
            p = item.spec
            if item.group in lease_of_node.values():
                # Planned GPU ids → the bundles Ray gave those GPUs.
                bundle_of = {gpu_of[(item.group, bi)]: bi for bi in range(pg.bundle_count)}
                missing = [g for g in item.bundles if g not in bundle_of]
                if missing:
                    raise PlacementError(
                        item.model,
                        f"replica {item.replica} needs GPU(s) {missing} on node "
                        f"{_node_index(lease_of_node, item.group)}, but Ray leased GPUs {sorted(bundle_of)}: "
                        "another Ray workload holds the planned GPU(s)",
                        fixes=("stop the other workload", "re-plan with `chorus plan --gpus auto` and use free GPUs"),
                    )
                gpu_ids = tuple(item.bundles)
                bundles = [bundle_of[g] for g in gpu_ids]
            else:
                bundles = item.bundles
                gpu_ids = tuple(gpu_of[(item.group, bi)] for bi in bundles)
            slots.append(_slot(item, pg, bundles, gpu_ids, node_of_group[item.group]))
    except BaseException:
        for pg in groups:
            remove_placement_group(pg)
        raise
    rank = {m.name: i for i, m in enumerate(models)}
    slots.sort(key=lambda s: (rank[s.model], s.replica))
    return Reservation(slots=slots, waves=start_waves(slots), groups=groups)


def _refuse_oversubscribed(pinned: list[tuple[str, int, PlacementSpec, int, list[int]]]) -> None:
    """Shares on one GPU above 1 would leave an actor pending forever: say so before asking Ray."""
    load: dict[tuple[int, int], list[tuple[str, float]]] = defaultdict(list)
    for name, r, p, node, ids in pinned:
        for g in ids:
            load[(node, g)].append((f"{name}#{r}", p.gpu_share))
    for (node, g), users in sorted(load.items()):
        total = sum(share for _, share in users)
        if total > 1.0 + 1e-9:
            who = ", ".join(f"{u} {share:g}" for u, share in users)
            raise PlacementError(
                users[0][0].split("#")[0],
                f"node {node} GPU {g} is over-subscribed: shares sum to {total:.3f} ({who})",
                fixes=("check the placement with `chorus plan --check`", "lower gpu_share or move a replica"),
            )


def _slot(item: _Pending, pg: PlacementGroup, bundles: list[int], gpu_ids: tuple[int, ...], node_id: str) -> ReplicaSlot:
    p = item.spec
    tp = p.tensor_parallel_size
    options: dict[str, Any] = {
        "num_cpus": p.num_cpus,
        "num_gpus": p.gpu_share if tp == 1 else 0,
        "scheduling_strategy": PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=bundles[0], placement_group_capture_child_tasks=tp > 1
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
        model=item.model,
        replica=item.replica,
        options=options,
        gpus=p.gpu_share * tp,
        gpu_memory_utilization=p.gpu_share,
        node_id=node_id,
        gpu_ids=gpu_ids,
    )


def start_waves(slots: list[ReplicaSlot]) -> list[list[ReplicaSlot]]:
    """Groups slots into start waves so that no two engines on one GPU start in the same wave.

    First fit in slot order: a slot joins the first wave none of whose slots uses one of its
    (node, GPU) pairs. CPU slots share no GPU and all start in the first wave.
    """
    waves: list[list[ReplicaSlot]] = []
    used: list[set[tuple[str | None, int]]] = []
    for s in slots:
        mine = {(s.node_id, g) for g in s.gpu_ids}
        for w, u in zip(waves, used):
            if not (mine & u):
                w.append(s)
                u.update(mine)
                break
        else:
            waves.append([s])
            used.append(set(mine))
    return waves


def _group_node(pg: PlacementGroup) -> str:
    table = ray.util.placement_group_table(pg)
    return str(table["bundles_to_node_id"][0])


def _node_index(lease_of_node: dict[int, int], group: int) -> int:
    return next(n for n, g in lease_of_node.items() if g == group)


def _not_ready(
    groups: list[PlacementGroup], groups_for: list[list[str]], late: set[int], nodes: list[dict[str, Any]], timeout_s: float
) -> PlacementError:
    first = min(late)
    who = groups_for[first]
    wanted = groups[first].bundle_specs
    free = ray.available_resources()
    model = who[0].split("#")[0] if len({w.split("#")[0] for w in who}) == 1 else ""
    return PlacementError(
        model,
        f"placement group for {', '.join(who)} (bundles {wanted}) was not ready after {timeout_s:g}s; "
        f"the cluster has {len(nodes)} GPU node(s) and {free.get('GPU', 0):g} GPU / {free.get('CPU', 0):g} CPU free"
        + (f"; {len(late) - 1} more group(s) also pending" if len(late) > 1 else ""),
        fixes=(
            "free the GPUs other Ray workloads hold",
            "re-plan with `chorus plan --gpus auto` for the GPUs this cluster has",
            "lower replicas or gpu_share",
        ),
    )
