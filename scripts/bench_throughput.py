"""Benchmark 3: throughput of `council` and `pyramid` under load, chorus against the naive ways.

Same models (tiny Qwen2 as `tiny` and `tiny-b`), same prompts (chorus's own templates), same
sampling, same concurrency; four systems measured in one run, interleaved per level:
  chorus   one HTTP request per question to chorus; the pattern runs inside chorus
  moa      a mixture-of-agents client in the style of Together's reference code: asyncio.gather
           over the members of a layer, then the aggregator, against OpenAI-compatible vLLM
           servers, one per model
  naive    the same client calling members one after another
  engines  vLLM's AsyncLLM in this process (one per model, same settings) given the pattern's
           calls with no dependencies between them, keeping as many in flight as chorus kept in
           its engines on average (Σ step run time / wall, from chorus's traces): the engines'
           own throughput at the batch size chorus ran them at
Reported per pattern and concurrency (1, 8, 32): requests/s, completion tokens/s, p50 latency,
and the ratios chorus/moa, chorus/naive, chorus/engines.
Equal footing: every engine of every system is bound to the same cores, the ones chorus's CPU
plan gives that model (cluster.placement.cpus over this machine's cores: on 2 cores, `tiny` on
core 0 and `tiny-b` on core 1): chorus's engines through its placement, the baseline vLLM
servers and the in-process engines through VLLM_CPU_OMP_THREADS_BIND. The JSON records it.
Targets (issue 14): council and pyramid ≥ 1.5× moa at concurrency 8 and 32; pyramid ≥ 0.9×
engines at 1, 8 and 32.
Usage: python scripts/bench_throughput.py [--levels 1 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
from benchlib import MODELS, chorus_deployment, pyplot, summary, tiny_model, write

MAX_TOKENS = 32
MEMBER_TEMPERATURE = 0.8
ROLES = {"generalist": "tiny", "reasoner": "tiny", "coder": "tiny-b", "judge": "tiny-b", "planner": "tiny",
         "synthesizer": "tiny"}
COUNCIL = ["generalist", "reasoner", "coder"]
PYRAMID = [["generalist", "reasoner", "coder"], ["judge", "planner"], ["synthesizer"]]
SYSTEMS = ["chorus", "moa", "naive", "engines"]


def config() -> dict:
    return {
        "models": [tiny_model("tiny"), tiny_model("tiny-b")],
        "roles": ROLES,
        "sampling": {"max_tokens": MAX_TOKENS, "temperature": 0.0},
        "patterns": {
            "council": {"kind": "council", "members": COUNCIL, "combine": "merge", "synthesizer": "synthesizer",
                        "extract": "exact", "temperature": MEMBER_TEMPERATURE, "state_agreement": False},
            "pyramid": {"kind": "pyramid", "layers": PYRAMID, "extract": "exact",
                        "temperature": MEMBER_TEMPERATURE},
        },
        "server": {"port": 0},
    }


# --- the vLLM servers the baselines talk to -------------------------------------------------------


def core_plan() -> dict[str, str]:
    """model → the cores chorus's CPU plan binds its engine to on this machine."""
    from cluster.inventory import local_cpus
    from cluster.placement.cpus import CpuNode, plan_cpus
    from cluster.spec import PlacementSpec

    names = [m["name"] for m in config()["models"]]
    plan = plan_cpus(names, {n: PlacementSpec() for n in names}, [CpuNode(0, local_cpus())])
    return {m: sets[0] for m, sets in plan.sets().items()}


def start_vllm_server(name: str, port: int, log: Path, cpus: str) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODELS / "tiny-qwen2"),
        "--served-model-name", name, "--dtype", "float32", "--max-model-len", "1024", "--max-num-seqs", "64",
        "--kv-cache-memory-bytes", str(256 << 20), "--enforce-eager", "--host", "127.0.0.1", "--port", str(port),
    ]
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": cpus}  # the cores chorus gives this model
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, env=env)


