"""Orchestrator capacity: what the request tier costs per model call, with an engine that costs nothing.

    flock /tmp/chorus-heavy.lock timeout 900 env PYTHONPATH=$PWD .venv/bin/python scripts/bench_capacity.py

An instant engine (answers at once, no model) is deployed through chorus's real request tier
(the Serve application: proxy and Orchestrator ingress replicas, over ModelHost actors), so everything measured
is chorus's own cost. In one run, interleaved:
* latency at concurrency 1: a no-op Ray actor round trip (the floor of one hop), the host called
  directly (one hop), the orchestrator running `single` (driver → orchestrator → host), and
  HTTP through the gateway. Added per model call by the orchestrator = orchestrator − host;
  targets: ≤ one no-op round trip + 1 ms; HTTP adds ≤ 2 ms more.
* capacity at concurrency 32: model calls/s through one orchestrator replica, the CPU-seconds
  each process spends per call (orchestrator, host, gateway; from /proc via psutil), and the
  same load split over 2 orchestrator replicas.
* chorus's own code per call: the same `single` request run in this process with no Ray or
  Serve (the orchestrator replica's CPU per call, minus this, is Serve's and Ray's).
* Serve's own floor, in the same cluster and the same rounds: a bare Serve application (a
  FastAPI ingress replica whose one route reads the JSON body, calls a no-op actor once and
  returns a small JSON) by handle and by HTTP through the same proxy. What any Serve application
  with one model call per request pays, whatever it does: chorus's figures less these are
  chorus's.
Writes docs/bench/capacity.json and .png.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import psutil
from benchlib import ROOT, pyplot, run_bare_serve_app, summary, write

from serving.engines.base import EngineHealth
from serving.types import GenerationRequest, Result, StreamChunk, Usage


class InstantEngine:
    """An engine that answers at once: what remains of a call's cost is chorus's."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.outputs = 0

    async def start(self) -> dict[str, float]:
        return {}

    async def generate(self, request: GenerationRequest) -> Result:
        self.outputs += 1
        return Result(text="ok", finish_reason="stop", usage=Usage(prompt_tokens=8, completion_tokens=1))

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(delta="ok", finish_reason="stop", usage=Usage(prompt_tokens=8, completion_tokens=1))

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=True)

    async def probe(self) -> None:
        return None

    def progress(self) -> int:
        return self.outputs

    def running(self) -> int:
        return 0

    async def shutdown(self) -> None:
        return None


class Noop:
    async def ping(self) -> None:
        return None


def cpu_of(title: str) -> float:
    """CPU seconds (user + system) of this driver's Ray worker processes titled `title`."""
    total = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            if p.cmdline() and p.cmdline()[0].startswith(title):
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue  # a worker that exited meanwhile
    return total


async def timed(n: int, concurrency: int, one: Callable[[], Awaitable[Any]]) -> tuple[float, list[float]]:
    lat: list[float] = []
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            await one()
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, lat


# The processes on a call's path, by their Ray titles.
TITLES = {"orchestrator": "ray::ServeReplica:chorus:Orchestrator", "host": "ray::ModelHost",
          "gateway": "ray::ProxyActor", "bare replica": "ray::ServeReplica:bare:Bare"}  # fmt: skip


