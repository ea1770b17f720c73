"""Placement benchmark: GPUs and KV capacity for the standard Qwen2.5 fleet, and planning time.

    python scripts/bench_placement.py [--out docs/bench]

Writes placement.json and placement.png under --out:
* GPUs the standard fleet (1.5B, 7B, Coder-7B, 14B, 32B in bf16) takes on 80 GB and on 40 GB
  GPUs with `chorus plan` versus one engine group per model (each model on its own GPUs, the
  way Ray Serve LLM places engines when no one hand-tunes GPU fractions);
* the KV capacity (tokens) each model gets in both;
* how long planning 64 GPUs (8 nodes × 8) × 30 deployments takes (target: under 1 s).
Pure computation: no GPU, no Ray.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

# Import chorus from this checkout, whichever one the environment's editable install names.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.inventory import from_spec
from cluster.placement.demand import ModelDemand
from cluster.placement.planner import DEFAULT_CEILING, plan_placement, usable_bytes
from cluster.sizing.memory import estimate
from cluster.spec import ModelSpec

# The fleet of configs/gpu-8x80.yaml: name, hub id, KV target (sequences × context).
FLEET = [
    ("classifier", "Qwen/Qwen2.5-1.5B-Instruct", 32, 2048),
    ("generalist", "Qwen/Qwen2.5-7B-Instruct", 16, 8192),
    ("coder", "Qwen/Qwen2.5-Coder-7B-Instruct", 16, 8192),
    ("reasoner", "Qwen/Qwen2.5-14B-Instruct", 8, 8192),
    ("planner", "Qwen/Qwen2.5-32B-Instruct", 8, 8192),
]
GPUS = {"80GB": "8xH100-80GB", "40GB": "8xA100-40GB"}
SCALE_SPEC = "8x8xH100-80GB"
SCALE_DEPLOYMENTS = 30
RUNS = 20


def fleet() -> list[ModelDemand]:
    out = []
    for name, source, seqs, context in FLEET:
        model = ModelSpec(name=name, source=source, dtype="bfloat16", max_model_len=16384, max_num_seqs=64)
        out.append(ModelDemand(name, estimate(model), seqs=seqs, context=context))
    return out


def one_group_per_model(demands: list[ModelDemand], spec: str) -> dict:
    """Each model alone on the fewest whole GPUs that hold it (smallest valid tensor-parallel size)."""
    gpu = from_spec(spec).nodes[0].gpus[0]
    usable = usable_bytes(gpu, DEFAULT_CEILING)
    gpus, kv = 0, {}
    for d in demands:
        tp = next(t for t in d.memory.tp_sizes(64) if d.memory.need_bytes(d.min_tokens, t) <= usable)
        gpus += tp
        kv[d.name] = d.memory.kv_tokens(usable, tp)
    return {"gpus": gpus, "kv_tokens": kv}


def chorus(demands: list[ModelDemand], spec: str) -> dict:
    p = plan_placement(demands, from_spec(spec))
    return {
        "gpus": p.gpus_used(),
        "kv_tokens": {m: min(r.kv_tokens for r in p.replicas_of(m)) for m in p.models},
        "tensor_parallel": {m: p.replicas_of(m)[0].tensor_parallel_size for m in p.models},
        "placement": [
            {"model": r.model, "node": r.node, "gpus": list(r.gpu_ids), "share": r.gpu_memory_utilization}
            for r in p.replicas
        ],
    }


def scale_case() -> list[ModelDemand]:
    sources = [s for _, s, _, _ in FLEET] + ["Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-3B-Instruct"]
    demands = []
    for i in range(SCALE_DEPLOYMENTS):
        model = ModelSpec(name=f"d{i:02d}", source=sources[i % len(sources)], dtype="bfloat16", max_model_len=8192)
        demands.append(ModelDemand(model.name, estimate(model), replicas=1 + i % 3, seqs=4, context=4096, fill=i % 5 == 0))
    return demands


def planning_time() -> dict:
    demands = scale_case()
    inv = from_spec(SCALE_SPEC)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        p = plan_placement(demands, inv)
        times.append(time.perf_counter() - start)
    return {
        "gpus": inv.gpu_count,
        "deployments": len(demands),
        "replicas": len(p.replicas),
        "gpus_used": p.gpus_used(),
        "runs": RUNS,
        "median_s": statistics.median(times),
        "max_s": max(times),
        "target_s": 1.0,
    }


def figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    labels = list(result["fleet"])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], [result["fleet"][k]["one_group_per_model"]["gpus"] for k in labels], 0.4,
           label="one engine group per model", color="#bbbbbb")
    ax.bar([i + 0.2 for i in x], [result["fleet"][k]["chorus"]["gpus"] for k in labels], 0.4,
           label="chorus plan", color="#3b6ea5")
    ax.set_xticks(list(x), [f"{k} GPUs" for k in labels])
    ax.set_ylabel("GPUs used")
    ax.set_title("Standard Qwen2.5 fleet (1.5B…32B, bf16)")
    ax.legend(fontsize=8)

    ax = axes[1]
    models = [name for name, *_ in FLEET]
    bars = [
        ("one group per model, 80GB", result["fleet"]["80GB"]["one_group_per_model"]["kv_tokens"], "#bbbbbb"),
        ("chorus, 80GB GPUs", result["fleet"]["80GB"]["chorus"]["kv_tokens"], "#3b6ea5"),
        ("chorus, 40GB GPUs", result["fleet"]["40GB"]["chorus"]["kv_tokens"], "#8fb3d9"),
    ]
    for j, (label, kv, colour) in enumerate(bars):
        ax.bar([i + (j - 1) * 0.27 for i in range(len(models))], [kv[m] for m in models], 0.27,
               label=label, color=colour)
    targets = [seqs * ctx for _, _, seqs, ctx in FLEET]
    ax.scatter(range(len(models)), targets, marker="_", s=400, color="black", label="minimum target", zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(models)), models, rotation=20)
    ax.set_ylabel("KV cache tokens per replica")
    ax.set_title("KV capacity per model")
    ax.legend(fontsize=8)

    ax = axes[2]
    t = result["planning_time"]
    ax.bar(["median", "max"], [t["median_s"] * 1000, t["max_s"] * 1000], color="#3b6ea5")
    ax.axhline(t["target_s"] * 1000, color="red", linestyle="--", label="target 1 s")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.set_title(f"Planning {t['gpus']} GPUs × {t['deployments']} deployments")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/bench", help="folder for placement.json and placement.png")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demands = fleet()
    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "ceiling": DEFAULT_CEILING,
        "fleet_targets": {name: {"sequences": s, "context": c} for name, _, s, c in FLEET},
        "fleet": {
            key: {"spec": spec, "chorus": chorus(demands, spec), "one_group_per_model": one_group_per_model(demands, spec)}
            for key, spec in GPUS.items()
        },
        "planning_time": planning_time(),
    }
    (out / "placement.json").write_text(json.dumps(result, indent=2) + "\n")
    figure(result, out / "placement.png")
    for key, r in result["fleet"].items():
        print(f"{key}: chorus {r['chorus']['gpus']} GPUs vs one group per model {r['one_group_per_model']['gpus']}")
    t = result["planning_time"]
    print(f"planning {t['gpus']} GPUs × {t['deployments']} deployments: median {t['median_s'] * 1000:.1f} ms, "
          f"max {t['max_s'] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