async def wait_healthy(urls: list[str], procs: list[subprocess.Popen], deadline_s: float = 600) -> None:
    end = time.monotonic() + deadline_s
    async with httpx.AsyncClient(timeout=2) as http:
        for url in urls:
            while True:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a vLLM server exited during start-up; see docs/bench/*.log")
                try:
                    if (await http.get(url)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > end:
                    raise TimeoutError(f"{url} not healthy after {deadline_s}s")
                await asyncio.sleep(0.5)  # a server start-up poll, bounded by the deadline


# --- clients ------------------------------------------------------------------------------------


class Baseline:
    """Council and pyramid as a client script would write them over per-model endpoints."""

    def __init__(self, http: httpx.AsyncClient, urls: dict[str, str], parallel: bool) -> None:
        self.http, self.urls, self.parallel = http, urls, parallel
        self.tokens = 0

    async def call(self, role: str, messages: list[dict], temperature: float) -> str:
        model = ROLES[role]
        body = {"model": model, "messages": messages, "max_tokens": MAX_TOKENS, "temperature": temperature}
        try:
            r = await self.http.post(f"{self.urls[model]}/chat/completions", json=body)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # The server closed an idle keep-alive connection as we reused it: send once more.
            r = await self.http.post(f"{self.urls[model]}/chat/completions", json=body)
        r.raise_for_status()
        body = r.json()
        self.tokens += body["usage"]["completion_tokens"]
        return body["choices"][0]["message"]["content"]

    async def layer(self, roles: list[str], messages: list[dict], temperature: float) -> list[str]:
        if self.parallel:
            return list(await asyncio.gather(*(self.call(r, messages, temperature) for r in roles)))
        return [await self.call(r, messages, temperature) for r in roles]

    async def council(self, question: str) -> str:
        from orchestrator.patterns.kit import prompts

        answers = await self.layer(COUNCIL, [{"role": "user", "content": question}], MEMBER_TEMPERATURE)
        merge = prompts.references_messages(prompts.MERGE_SYSTEM, question, answers)
        return await self.call("synthesizer", [m.model_dump() for m in merge], 0.0)

    async def pyramid(self, question: str) -> str:
        from orchestrator.patterns.kit import prompts
        from serving.types import Message

        conversation = [Message(role="user", content=question)]

        def layer_prompt(refs: list[str]) -> list[dict]:
            return [m.model_dump() for m in prompts.pyramid_messages(conversation, refs)]

        refs = await self.layer(PYRAMID[0], layer_prompt([]), MEMBER_TEMPERATURE)
        for roles in PYRAMID[1:-1]:
            refs = await self.layer(roles, layer_prompt(refs), MEMBER_TEMPERATURE)
        return await self.call(PYRAMID[-1][0], layer_prompt(refs), 0.0)


async def load(concurrency: int, total: int, one: Callable[[int], Awaitable[int]]) -> dict:
    """`total` requests with `concurrency` in flight; `one(i)` returns completion tokens."""
    latencies: list[float] = []
    tokens = 0
    queue = list(range(total))

    async def worker() -> None:
        nonlocal tokens
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            produced = await one(i)  # not `tokens += await …`: that reads `tokens` before awaiting
            tokens += produced
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"requests": total, "wall_s": wall, "req_per_s": total / wall, "tokens_per_s": tokens / wall,
            "latency_ms": summary([x * 1000 for x in latencies])}


def question(i: int) -> str:
    return f"Request {i}: describe in one paragraph how a busy restaurant kitchen stays organised."


async def run(levels: list[int]) -> dict:
    from cluster.spec import ModelSpec
    from serving.engines.vllm_engine import EngineSettings, VLLMEngine
    from serving.types import GenerationRequest, Message, Sampling

    logs = Path(__file__).resolve().parents[1] / ".cache" / "bench-logs"  # noqa: ASYNC240 - once, before anything runs
    logs.mkdir(parents=True, exist_ok=True)
    ports = {"tiny": 18301, "tiny-b": 18302}
    urls = {m: f"http://127.0.0.1:{p}/v1" for m, p in ports.items()}
    results: dict = {p: {s: {} for s in SYSTEMS} for p in ("council", "pyramid")}
    with ExitStack() as stack:
        cores = core_plan()
        print(f"  engine cores (every system): {cores}", flush=True)
        procs = [start_vllm_server(m, p, logs / f"vllm-{m}.log", cores[m]) for m, p in ports.items()]
        for proc in procs:
            stack.callback(proc.terminate)
        dep = stack.enter_context(chorus_deployment(config()))
        engines = {
            m["name"]: VLLMEngine(ModelSpec(**m), EngineSettings(cpus=cores[m["name"]])) for m in config()["models"]
        }
        for engine in engines.values():
            await engine.start()
        await wait_healthy([u.removesuffix("/v1") + "/health" for u in urls.values()], procs)
        print("  vLLM servers ready", flush=True)
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        async with httpx.AsyncClient(timeout=600, limits=limits) as http:

            engine_time: list[float] = []  # Σ run_s of chorus's steps, for its mean batch occupancy

            async def chorus_one(pattern: str, i: int) -> int:
                r = await http.post(f"{dep.url}/chat/completions",
                                    json={"model": pattern, "messages": [{"role": "user", "content": question(i)}]})
                r.raise_for_status()
                body = r.json()
                engine_time.append(sum(s["run_s"] for s in body["chorus"]["trace"]["steps"]))
                return body["usage"]["completion_tokens"]

            def baseline_one(pattern: str, parallel: bool) -> Callable[[int], Awaitable[int]]:
                async def one(i: int) -> int:
                    b = Baseline(http, urls, parallel)
                    await getattr(b, pattern)(question(i))
                    return b.tokens
                return one

            def engines_one(pattern: str) -> Callable[[int], Awaitable[int]]:
                """The pattern's calls as independent requests straight to the engines, at its widest batch."""
                roles = [*COUNCIL, "synthesizer"] if pattern == "council" else [r for layer in PYRAMID for r in layer]

                async def one(i: int) -> int:
                    role = roles[i % len(roles)]
                    temperature = 0.0 if role == "synthesizer" else MEMBER_TEMPERATURE
                    request = GenerationRequest(
                        messages=[Message(role="user", content=question(i))],
                        sampling=Sampling(max_tokens=MAX_TOKENS, temperature=temperature),
                    )
                    result = await engines[ROLES[role]].generate(request)
                    return result.usage.completion_tokens
                return one

            for pattern in ("council", "pyramid"):  # warm every path
                await load(2, 2, lambda i, p=pattern: chorus_one(p, i))
                await load(2, 2, baseline_one(pattern, True))
            def record(pattern: str, system: str, c: int, r: dict) -> None:
                results[pattern][system][c] = r
                print(f"  {pattern:<8} c={c:<3} {system:<8} {r['req_per_s']:7.2f} req/s "
                      f"{r['tokens_per_s']:8.1f} tok/s  p50 {r['latency_ms']['p50']:8.1f} ms", flush=True)

            for c in levels:
                total = max(8, 2 * c)
                for pattern in ("council", "pyramid"):
                    engine_time.clear()
                    r = await load(c, total, lambda i, p=pattern: chorus_one(p, i))
                    r["mean_in_engines"] = sum(engine_time) / r["wall_s"]
                    record(pattern, "chorus", c, r)
                    record(pattern, "moa", c, await load(c, total, baseline_one(pattern, True)))
                    record(pattern, "naive", c, await load(c, total, baseline_one(pattern, False)))
                    # The same calls straight to the engines, as many in flight as chorus averaged.
                    calls = total * (4 if pattern == "council" else 6)
                    width = max(1, round(r["mean_in_engines"]))
                    r = await load(width, calls, engines_one(pattern))
                    r["in_flight"] = width
                    r["req_per_s"] *= total / calls  # per pattern-equivalent request
                    record(pattern, "engines", c, r)
        for engine in engines.values():
            await engine.shutdown()
    ratios = {
        p: {c: {f"chorus/{s}": results[p]["chorus"][c]["tokens_per_s"] / results[p][s][c]["tokens_per_s"]
                for s in SYSTEMS[1:]} for c in levels}
        for p in results
    }
    return {"max_tokens": MAX_TOKENS, "levels": levels, "results": results, "ratios_tokens_per_s": ratios,
            "core_binding": {"cores": cores, "how": "chorus: placement cpus (planned by deploy); vLLM servers and "
                             "in-process engines: VLLM_CPU_OMP_THREADS_BIND set to the same cores"},
            "targets": {"council, pyramid chorus/moa at 8 and 32": ">= 1.5", "pyramid chorus/engines": ">= 0.9",
                        "chorus/naive": "> 1"}}


def plot(result: dict):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, pattern in zip(axes, ("council", "pyramid")):
        for system in SYSTEMS:
            series = result["results"][pattern][system]
            ax.plot(result["levels"], [series[c]["tokens_per_s"] for c in result["levels"]], marker="o", label=system)
        ax.set_xscale("log", base=2)
        ax.set_xticks(result["levels"], [str(c) for c in result["levels"]])
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel("completion tokens / s")
        ax.set_title(f"{pattern} on vLLM-CPU (tiny Qwen2 ×2)")
        ax.legend(fontsize=8)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    result = asyncio.run(run(args.levels))
    print("tokens/s ratios:")
    for pattern, by_level in result["ratios_tokens_per_s"].items():
        for c, r in by_level.items():
            print(f"  {pattern:<8} c={c:<3} " + "  ".join(f"{k} {v:.2f}" for k, v in r.items()))
    write("throughput", result, plot(result))


if __name__ == "__main__":
    main()