async def under_load(calls: int, concurrency: int, one: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    """`calls` calls at `concurrency`: calls/s, and CPU ms per call of each process on the path."""
    before = {k: cpu_of(t) for k, t in TITLES.items()}
    wall, _ = await timed(calls, concurrency, one)
    after = {k: cpu_of(t) for k, t in TITLES.items()}
    return {"calls_per_s": calls / wall, "cpu_ms_per_call": {k: 1000 * (after[k] - before[k]) / calls for k in TITLES}}


async def own_code_ms(config: Any, chat: Any, calls: int) -> float:
    """CPU ms per call of chorus's own code on the `single` path (admission, pattern, balancer,
    trace, the response's JSON), in this process with no Ray or Serve: what the orchestrator
    replica would spend if Serve and Ray cost nothing."""
    from orchestrator.api.protocol import completion_json
    from orchestrator.routing.fleet import Fleet
    from orchestrator.routing.replicas import LocalReplica
    from orchestrator.service.chorus import Chorus

    chorus = Chorus(config, Fleet({"instant": [LocalReplica(InstantEngine(config.model("instant")))]}))
    for _ in range(200):  # warm
        completion_json(await chorus.chat(chat), "summary")
    t0 = time.process_time()
    for _ in range(calls):
        completion_json(await chorus.chat(chat), "summary")
    return 1000 * (time.process_time() - t0) / calls


async def run(rounds: int, calls: int, concurrency: int) -> dict[str, Any]:
    import ray
    from ray import serve

    from orchestrator.core.schema import ChatRequest
    from orchestrator.runtime.deploy import NAMESPACE, deploy
    from orchestrator.runtime.serve_app import build_app_for
    from orchestrator.service.config import parse_config
    from serving.types import Message, Sampling

    data = {
        "models": [{"name": "instant", "source": str(ROOT / ".cache/models/tiny-qwen2"), "max_num_seqs": 256,
                    "max_queue": 100_000}],
        "roles": {"generalist": "instant"},
        "patterns": {"single": {"kind": "single", "role": "generalist"}},
        "sampling": {"max_tokens": 1},
        "server": {"port": 0},
    }
    config = parse_config(data, "<bench>", ROOT)
    messages = [Message(role="user", content="Tell me about the sea.")]
    own_ms = await own_code_ms(config, ChatRequest(model="single", messages=messages), calls)
    ray.init(address="local", num_cpus=8, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False,
             logging_level="error")
    dep = deploy(config, engine=lambda c, s: (InstantEngine, {}), progress=lambda s: print(f"  [deploy] {s}"))
    try:
        host = dep.hosts["instant"][0]
        orch = dep.orchestrator
        noop = ray.remote(Noop).options(num_cpus=0).remote()

        async def noop_call() -> int:
            await noop.ping.remote()
            return 1

        bare, bare_url = run_bare_serve_app(noop_call, str(dep.url))
        request = GenerationRequest(messages=messages, sampling=Sampling(max_tokens=1))
        chat = ChatRequest(model="single", messages=messages)
        body = {"model": "single", "messages": [m.model_dump() for m in messages]}
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(base_url=dep.url, timeout=60, limits=limits) as http:

            async def via_http() -> None:
                (await http.post("/chat/completions", json=body)).raise_for_status()

            async def bare_http() -> None:
                (await http.post(bare_url, json=body)).raise_for_status()

            paths: dict[str, Callable[[], Awaitable[Any]]] = {
                "noop actor": noop.ping.remote,
                "host": lambda: host.generate.remote(request),
                "orchestrator": lambda: orch.chat.remote(chat),
                "http": via_http,
                "serve floor: handle": lambda: bare.chat.remote(body),
                "serve floor: http": bare_http,
            }
            for one in paths.values():  # warm
                await timed(20, 1, one)
            lat: dict[str, list[float]] = {p: [] for p in paths}
            for _ in range(rounds):  # interleaved, so noise hits every path alike
                for p, one in paths.items():
                    lat[p] += (await timed(10, 1, one))[1]
            latency = {p: summary([x * 1000 for x in v]) for p, v in lat.items()}

            # Capacity: one replica, CPU per call of every process on the path.
            one_replica = await under_load(calls, concurrency, paths["orchestrator"])
            over_http = await under_load(calls, concurrency, via_http)
            bare_over_http = await under_load(calls, concurrency, bare_http)

            # Two replicas: the same application redeployed with server.num_replicas 2 (Serve
            # spreads the handle's calls over them).
            two = config.model_copy(update={"server": config.server.model_copy(update={"num_replicas": 2})})
            orch2 = serve.run(build_app_for(two, NAMESPACE), name=dep.app, route_prefix="/")
            wall2, _ = await timed(calls, concurrency, lambda: orch2.chat.remote(chat))
            two_replicas = {"calls_per_s": calls / wall2}
    finally:
        dep.shutdown()
        ray.shutdown()
    added = latency["orchestrator"]["p50"] - latency["host"]["p50"]
    serve_added = latency["serve floor: handle"]["p50"] - latency["noop actor"]["p50"]
    serve_http = latency["serve floor: http"]["p50"] - latency["serve floor: handle"]["p50"]
    return {
        "engine": "instant (no model)",
        "request_tier": "the Serve application (ingress Orchestrator deployment) over ModelHost actors",
        "latency_ms_concurrency_1": latency,
        "added_by_orchestrator_p50_ms": added,
        "target_orchestrator_ms": latency["noop actor"]["p50"] + 1.0,
        "added_by_http_p50_ms": latency["http"]["p50"] - latency["orchestrator"]["p50"],
        "target_http_ms": 2.0,
        "serve_floor": {
            "what": "a bare Serve ingress replica: read the JSON body, one no-op actor call, a small JSON reply",
            "added_by_replica_p50_ms": serve_added,
            "added_by_http_p50_ms": serve_http,
            "chorus_orchestrator_over_floor_ms": added - serve_added,
            "chorus_http_over_floor_ms": latency["http"]["p50"] - latency["orchestrator"]["p50"] - serve_http,
            "over_http": bare_over_http,
        },
        "concurrency": concurrency,
        "calls": calls,
        "one_replica": one_replica,
        "one_replica_over_http": over_http,
        "two_replicas": two_replicas,
        "scaling_2_over_1": two_replicas["calls_per_s"] / one_replica["calls_per_s"],
        "cores": psutil.cpu_count(),
        "chorus_own_code_cpu_ms_per_call": own_ms,
    }


def plot(result: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    lat = result["latency_ms_concurrency_1"]
    names = list(lat)
    a.bar([n.replace("serve floor: ", "bare Serve\n") for n in names], [lat[n]["p50"] for n in names],
          color=["#999", "C0", "C1", "C2", "#bbb", "#bbb"])
    a.tick_params(axis="x", labelsize=7)
    a.set_ylabel("p50 latency per call, ms (concurrency 1)")
    a.set_title(f"orchestrator adds {result['added_by_orchestrator_p50_ms']:.2f} ms "
                f"(target {result['target_orchestrator_ms']:.2f}); HTTP {result['added_by_http_p50_ms']:.2f} ms")
    cpu = result["one_replica_over_http"]["cpu_ms_per_call"]
    bare = result["serve_floor"]["over_http"]["cpu_ms_per_call"]
    bars = {"chorus\nreplica": cpu["orchestrator"], "chorus\nproxy": cpu["gateway"], "chorus\nhost": cpu["host"],
            "bare Serve\nreplica": bare["bare replica"], "bare Serve\nproxy": bare["gateway"]}
    b.bar(list(bars), list(bars.values()), color=["C3", "C3", "C3", "#bbb", "#bbb"])
    b.tick_params(axis="x", labelsize=7)
    b.set_ylabel(f"CPU ms per model call (concurrency {result['concurrency']})")
    b.set_title(f"over HTTP: chorus {result['one_replica_over_http']['calls_per_s']:.0f} calls/s, bare Serve "
                f"{result['serve_floor']['over_http']['calls_per_s']:.0f} (1 replica each)")
    fig.suptitle(f"chorus request tier with an instant engine ({result['cores']} cores)")
    fig.tight_layout()
    return fig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    result = asyncio.run(run(args.rounds, args.calls, args.concurrency))
    for p, s in result["latency_ms_concurrency_1"].items():
        print(f"{p:<14} p50 {s['p50']:7.2f} ms  p99 {s['p99']:7.2f} ms")
    print(f"orchestrator adds {result['added_by_orchestrator_p50_ms']:.2f} ms per call "
          f"(target ≤ {result['target_orchestrator_ms']:.2f}); HTTP adds {result['added_by_http_p50_ms']:.2f} ms "
          f"(target ≤ 2)")
    for k in ("one_replica", "one_replica_over_http", "two_replicas"):
        print(f"{k:<22} {result[k]['calls_per_s']:8.1f} calls/s  "
              + "  ".join(f"{p} {v:.2f} ms CPU" for p, v in result[k].get("cpu_ms_per_call", {}).items()))
    print(f"chorus's own code per call (in-process, no Ray or Serve): {result['chorus_own_code_cpu_ms_per_call']:.3f} ms CPU")
    floor = result["serve_floor"]
    print(f"Serve's floor (bare ingress replica, one no-op actor call): the replica adds {floor['added_by_replica_p50_ms']:.2f} ms "
          f"over the actor call, HTTP {floor['added_by_http_p50_ms']:.2f} ms more; chorus over that floor: "
          f"orchestrator {floor['chorus_orchestrator_over_floor_ms']:+.2f} ms, HTTP {floor['chorus_http_over_floor_ms']:+.2f} ms")
    print(f"bare Serve over HTTP (concurrency {result['concurrency']}) {floor['over_http']['calls_per_s']:8.1f} calls/s  "
          + "  ".join(f"{p} {v:.2f} ms CPU" for p, v in floor["over_http"]["cpu_ms_per_call"].items()))
    write("capacity", result, plot(result))


if __name__ == "__main__":
    main()
