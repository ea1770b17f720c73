"""Benchmark 1: what chorus adds to one model call.

The same request (tiny Qwen2, 8 greedy tokens) by these paths, interleaved round by round so
machine noise hits them alike:
  engine        VLLMEngine in this process (AsyncLLM, no Ray)
  noop          a no-op Ray actor round trip (an async actor echoing the request): the yardstick
                of the target "the orchestrator adds at most one no-op actor round trip + 1 ms"
  host          the ModelHost actor over Ray (admission, timing, accounting)
  orchestrator  the Serve deployment running the `single` pattern through a Serve handle
                (admission probe + host call + trace)
  http          POST /v1/chat/completions through Serve's HTTP proxy
  bare_handle   Serve's own floor over the same host: a bare Serve ingress replica whose only
                work is the host call (benchlib.run_bare_serve_app), through a Serve handle
  bare_http     the same bare replica by HTTP through the same proxy; chorus's orchestrator and
                http paths less these two are what chorus adds over what Serve itself costs
  http_direct   the same, straight to an orchestrator replica's own HTTP server (Serve's direct
                ingress, RAY_SERVE_ENABLE_DIRECT_INGRESS=1: no proxy hop; Serve's proxy then
                serves no HTTP of its own). It needs its own Ray cluster, so it runs in a second
                phase (a child process) with its own engine path as the baseline; its added
                latency is over that baseline.
Each path has its own engine copy of the same model; reported: p50/p99 latency and the added
latency over the engine path.   Usage: python scripts/bench_overhead.py [--rounds 80]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchlib import chorus_deployment, direct_ingress_url, pyplot, run_bare_serve_app, summary, tiny_model, write

PROXY_PATHS = ["engine", "noop", "host", "orchestrator", "http", "bare_handle", "bare_http"]
MODEL_PATHS = ["host", "orchestrator", "http", "http_direct", "bare_handle", "bare_http"]  # paths that run the engine


class Echo:
    """A no-op actor: what one Ray actor round trip costs here, with the same argument."""

    async def echo(self, request: object) -> object:
        return request
DIRECT_PATHS = ["engine", "noop", "http_direct"]


async def run(rounds: int, paths: list[str], host_cpus: str | None = None) -> dict:
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
        "server": {"port": 0, "num_replicas": 1},
    }
    if host_cpus:  # the host engine's cores by hand instead of the CPU plan's
        data["placement"] = {"tiny": {"replicas": 1, "gpu_share": 0, "num_cpus": 1, "cpus": [host_cpus]}}
    engine = VLLMEngine(ModelSpec(**model))
    await engine.start()
    messages = [Message(role="user", content="Tell me about the sea.")]
    request = GenerationRequest(messages=messages, sampling=Sampling(max_tokens=8))
    chat = ChatRequest(model="single", messages=messages)
    body = {"model": "single", "messages": [m.model_dump() for m in messages]}
    times: dict[str, list[float]] = {p: [] for p in paths}
    inside: list[float] = []  # the host's admission + engine time of each host call
    with chorus_deployment(data) as dep:
        import ray
        noop = ray.remote(Echo).options(num_cpus=0).remote()
        orch = find_orchestrator()
        host = dep.hosts["tiny"][0]

        async def host_call() -> int:
            return int((await host.generate.remote(request)).usage.completion_tokens)

        bare, bare_url = run_bare_serve_app(host_call, str(dep.url)) if "bare_http" in paths else (None, "")
        direct = direct_ingress_url() if "http_direct" in paths else dep.url
        print(f"  measuring {paths}: proxy {dep.url}   replica {direct}", flush=True)
        async with httpx.AsyncClient(base_url=dep.url, timeout=60) as http, httpx.AsyncClient(
            base_url=direct, timeout=60
        ) as http_direct:

            async def once(path: str) -> None:
                t0 = time.perf_counter()
                if path == "engine":
                    r = await engine.generate(request)
                    tokens = r.usage.completion_tokens
                elif path == "noop":
                    await noop.echo.remote(request)
                    tokens = 8
                elif path == "host":
                    r = await host.generate.remote(request)
                    tokens = r.usage.completion_tokens
                    inside.append(r.queue_s + r.run_s)  # the host's own view of the call
                elif path == "orchestrator":
                    r = await orch.chat.remote(chat)
                    tokens = r.usage.completion_tokens
                elif path == "bare_handle":
                    tokens = (await bare.chat.remote(body))["usage"]["completion_tokens"]
                elif path == "bare_http":
                    resp = await http.post(bare_url, json=body)
                    resp.raise_for_status()
                    tokens = resp.json()["usage"]["completion_tokens"]
                else:
                    client = http if path == "http" else http_direct
                    resp = await client.post("/chat/completions", json=body)
                    resp.raise_for_status()
                    tokens = resp.json()["usage"]["completion_tokens"]
                elapsed = time.perf_counter() - t0
                if tokens != 8:
                    raise RuntimeError(f"{path} produced {tokens} tokens, expected 8")
                times[path].append(elapsed)

            for _ in range(5):  # warm every path (first requests compile kernels)
                for p in paths:
                    await once(p)
            times = {p: [] for p in paths}
            inside.clear()
            for i in range(rounds):
                k = i % len(paths)
                for p in paths[k:] + paths[:k]:  # rotate who goes first
                    await once(p)
    await engine.shutdown()
    stats = {p: summary([t * 1000 for t in times[p]]) for p in paths}
    base = stats["engine"]
    added = {
        p: {"p50_ms": stats[p]["p50"] - base["p50"], "p99_ms": stats[p]["p99"] - base["p99"]}
        for p in paths
        if p in MODEL_PATHS
    }
    out: dict = {"latency_ms": stats, "added_over_engine_ms": added}
    if inside:
        # Where the host path's time goes: inside the host (its engine on its own cores) vs the
        # Ray call around it.
        out["host_inside_ms"] = summary([t * 1000 for t in inside])
    return out


def targets(result: dict) -> dict:
    """The targets in this run's own units (p50s). Through Serve's proxy a call crosses two Ray
    hops (proxy or handle → orchestrator replica → host): the orchestrator path may add two no-op
    round trips + 1 ms, HTTP 2 ms more. Under direct ingress the HTTP server and the orchestrator
    share a process, leaving one hop per model call: HTTP may add one round trip + 1 + 2 ms."""
    proxy = result["proxy"]
    noop = proxy["latency_ms"]["noop"]["p50"]
    orchestrator = proxy["added_over_engine_ms"]["orchestrator"]["p50_ms"]
    http = proxy["added_over_engine_ms"]["http"]["p50_ms"]
    out = {
        "proxy_noop_p50_ms": noop,
        "proxy_orchestrator_added_p50_ms": orchestrator,
        "proxy_orchestrator_target_ms": 2 * noop + 1.0,
        "proxy_http_over_orchestrator_p50_ms": http - orchestrator,
        "proxy_http_target_ms": 2.0,
    }
    lat = proxy["latency_ms"]
    if "bare_http" in lat:
        # Serve's own floor on the same path and what chorus adds over it.
        out |= {
            "serve_floor_replica_hop_p50_ms": lat["bare_handle"]["p50"] - lat["host"]["p50"],
            "serve_floor_http_p50_ms": lat["bare_http"]["p50"] - lat["bare_handle"]["p50"],
            "serve_floor_http_added_over_engine_p50_ms": proxy["added_over_engine_ms"]["bare_http"]["p50_ms"],
            "chorus_orchestrator_over_floor_p50_ms": lat["orchestrator"]["p50"] - lat["bare_handle"]["p50"],
            "chorus_http_over_floor_p50_ms": lat["http"]["p50"] - lat["bare_http"]["p50"],
        }
    if "direct_ingress" in result:
        direct = result["direct_ingress"]
        noop_d = direct["latency_ms"]["noop"]["p50"]
        out |= {
            "direct_noop_p50_ms": noop_d,
            "direct_http_added_p50_ms": direct["added_over_engine_ms"]["http_direct"]["p50_ms"],
            "direct_http_target_ms": noop_d + 3.0,
        }
    return out


def print_targets(t: dict) -> None:
    def verdict(value: float, target: float) -> str:
        return f"{value:.1f} ms (target ≤ {target:.1f}: {'met' if value <= target else 'missed'})"

    print("orchestrator path adds", verdict(t["proxy_orchestrator_added_p50_ms"], t["proxy_orchestrator_target_ms"]))
    print("HTTP through the proxy adds on top", verdict(t["proxy_http_over_orchestrator_p50_ms"], t["proxy_http_target_ms"]))
    if "direct_http_added_p50_ms" in t:
        print("HTTP under direct ingress adds", verdict(t["direct_http_added_p50_ms"], t["direct_http_target_ms"]))
    if "serve_floor_http_p50_ms" in t:
        print(f"Serve's own floor over the same host: a replica hop adds {t['serve_floor_replica_hop_p50_ms']:.1f} ms, "
              f"HTTP {t['serve_floor_http_p50_ms']:.1f} ms more ({t['serve_floor_http_added_over_engine_p50_ms']:.1f} ms over "
              f"the engine); chorus over it: orchestrator {t['chorus_orchestrator_over_floor_p50_ms']:+.1f} ms, "
              f"HTTP {t['chorus_http_over_floor_p50_ms']:+.1f} ms")  # fmt: skip


def direct_phase(rounds: int) -> dict:
    """The direct-ingress phase in a child process: its Ray cluster must start with the switch on."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "direct.json"
        env = {**os.environ, "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}
        cmd = [sys.executable, __file__, "--rounds", str(rounds), "--phase", "direct", "--phase-out", str(out)]
        subprocess.run(cmd, env=env, check=True, timeout=900)
        return json.loads(out.read_text())


def plot(result: dict):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (phase, paths) in zip(axes, (("proxy", PROXY_PATHS), ("direct_ingress", DIRECT_PATHS))):
        stats = result[phase]["latency_ms"]
        xs = range(len(paths))
        ax.bar([x - 0.2 for x in xs], [stats[p]["p50"] for p in paths], width=0.4, label="p50")
        ax.bar([x + 0.2 for x in xs], [stats[p]["p99"] for p in paths], width=0.4, label="p99")
        ax.set_xticks(list(xs), paths, fontsize=7, rotation=20)
        ax.set_title(f"Serve {phase.replace('_', ' ')} cluster")
    axes[0].set_ylabel("latency per request (ms)")
    axes[0].legend()
    fig.suptitle("One model call (tiny Qwen2, 8 tokens, vLLM-CPU): engine vs through chorus")
    return fig


def report(name: str, phase: dict, paths: list[str]) -> None:
    if "host_inside_ms" in phase:
        print(f"host's own time per call (admission + its engine): p50 {phase['host_inside_ms']['p50']:.1f} ms")
    print(f"-- {name}")
    print(f"{'path':<13}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}")
    for p in paths:
        s = phase["latency_ms"][p]
        a = phase["added_over_engine_ms"].get(p, {"p50_ms": 0.0, "p99_ms": 0.0})
        print(f"{p:<13}{s['p50']:>9.1f}{s['p99']:>9.1f}{a['p50_ms']:>9.1f}{a['p99_ms']:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=80)
    parser.add_argument("--phase", choices=["all", "direct"], default="all", help=argparse.SUPPRESS)
    parser.add_argument("--phase-out", help=argparse.SUPPRESS)
    parser.add_argument("--host-cpus", help="the host engine's cores (e.g. 1), instead of the CPU plan's")
    parser.add_argument("--proxy-only", action="store_true", help="skip the direct-ingress phase; write nothing")
    args = parser.parse_args()
    if args.proxy_only:
        phase = asyncio.run(run(args.rounds, PROXY_PATHS, args.host_cpus))
        report(f"Serve proxy, host cores {args.host_cpus or 'planned'}", phase, PROXY_PATHS)
        return
    if args.phase == "direct":
        Path(args.phase_out).write_text(json.dumps(asyncio.run(run(args.rounds, DIRECT_PATHS))))
        return
    proxy = asyncio.run(run(args.rounds, PROXY_PATHS))
    report("Serve proxy (default)", proxy, PROXY_PATHS)
    result = {"rounds": args.rounds, "max_tokens": 8, "proxy": proxy}
    result["targets"] = targets(result)
    write("overhead", result)  # kept even if the second phase fails
    direct = direct_phase(args.rounds)
    result["direct_ingress"] = direct
    report("Serve direct ingress (RAY_SERVE_ENABLE_DIRECT_INGRESS=1)", direct, DIRECT_PATHS)
    result["targets"] = targets(result)
    print_targets(result["targets"])
    write("overhead", result, plot(result))

if __name__ == "__main__":
    main()
