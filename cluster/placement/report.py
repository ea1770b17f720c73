"""A plan for people: the GPU table `chorus plan` prints, and the YAML it writes.

The table has one row per GPU in use (its replicas and shares, a memory bar, what is left)
and one row per replica (node, GPUs, tensor parallel, share, KV tokens). The YAML is the
config with its `placement:` section replaced by the plan's, each model commented with what
the plan expects of it, so a user can read it, edit it and check it with `chorus plan --check`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from cluster.inventory import GiB
from cluster.placement.plan import PlacementPlan
from cluster.sizing.memory import ModelMemory
from cluster.spec import PlacementSpec

BAR = 40
MARKS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _gib(n: float) -> str:
    return f"{n / GiB:.1f}"


def render_table(plan: PlacementPlan, memory: Mapping[str, ModelMemory]) -> str:
    inv = plan.inventory
    mark = {m: MARKS[i % len(MARKS)] for i, m in enumerate(plan.models)}
    used = plan.gpus_used()
    lines = [
        f"GPUs: {inv.describe()}",
        (f"plan: {len(plan.replicas)} replica(s) of {len(plan.models)} model(s) on {used} of {inv.gpu_count} GPU(s); "
        f"shares per GPU ≤ {plan.ceiling:g}"),
        "",
        (f"{'GPU':<8} {'memory (' + ', '.join(f'{mark[m]}={m}' for m in plan.models) + '; .=unused)':<{BAR + 2}} "
        f"{'used GiB':>9} {'free GiB':>9}  replicas (share)"),
    ]
    for node in inv.nodes:
        for gpu in node.gpus:
            reps = plan.on_gpu(node.index, gpu.index)
            if not reps:
                continue
            bar = ""
            for r in reps:
                bar += mark[r.model] * round(r.gpu_memory_utilization * BAR)
            bar = (bar + "." * BAR)[:BAR]
            share = sum(r.gpu_memory_utilization for r in reps)
            who = ", ".join(
                f"{r.model}#{r.replica} ({r.gpu_memory_utilization:.3f}{', tp' + str(r.tensor_parallel_size) if r.tensor_parallel_size > 1 else ''})"
                for r in reps
            )
            lines.append(
                f"{f'n{node.index}:g{gpu.index}':<8} [{bar}] {_gib(share * gpu.total_bytes):>9} "
                f"{_gib((1 - share) * gpu.total_bytes):>9}  {who}"
            )
    idle = inv.gpu_count - used
    if idle:
        lines.append(f"{idle} GPU(s) unused" + ("" if any(r.extra for r in plan.replicas) else " (set fill: true to give them extra replicas)"))
    lines += [
        "",
        (f"{'replica':<22} {'node':>4} {'GPUs':<10} {'tp':>2} {'share':>6} {'weights':>9} {'KV tokens':>10} "
        f"{'KV GiB':>7}  {'format':<9} origin"),
    ]
    for r in plan.replicas:
        m = memory[r.model]
        kv = r.kv_tokens * m.kv_bytes_per_token
        lines.append(
            f"{f'{r.model}#{r.replica}' + (' +' if r.extra else ''):<22} {r.node:>4} "
            f"{','.join(map(str, r.gpu_ids)):<10} {r.tensor_parallel_size:>2} {r.gpu_memory_utilization:>6.3f} "
            f"{_gib(m.weight_bytes) + ' GiB':>9} {r.kv_tokens:>10,} {_gib(kv):>7}  {m.weight_format:<9} {m.origin}"
        )
    return "\n".join(lines)


def render_placement(
    plan: PlacementPlan,
    memory: Mapping[str, ModelMemory],
    base: Mapping[str, PlacementSpec] | None = None,
    cpus: Mapping[str, list[str]] | None = None,
) -> str:
    """The `placement:` YAML section of `plan`, with a comment per model (and its cores, if planned)."""
    specs = plan.placement_specs(base)
    if cpus:
        specs = {m: p.model_copy(update={"cpus": cpus[m]}) if m in cpus else p for m, p in specs.items()}
    out = ["placement:"]
    for model, spec in specs.items():
        m = memory[model]
        reps = plan.replicas_of(model)
        kv = min(r.kv_tokens for r in reps)
        out.append(
            f"  # {model}: {m.params / 1e9:.2f}B parameters, {m.weight_format} weights {_gib(m.weight_bytes)} GiB, "
            f"KV {m.kv_bytes_per_token // 1024} KiB/token → ≥ {kv:,} KV tokens per replica"
        )
        data = {"replicas": spec.replicas}  # always written, even at the default
        data.update(spec.model_dump(exclude_defaults=True, exclude={"gpus", "replicas", "cpus"}))
        body = yaml.safe_dump({model: data}, sort_keys=False, default_flow_style=False).rstrip().splitlines()
        out += ["  " + line for line in body]
        out.append("    gpus:")
        for slot in spec.gpus or []:
            own = f", gpu_share: {slot.gpu_share:g}" if slot.gpu_share is not None else ""
            out.append(f"      - {{node: {slot.node}, gpu_ids: [{', '.join(map(str, slot.gpu_ids))}]{own}}}")
        if spec.cpus is not None:
            out.append(f"    cpus: [{', '.join(repr(c) for c in spec.cpus)}]")
    return "\n".join(out) + "\n"


def render_config(raw: Mapping[str, Any], plan: PlacementPlan, memory: Mapping[str, ModelMemory],
                  base: Mapping[str, PlacementSpec] | None = None, header: str = "",
                  cpus: Mapping[str, list[str]] | None = None) -> str:
    """The whole config (`raw`: the YAML as loaded) with the plan's placement section."""
    rest = {k: v for k, v in raw.items() if k != "placement"}
    keys = list(rest)
    head = {k: rest[k] for k in keys[: keys.index("roles") + 1]} if "roles" in rest else rest
    tail = {k: v for k, v in rest.items() if k not in head}
    text = header + yaml.safe_dump(head, sort_keys=False, allow_unicode=True)
    text += "\n" + render_placement(plan, memory, base, cpus)
    if tail:
        text += "\n" + yaml.safe_dump(tail, sort_keys=False, allow_unicode=True)
    return text


def render_cpu_config(raw: Mapping[str, Any], cpus: Mapping[str, list[str]], header: str = "") -> str:
    """A CPU-only config (`raw`: the YAML as loaded) with each model's planned `cpus:` added."""
    placement = {k: dict(v or {}) for k, v in (raw.get("placement") or {}).items()}
    for model, sets in cpus.items():
        placement.setdefault(model, {})["cpus"] = list(sets)
    out = {k: (placement if k == "placement" else v) for k, v in raw.items()}
    out.setdefault("placement", placement)
    return header + yaml.safe_dump(out, sort_keys=False, allow_unicode=True)
