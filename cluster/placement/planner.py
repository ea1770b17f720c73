"""Where every replica goes: the fewest GPUs, no GPU over its memory, deterministic.

Rules, in order:
1. Tensor-parallel size: the smallest size that divides the attention and the KV heads and
   lets one GPU per rank hold its shard of the weights, the overhead and the minimum KV cache
   (sequences × context). A model no size fits raises `PlacementError` with the fixes.
2. Tensor-parallel replicas first, largest first: each takes GPUs of one node with room for a
   rank, a set linked by NVLink where there is one, lowest ids first.
3. Single-GPU replicas, largest need first (first-fit decreasing): each goes to the first GPU,
   in (node, id) order, with room left and no replica of the same model yet (GPUs of a
   tensor-parallel group included); GPUs are used in order, so an empty one is only opened
   when no used one fits, which keeps the GPU count low. A second packing tries used GPUs
   without a tensor-parallel group first; the plan keeps the packing with fewer GPUs, then
   less memory left unused.
4. With `fill`, GPUs still empty take extra replicas of fill models (a whole GPU, or an
   empty tensor-parallel set, each), round robin, the busiest (most roles bound) first.
5. Shares: on each GPU the memory up to the ceiling (or the GPU's free memory, if less) that
   the minimums leave is split in proportion to each replica's minimum KV cache, in whole
   thousandths; the KV capacity each replica gets follows from its share.

All orders are fixed by names and indices, so the same input gives the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.errors import PlacementError
from cluster.inventory import GiB, Gpu, Inventory
from cluster.placement.demand import ModelDemand
from cluster.placement.plan import SHARE_UNITS, PlacementPlan, ReplicaPlacement
from cluster.sizing.memory import weight_bytes

DEFAULT_CEILING = 0.90  # vLLM's own default gpu_memory_utilization; the rest absorbs fragmentation


@dataclass
class _GpuState:
    node: int
    gpu: Gpu
    cap_units: int  # shares this GPU can give, in thousandths
    used_units: int = 0
    holders: list[_Item] = field(default_factory=list)

    def units(self, nbytes: int) -> int:
        return -(-nbytes * SHARE_UNITS // self.gpu.total_bytes)

    @property
    def key(self) -> tuple[int, int]:
        return self.node, self.gpu.index


@dataclass
class _Item:
    demand: ModelDemand
    replica: int
    tp: int
    need: int  # bytes per GPU
    extra: bool = False
    gpus: list[_GpuState] = field(default_factory=list)
    units: int = 0  # share, thousandths


def usable_bytes(gpu: Gpu, ceiling: float) -> int:
    return min(int(gpu.total_bytes * ceiling), gpu.free_bytes)


def _cap_units(gpu: Gpu, ceiling: float) -> int:
    return usable_bytes(gpu, ceiling) * SHARE_UNITS // gpu.total_bytes


def choose_tp(demand: ModelDemand, inventory: Inventory, ceiling: float) -> int:
    """Smallest valid tensor-parallel size whose per-GPU need fits some node; else PlacementError."""
    for tp in demand.memory.tp_sizes(max((len(n.gpus) for n in inventory.nodes), default=0)):
        need = demand.memory.need_bytes(demand.min_tokens, tp)
        for n in inventory.nodes:
            if sum(1 for g in n.gpus if _fits_alone(g, need, ceiling)) >= tp:
                return tp
    raise no_fit_error(demand, inventory, ceiling)


def _fits_alone(gpu: Gpu, need: int, ceiling: float) -> bool:
    return -(-need * SHARE_UNITS // gpu.total_bytes) <= _cap_units(gpu, ceiling)


def no_fit_error(demand: ModelDemand, inventory: Inventory, ceiling: float) -> PlacementError:
    """Says what the model needs, the largest space there is and what would make it fit."""
    m = demand.memory
    need = m.need_bytes(demand.min_tokens)
    gpus = [g for n in inventory.nodes for g in n.gpus]
    if not gpus:
        return PlacementError(demand.name, f"there are no GPUs to place it on ({inventory.reason or 'empty inventory'})")
    largest = max(usable_bytes(g, ceiling) for g in gpus)
    biggest_node = max(len(n.gpus) for n in inventory.nodes)
    fixes = []
    for tp in m.tp_sizes(64):
        if tp > 1 and m.need_bytes(demand.min_tokens, tp) <= largest:
            where = "" if tp <= biggest_node else f" (the largest node has {biggest_node})"
            fixes.append(f"tensor parallel over {tp} GPUs of one node{where}")
            break
    if m.weight_format in ("bfloat16", "float16", "float32"):
        rest = m.overhead_bytes() + m.kv_bytes(demand.min_tokens)
        fp8, _ = weight_bytes(m.arch, m.act_bytes, "fp8", 8)
        int4, _ = weight_bytes(m.arch, m.act_bytes, "awq", 4)
        if fp8 + rest <= largest:
            fixes.append(f"fp8 quantization (weights ≈ {fp8 / GiB:.1f} GiB)")
        elif int4 + rest <= largest:
            fixes.append(f"an AWQ/int4 checkpoint (weights ≈ {int4 / GiB:.1f} GiB)")
    room = largest - m.fixed_bytes(1)
    if room > 0:
        seqs = room // m.kv_bytes(demand.context)
        if seqs >= 1:
            fixes.append(f"min_concurrency ≤ {seqs} at context {demand.context}")
        ctx = room // m.kv_bytes(demand.seqs)
        if ctx >= 16:
            fixes.append(f"context ≤ {ctx} tokens at {demand.seqs} sequences")
    fixes.append("a GPU with more memory")
    return PlacementError(
        demand.name,
        f"needs {need / GiB:.1f} GiB on one GPU (weights {m.weight_bytes / GiB:.1f} GiB {m.weight_format}, "
        f"KV for {demand.seqs} × {demand.context} tokens {m.kv_bytes(demand.min_tokens) / GiB:.1f} GiB, "
        f"overhead {m.overhead_bytes() / GiB:.1f} GiB); the largest GPU offers {largest / GiB:.1f} GiB "
        f"(ceiling {ceiling:g}) and no valid tensor-parallel size fits a node",
        needed_bytes=need,
        largest_bytes=largest,
        fixes=tuple(fixes),
    )


def plan_placement(demands: list[ModelDemand], inventory: Inventory, *, ceiling: float = DEFAULT_CEILING) -> PlacementPlan:
    if not 0.0 < ceiling <= 1.0:
        raise ValueError(f"ceiling {ceiling} must be in (0, 1]")
    names = [d.name for d in demands]
    if len(set(names)) != len(names):
        raise PlacementError("", f"deployment names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    tp_of = {d.name: choose_tp(d, inventory, ceiling) for d in demands}
    # Two packings: plain first fit, and first fit that tries GPUs without a tensor-parallel
    # group first (a group's share is capped by its fullest GPU, so a small model on one of its
    # GPUs can strand memory on the others). Keep the one with fewer GPUs, then less unused.
    best, error = None, None
    for spare_groups in (False, True):
        try:
            placed, states = _pack(demands, inventory, ceiling, tp_of, spare_groups)
        except PlacementError as exc:
            error = error or exc
            continue
        used = [s for s in states if s.holders]
        score = (len(used), sum(s.cap_units - _granted(s) for s in used))
        if best is None or score < best[0]:
            best = (score, placed)
    if best is None:  # both packings failed: report the first one's reason
        raise error or PlacementError("", "no packing fits")
    rank = {n: k for k, n in enumerate(names)}
    replicas = []
    for item in sorted(best[1], key=lambda i: (rank[i.demand.name], i.replica)):
        share = item.units / SHARE_UNITS
        budget = min(int(share * g.gpu.total_bytes) for g in item.gpus)
        replicas.append(
            ReplicaPlacement(
                model=item.demand.name,
                replica=item.replica,
                node=item.gpus[0].node,
                gpu_ids=tuple(g.gpu.index for g in item.gpus),
                gpu_memory_utilization=share,
                kv_tokens=item.demand.memory.kv_tokens(budget, item.tp),
                need_bytes=item.need,
                weight_bytes=-(-item.demand.memory.weight_bytes // item.tp),
                extra=item.extra,
            )
        )
    return PlacementPlan(tuple(replicas), inventory, ceiling, tuple(names))


def _granted(s: _GpuState) -> int:
    return sum(h.units for h in s.holders)


def _pack(
    demands: list[ModelDemand], inventory: Inventory, ceiling: float, tp_of: dict[str, int], spare_groups: bool
) -> tuple[list[_Item], list[_GpuState]]:
    """One packing (rules 2-5); raises PlacementError when a replica finds no room."""
    states = [_GpuState(n.index, g, _cap_units(g, ceiling)) for n in inventory.nodes for g in n.gpus]
    by_node: dict[int, list[_GpuState]] = {}
    for s in states:
        by_node.setdefault(s.node, []).append(s)
    items = [
        _Item(d, r, tp_of[d.name], d.memory.need_bytes(d.min_tokens, tp_of[d.name]))
        for d in demands
        for r in range(d.replicas)
    ]
    multi = sorted((i for i in items if i.tp > 1), key=lambda i: (-i.tp, -i.need, i.demand.name, i.replica))
    single = sorted((i for i in items if i.tp == 1), key=lambda i: (-i.need, i.demand.name, i.replica))
    for item in multi:
        if not _place_group(item, by_node):
            raise _full_error(item, states, ceiling)
    for item in single:
        if not _place_single(item, _single_order(states) if spare_groups else states):
            raise _full_error(item, states, ceiling)

    placed = multi + single
    fillers = sorted((d for d in demands if d.fill), key=lambda d: (-d.weight, d.name))
    count = {d.name: d.replicas for d in demands}
    while fillers:
        progress = False
        for d in fillers:
            tp = tp_of[d.name]
            item = _Item(d, count[d.name], tp, d.memory.need_bytes(d.min_tokens, tp), extra=True)
            ok = _place_group(item, by_node, empty_only=True) if tp > 1 else _place_single(item, states, empty_only=True)
            if ok:
                count[d.name] += 1
                placed.append(item)
                progress = True
        if not progress:
            break
    _share_out(states)
    return placed, states


def _single_order(states: list[_GpuState]) -> list[_GpuState]:
    """Used GPUs without a tensor-parallel group, then those with one, then empty ones."""
    def rank(s: _GpuState) -> int:
        if not s.holders:
            return 2
        return 1 if any(h.tp > 1 for h in s.holders) else 0

    return sorted(states, key=rank)  # stable: (node, id) order within each rank


def _place_group(item: _Item, by_node: dict[int, list[_GpuState]], empty_only: bool = False) -> bool:
    """`tp` GPUs of one node with room for a rank each: NVLink-linked if any, lowest ids first."""
    best: list[_GpuState] | None = None
    for node in sorted(by_node):
        free = [s for s in by_node[node] if _room(s, item, empty_only)]
        if len(free) < item.tp:
            continue
        linked = _linked_set(free, item.tp)
        if linked:
            best = linked
            break
        if best is None:
            best = free[: item.tp]
    if best is None:
        return False
    for s in best:
        s.holders.append(item)
        s.used_units += s.units(item.need)
    item.gpus = best
    return True


def _room(s: _GpuState, item: _Item, empty_only: bool) -> bool:
    if empty_only and s.holders:
        return False
    if any(h.demand.name == item.demand.name for h in s.holders):
        return False  # two replicas of one model on one GPU add no throughput
    return s.used_units + s.units(item.need) <= s.cap_units


def _linked_set(free: list[_GpuState], tp: int) -> list[_GpuState] | None:
    """`tp` GPUs that are all NVLink peers of each other, lowest ids first (greedy)."""
    if tp == 1:
        return free[:1]
    for start in free:
        group = [start]
        for s in free:
            if s is not start and all(s.gpu.index in g.gpu.nvlink for g in group):
                group.append(s)
                if len(group) == tp:
                    return group
    return None


def _place_single(item: _Item, states: list[_GpuState], empty_only: bool = False) -> bool:
    for s in states:
        if _room(s, item, empty_only):
            s.holders.append(item)
            s.used_units += s.units(item.need)
            item.gpus = [s]
            return True
    return False


def _share_out(states: list[_GpuState]) -> None:
    """Gives each replica its minimum plus a part of what is left, in whole thousandths.

    First every GPU splits its spare room in proportion to its replicas' minimum KV cache; a
    tensor-parallel replica needs the same share on each of its GPUs, so it keeps the smallest
    it was offered; what that frees on its other GPUs goes to their single-GPU replicas.
    """
    offered: dict[int, list[int]] = {}
    for s in states:
        if not s.holders:
            continue
        mins = [s.units(h.need) for h in s.holders]
        weights = [h.demand.memory.kv_bytes(h.demand.min_tokens) for h in s.holders]
        for h, m, e in zip(s.holders, mins, _split(s.cap_units - sum(mins), weights)):
            offered.setdefault(id(h), []).append(m + e)
            h.units = m + e
    for s in states:
        for h in s.holders:
            if h.tp > 1:
                h.units = min(offered[id(h)])
    for s in states:
        singles = [h for h in s.holders if h.tp == 1]
        left = s.cap_units - sum(h.units for h in s.holders)
        if singles and left > 0:
            weights = [h.demand.memory.kv_bytes(h.demand.min_tokens) for h in singles]
            for h, e in zip(singles, _split(left, weights)):
                h.units += e


def _split(total: int, weights: list[int]) -> list[int]:
    """`total` units in proportion to `weights`; leftovers to the largest remainders, then order."""
    if total <= 0:
        return [0] * len(weights)
    w = [max(x, 1) for x in weights]
    s = sum(w)
    base = [total * x // s for x in w]
    rest = total - sum(base)
    order = sorted(range(len(w)), key=lambda i: (-(total * w[i] % s), i))
    for i in order[:rest]:
        base[i] += 1
    return base


def _full_error(item: _Item, states: list[_GpuState], ceiling: float) -> PlacementError:
    gpus = len(states)
    free = [(s.cap_units - s.used_units) * s.gpu.total_bytes // SHARE_UNITS for s in states]
    largest = max(free, default=0)
    what = f"each of {item.tp} GPUs of one node" if item.tp > 1 else "one GPU"
    return PlacementError(
        item.demand.name,
        f"replica {item.replica} needs {item.need / GiB:.1f} GiB on {what}, but the other demands already "
        f"fill the {gpus} GPU(s): the largest space left is {largest / GiB:.1f} GiB (ceiling {ceiling:g})",
        needed_bytes=item.need,
        largest_bytes=largest,
        fixes=(
            "more GPUs (--gpus)",
            "fewer replicas",
            "lower min_concurrency or context",
            "quantized checkpoints (AWQ, fp8)",
        ),
    )
