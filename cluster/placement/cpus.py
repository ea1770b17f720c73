"""Cores are a resource like GPUs: which CPU cores each engine's threads are bound to.

vLLM-CPU binds its worker's OpenMP threads to the cores `VLLM_CPU_OMP_THREADS_BIND` names; its
default (`auto`) picks the same core for every engine started on a machine, so without a plan
every chorus engine computes on core 0 and the other cores idle. On GPU nodes an engine's CPU
threads (scheduler, sampler, tokenizer) should run on the cores of its GPU's NUMA node.

Rules, per node, deterministic:
1. The request tier (HTTP, orchestrator, Ray's own processes) keeps the node's highest-numbered
   `request_cpus` cores; by default one core per 8 on nodes of 4 cores or more, none below
   (on 2 cores, taking one away from two engines costs more than the request tier gains: it
   mostly waits on the engines and shares the cores with them).
2. A GPU replica's threads follow its GPU: it gets all of its GPU's NUMA cores (NVML's CPU
   affinity) but the request tier's, shared with the other engines of that NUMA node; where
   NVML does not say, every engine core of the node.
3. CPU replicas (gpu_share 0) take cores no GPU replica uses. When there are fewer free cores
   than they want, each takes the least-loaded cores (lowest id on ties): round robin.
4. When there are more free cores than CPU replicas want and the node keeps none for the
   request tier, the highest free core stays out of every engine's set: vLLM's auto binding
   reserves one core for its engine-core (scheduler) process too, and an OpenMP thread that
   shares its core with other busy processes stalls every barrier of its engine's step.
   Measured (2 cores, tiny Qwen2, 8 tokens): one engine bound to "1" answered in 30.5 ms p50,
   the same engine bound to "0-1" in 51.3 ms; 47.7 vs 70.9 ms with 8 requests at once.
5. The remaining free cores are split into contiguous blocks in proportion to what each CPU
   replica asked (`num_cpus`): a CPU engine computes on the cores it is given (one engine on 4
   cores, one kept for the request tier, gets "0-2").

CPU replicas have no pinned node (Ray chooses); they are planned on node 0, which is where a
one-node cluster runs them. Pure data: no Ray, no vLLM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cluster.errors import PlacementError
from cluster.inventory import Inventory, format_cpu_list, local_cpus
from cluster.spec import PlacementSpec


@dataclass(frozen=True)
class CpuNode:
    """The cores of one node, and which of them sit close to each GPU."""

    index: int
    cpus: tuple[int, ...]
    gpu_cpus: Mapping[int, tuple[int, ...]] = field(default_factory=dict)  # GPU id → affinity cores


@dataclass(frozen=True)
class ReplicaCpus:
    model: str
    replica: int
    node: int
    cpus: tuple[int, ...]
    gpu: int | None = None  # the GPU whose affinity it followed (first rank), None on CPU

    @property
    def cpu_list(self) -> str:
        return format_cpu_list(self.cpus)


@dataclass(frozen=True)
class CpuPlan:
    replicas: tuple[ReplicaCpus, ...]
    request: Mapping[int, tuple[int, ...]]  # node → cores kept for the request tier
    nodes: tuple[CpuNode, ...]

    def sets(self) -> dict[str, list[str]]:
        """model → one CPU list per replica: the `cpus:` field of its placement."""
        out: dict[str, list[str]] = {}
        for r in sorted(self.replicas, key=lambda r: (r.model, r.replica)):
            out.setdefault(r.model, []).append(r.cpu_list)
        return out

    def of(self, model: str, replica: int) -> ReplicaCpus:
        return next(r for r in self.replicas if r.model == model and r.replica == replica)


def default_request_cpus(n_cpus: int) -> int:
    return 0 if n_cpus < 4 else max(1, n_cpus // 8)


def nodes_of(inventory: Inventory | None, cpus: Sequence[int] | None = None) -> tuple[CpuNode, ...]:
    """CPU nodes for an inventory; a node whose cores are unknown (a spec string) and a
    GPU-less machine take `cpus` (default: this process's cores)."""
    mine = tuple(cpus) if cpus is not None else local_cpus()
    if inventory is None or not inventory.nodes:
        return (CpuNode(0, mine),)
    return tuple(
        CpuNode(n.index, n.cpus or mine, {g.index: g.cpus for g in n.gpus if g.cpus}) for n in inventory.nodes
    )


def plan_cpus(
    models: Sequence[str],
    placement: Mapping[str, PlacementSpec],
    nodes: Sequence[CpuNode],
    *,
    request_cpus: int | None = None,
) -> CpuPlan:
    """One CPU set per replica of `models` (config order), following the rules above."""
    by_index = {n.index: n for n in nodes}
    request: dict[int, tuple[int, ...]] = {}
    pools: dict[int, tuple[int, ...]] = {}
    for n in nodes:
        keep = default_request_cpus(len(n.cpus)) if request_cpus is None else request_cpus
        if not 0 <= keep < len(n.cpus):
            raise PlacementError(
                "",
                f"request_cpus={keep} leaves node {n.index} ({len(n.cpus)} cores) none for the engines",
                fixes=(f"give the request tier fewer than {len(n.cpus)} cores",),
            )
        request[n.index] = n.cpus[len(n.cpus) - keep :] if keep else ()
        pools[n.index] = n.cpus[: len(n.cpus) - keep]
    load = {i: dict.fromkeys(pool, 0) for i, pool in pools.items()}
    given: dict[tuple[str, int], ReplicaCpus] = {}

    def take(node: int, candidates: Sequence[int], want: int) -> tuple[int, ...]:
        cores = sorted(candidates, key=lambda c: (load[node][c], c))[:want]
        for c in cores:
            load[node][c] += 1
        return tuple(sorted(cores))

    gpu_reps: list[tuple[str, int, PlacementSpec]] = []
    cpu_reps: list[tuple[str, int, PlacementSpec]] = []
    for m in models:
        p = placement.get(m) or PlacementSpec()
        for r in range(p.replicas):
            (gpu_reps if p.on_gpu else cpu_reps).append((m, r, p))
    for m, r, p in gpu_reps:
        # A GPU engine's CPU threads (scheduler, sampler, tokenizer) follow its GPU: all of the
        # GPU's NUMA cores, shared with the other engines of that NUMA node, rather than a few
        # exclusive ones, which would starve its processes of CPU.
        slot = p.gpus[r] if p.gpus is not None else None
        node = slot.node if slot is not None and slot.node in by_index else nodes[0].index
        gpu = slot.gpu_ids[0] if slot is not None else None
        close = by_index[node].gpu_cpus.get(gpu, ()) if gpu is not None else ()
        cores = tuple(c for c in close if c in load[node]) or pools[node]
        for c in cores:
            load[node][c] += 1
        given[(m, r)] = ReplicaCpus(m, r, node, tuple(sorted(cores)), gpu)
    home = nodes[0].index
    wants = [min(len(pools[home]), max(1, math.ceil(p.num_cpus))) for _, _, p in cpu_reps]
    free = [c for c in pools[home] if load[home][c] == 0]
    if cpu_reps and len(free) > sum(wants) and not request[home]:
        # Rule 4: one free core stays out of the engines' OpenMP sets, for their engine-core
        # (scheduler) processes and the request tier, as vLLM's own auto binding reserves one:
        # an OpenMP thread that shares its core with them stalls every barrier of its step.
        free = free[:-1]
    if cpu_reps and len(free) >= sum(wants):
        # Rule 5: enough free cores: each CPU replica gets a contiguous block, the idle cores
        # split in proportion to what each asked for.
        blocks = _split(len(free), wants)
        start = 0
        for (m, r, _), size in zip(cpu_reps, blocks):
            given[(m, r)] = ReplicaCpus(m, r, home, take(home, free[start : start + size], size))
            start += size
    else:
        for (m, r, _), want in zip(cpu_reps, wants):
            given[(m, r)] = ReplicaCpus(m, r, home, take(home, pools[home], want))
    order = [(m, r) for m, r, _ in gpu_reps + cpu_reps]
    return CpuPlan(tuple(given[k] for k in order), request, tuple(nodes))


def _split(total: int, wants: list[int]) -> list[int]:
    """`total` cores in proportion to `wants` (each at least its want; remainder to the first)."""
    sizes = [total * w // sum(wants) for w in wants]
    sizes = [max(s, w) for s, w in zip(sizes, wants)]
    k = 0
    while sum(sizes) < total:
        sizes[k % len(sizes)] += 1
        k += 1
    while sum(sizes) > total:  # max() above can overshoot; take back from the largest
        sizes[sizes.index(max(sizes))] -= 1
    return sizes


def with_cpus(placement: Mapping[str, PlacementSpec], plan: CpuPlan) -> dict[str, PlacementSpec]:
    """`placement` with each deployment's `cpus` set from the plan (others left as they are)."""
    sets = plan.sets()
    return {m: p.model_copy(update={"cpus": sets[m]}) if m in sets else p for m, p in placement.items()}


def render_cpus(plan: CpuPlan) -> str:
    """The CPU table `chorus plan` prints: per node, each core and who computes on it."""
    lines = ["", f"{'cores':<8} {'engine threads bound here (VLLM_CPU_OMP_THREADS_BIND)':<56} request tier"]
    for n in plan.nodes:
        rows: list[tuple[list[int], str, str]] = []  # runs of cores with the same occupants
        for c in n.cpus:
            who = ", ".join(f"{r.model}#{r.replica}" for r in plan.replicas if r.node == n.index and c in r.cpus)
            kept = plan.request.get(n.index, ())
            tier = "kept" if c in kept else ("" if kept else "shares")
            if rows and rows[-1][1:] == (who, tier) and rows[-1][0][-1] == c - 1:
                rows[-1][0].append(c)
            else:
                rows.append(([c], who, tier))
        for cores, who, tier in rows:
            lines.append(f"{f'n{n.index}:c{format_cpu_list(cores)}':<8} {who or '-':<56} {tier}")
    lines += ["", f"{'replica':<22} {'node':>4} {'cores':<12} follows"]
    known = {n.index: n.gpu_cpus for n in plan.nodes}
    for r in plan.replicas:
        if r.gpu is None:
            follows = "CPU engine"
        elif r.gpu in known.get(r.node, {}):
            follows = f"GPU {r.gpu}'s NUMA cores (NVML)"
        else:
            follows = f"GPU {r.gpu} (NVML gave no affinity: any core)"
        lines.append(f"{f'{r.model}#{r.replica}':<22} {r.node:>4} {r.cpu_list:<12} {follows}")
    return "\n".join(lines)
