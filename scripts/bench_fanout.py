"""Benchmark 2: fan-out latency. Does a council or a pyramid take as long as its slowest member
(plus synthesis), or as long as all members one after another?

For each request the trace gives every step's latency. For a council the critical path is the
slowest member + the merge; for a pyramid, the slowest step of each layer, summed. Reported:
wall / critical path (target ≤ 1.10) and wall / sum of all steps (what calling members one
after another would cost).   Usage: python scripts/bench_fanout.py [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import defaultdict

from benchlib import chorus_deployment, pyplot, summary, tiny_model, write

QUESTIONS = [f"Question {i}: explain how {topic} works." for i, topic in enumerate(
    ["a compiler", "a GPU", "the KV cache", "a tokenizer", "continuous batching", "tensor parallelism",
     "a placement group", "prefix caching", "speculative decoding", "a router"] * 3)]


def config() -> dict:
    return {
        "models": [tiny_model("tiny"), tiny_model("tiny-b")],
        "roles": {"generalist": "tiny", "reasoner": "tiny", "coder": "tiny-b", "judge": "tiny-b",
                  "planner": "tiny", "synthesizer": "tiny"},
        "sampling": {"max_tokens": 32, "temperature": 0.0},
        "patterns": {
            "council": {"kind": "council", "members": ["generalist", "reasoner", "coder"], "combine": "merge",
                        "synthesizer": "synthesizer", "extract": "exact", "temperature": 0.8},
            "pyramid": {"kind": "pyramid", "layers": [["generalist", "reasoner", "coder"], ["judge", "planner"],
                                                      ["synthesizer"]], "extract": "exact", "temperature": 0.8},
        },
        "server": {"port": 0},
    }


def critical_path(steps: list) -> float:
    """Sum over stages of the slowest step in the stage (stage = step name without its index)."""
    stages: dict[str, float] = defaultdict(float)
    for s in steps:
        stage = re.sub(r"\[\d+\]$", "", s.name)
        stages[stage] = max(stages[stage], s.latency_s)
    return sum(stages.values())


async def run(requests: int) -> dict:
    from orchestrator.core.schema import ChatRequest
    from orchestrator.runtime.deploy import find_orchestrator
    from serving.types import Message

    out: dict[str, dict] = {}
    with chorus_deployment(config(), http=False):
        orch = find_orchestrator()
        for pattern in ("council", "pyramid"):
            for q in QUESTIONS[:3]:  # warm-up
                await orch.chat.remote(ChatRequest(model=pattern, messages=[Message(role="user", content=q)]))
            vs_critical, vs_sequential, walls = [], [], []
            for q in QUESTIONS[:requests]:
                reply = await orch.chat.remote(ChatRequest(model=pattern, messages=[Message(role="user", content=q)]))
                steps = reply.trace.steps
                wall = reply.trace.totals.wall_s
                walls.append(wall)
                vs_critical.append(wall / critical_path(steps))
                vs_sequential.append(wall / sum(s.latency_s for s in steps))
            out[pattern] = {
                "calls_per_request": len(steps),
                "wall_ms": summary([w * 1000 for w in walls]),
                "wall_over_critical_path": summary(vs_critical),
                "wall_over_sequential_sum": summary(vs_sequential),
            }
    return {"requests": requests, "max_tokens": 32, "target": "wall <= 1.10 x critical path", "patterns": out}


def plot(result: dict):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    names = list(result["patterns"])
    crit = [result["patterns"][n]["wall_over_critical_path"]["p50"] for n in names]
    seq = [result["patterns"][n]["wall_over_sequential_sum"]["p50"] for n in names]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], crit, width=0.4, label="wall / (slowest member per stage, summed)")
    ax.bar([x + 0.2 for x in xs], seq, width=0.4, label="wall / (all steps one after another)")
    ax.axhline(1.10, color="gray", linestyle="--", linewidth=1, label="target 1.10")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("ratio (p50)")
    ax.set_title("Fan-out latency on vLLM-CPU (tiny Qwen2)")
    ax.legend(fontsize=8)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(run(args.requests))
    for name, r in result["patterns"].items():
        c, s = r["wall_over_critical_path"], r["wall_over_sequential_sum"]
        print(f"{name:<8} wall p50 {r['wall_ms']['p50']:.0f} ms; wall/critical p50 {c['p50']:.3f} p99 {c['p99']:.3f}; "
              f"wall/sequential p50 {s['p50']:.3f}")
    write("fanout", result, plot(result))


if __name__ == "__main__":
    main()
