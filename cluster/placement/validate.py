"""Checks a hand-written `placement:` against an inventory with the planner's own rules.

`check()` returns every problem it finds (not just the first), each naming the model, the
config field and the fix: GPU ids or nodes that do not exist, a GPU listed twice in one
replica, tensor-parallel sizes that do not divide the heads, shares too small for the weights
and minimum KV cache, GPUs whose shares sum over the ceiling or over their free memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from cluster.errors import SizingError
from cluster.inventory import GiB, Inventory
from cluster.placement.plan import SHARE_UNITS
from cluster.placement.planner import DEFAULT_CEILING, usable_bytes
from cluster.sizing.memory import ModelMemory, estimate, kv_target
from cluster.spec import ModelSpec, PlacementSpec

EPS = 0.5 / SHARE_UNITS  # shares are thousandths; tolerate float rounding of their sums


@dataclass(frozen=True)
class Problem:
    model: str
    field: str  # config path, e.g. placement.coder.gpus[1].gpu_ids
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        return f"{self.severity}: {self.field}: {self.message}"


def check(
    models: list[ModelSpec],
    placement: Mapping[str, PlacementSpec],
    inventory: Inventory,
    *,
    ceiling: float = DEFAULT_CEILING,
    memory: Mapping[str, ModelMemory] | None = None,
) -> list[Problem]:
    """Every problem of `placement` on `inventory`; empty means it is valid. `memory` skips sizing."""
    problems: list[Problem] = []
    if not inventory.nodes:
        return [Problem("", "placement", f"no GPUs to check against: {inventory.reason}; pass --gpus SPEC")]
    load: dict[tuple[int, int], list[tuple[str, float]]] = defaultdict(list)
    for m in models:
        p = placement.get(m.name) or PlacementSpec()
        where = f"placement.{m.name}"
        if not p.on_gpu:
            continue
        if p.gpus is None:
            problems.append(
                Problem(m.name, where, "gpu_share without gpus: Ray picks the GPUs, unchecked; "
                        "run `chorus plan` to pin them", "warning")
            )
            continue
        try:
            mem = (memory or {}).get(m.name) or estimate(m)
        except SizingError as exc:
            problems.append(Problem(m.name, where, str(exc)))
            mem = None
        tp = p.tensor_parallel_size
        if mem is not None and (mem.arch.heads % tp or mem.arch.kv_heads % tp):
            valid = ", ".join(str(t) for t in mem.tp_sizes(64))
            problems.append(
                Problem(m.name, f"{where}.tensor_parallel_size",
                        f"{tp} does not divide the {mem.arch.heads} attention heads and {mem.arch.kv_heads} KV heads; "
                        f"use one of {valid}")
            )
        seqs, context = kv_target(m, p)
        for r, slot in enumerate(p.gpus):
            field = f"{where}.gpus[{r}]"
            if slot.node >= len(inventory.nodes):
                problems.append(
                    Problem(m.name, f"{field}.node",
                            f"node {slot.node} does not exist; the inventory has {len(inventory.nodes)} node(s), "
                            f"numbered from 0 ({inventory.describe()})")
                )
                continue
            node = inventory.nodes[slot.node]
            if len(set(slot.gpu_ids)) != len(slot.gpu_ids):
                problems.append(Problem(m.name, f"{field}.gpu_ids", f"{slot.gpu_ids} lists a GPU twice; one id per rank"))
            budget = None
            share = p.share_of(r)
            for g in slot.gpu_ids:
                gpu = inventory.gpu(slot.node, g)
                if gpu is None:
                    problems.append(
                        Problem(m.name, f"{field}.gpu_ids",
                                f"GPU {g} does not exist on node {slot.node}, which has {len(node.gpus)} "
                                f"(ids 0-{len(node.gpus) - 1})")
                    )
                    continue
                load[(slot.node, g)].append((f"{m.name}#{r}", share))
                b = int(share * gpu.total_bytes)
                budget = b if budget is None else min(budget, b)
            if mem is None or budget is None:
                continue
            need = mem.need_bytes(seqs * context, tp)
            if budget < mem.fixed_bytes(tp):
                problems.append(
                    Problem(m.name, f"{field}.gpu_share",
                            f"{share:g} of a GPU is {budget / GiB:.1f} GiB, less than the weights' shard and "
                            f"overhead ({mem.fixed_bytes(tp) / GiB:.1f} GiB): the engine cannot start; raise gpu_share "
                            "to at least "
                            f"{_share_for(need, inventory, slot.node, slot.gpu_ids):g} or add tensor parallelism")
                )
            elif budget < need:
                tokens = mem.kv_tokens(budget, tp)
                problems.append(
                    Problem(m.name, f"{field}.gpu_share",
                            f"{share:g} of a GPU leaves KV for {tokens} tokens, fewer than the {seqs} × {context} "
                            f"the target asks for; raise gpu_share to "
                            f"{_share_for(need, inventory, slot.node, slot.gpu_ids):g} or lower min_concurrency/context",
                            "warning")
                )
    for (n, g), users in sorted(load.items()):
        gpu = inventory.gpu(n, g)
        if gpu is None:  # `load` only holds GPUs found above
            continue
        total = sum(s for _, s in users)
        limit = usable_bytes(gpu, ceiling) / gpu.total_bytes
        if total > limit + EPS:
            who = ", ".join(f"{u} {s:g}" for u, s in users)
            why = f"the ceiling {ceiling:g}" if limit >= ceiling - EPS else f"its free memory ({gpu.free_bytes / GiB:.1f} GiB)"
            problems.append(
                Problem(users[0][0].split("#")[0], f"node {n} GPU {g}",
                        f"over-subscribed: shares sum to {total:.3f} ({who}), over {why} ({limit:.3f}); "
                        "lower gpu_share or move a replica to another GPU")
            )
    return problems


def _share_for(need: int, inventory: Inventory, node: int, gpu_ids: list[int]) -> float:
    totals = [g.total_bytes for i in gpu_ids if (g := inventory.gpu(node, i)) is not None]
    return -(-need * SHARE_UNITS // min(totals)) / SHARE_UNITS if totals else 1.0
