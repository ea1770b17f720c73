"""Scale benchmark (simulated): the Qwen2.5 fleet on 8×H100, 500 concurrent mixed requests.

    python scripts/bench_scale.py [--out docs/bench] [--requests 500] [--clock virtual|scaled]

A SIMULATION, not a measurement: every engine is a `serving.sim.engine.SimulatedEngine` (the
latency model of docs/simulated-engine.md), hosted by a real `ModelHost` behind a real `Fleet`
and `Chorus`, so admission, replica choice and the patterns' own code run as in production.
The fleet, roles and placement are those of configs/gpu-8x80.yaml (patterns fanout, council and
pyramid are added here). Three modes run side by side on the same workload:

* chorus   — engines batch up to each model's max_num_seqs, a pattern's independent steps run
             concurrently, hosts admit interactive requests (single, router: priority 0) ahead
             of multi-model ones (priority 10); one orchestrator process (--orchestrators).
* moa      — what a user would run instead: a mixture-of-agents client over one vLLM server per
             replica, batching continuously (same latency model), the pattern's calls in parallel
             where it allows, round robin over a model's servers, first come, first served, no
             early stop.
* naive    — every replica serves one request at a time (max_num_seqs 1), a pattern's steps run
             one after another (a per-request lock in the fleet; pattern code is unchanged) and
             hosts serve first come, first served. (A setting nobody runs; kept for comparison.)

CPU outside the engines is charged per model call on the loop's clock (serving.sim.cpu):
the orchestrator's (or the MoA client's) on its lanes, and each replica's front end (ModelHost
or vLLM API server). --measure-client measures the client's figure here first.

Clocks: `virtual` (default) runs the event loop on a virtual clock that jumps to the next timer
when nothing is runnable, so simulated time is exact and the run takes only the CPU time of
the Python work; `scaled` runs on the wall clock with `--time-scale` wall seconds per simulated
second (slower; Python overhead then shows up as simulated time).

Three ablations (each chorus minus one of: batching, concurrent steps, priorities) run too and
are reported in brief, to show what each mechanism contributes.

Writes scale.json and scale.png under --out and prints a table with the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Import chorus from this checkout, whichever one the environment's editable install names.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.core.schema import ChatRequest
from orchestrator.routing.balancer import Balancer
from orchestrator.routing.fleet import Fleet
from orchestrator.routing.replicas import HostReplica, Replica
from orchestrator.service.chorus import Chorus
from orchestrator.service.config import ChorusConfig, load_config, parse_config
from serving.host.model_host import ModelHost
from serving.sim.clock import VirtualClockLoop
from serving.sim.cpu import CpuLanes
from serving.sim.engine import SimulatedEngine
from serving.sim.gpu import SimulatedGpu
from serving.sim.latency import H100
from serving.types import GenerationRequest, Message, Result

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "configs" / "gpu-8x80.yaml"
DATE = "2026-11-21"
GPUS = 8
SEED = 2026
QUEUE_BOUND = 100_000
# Pattern → (share of the requests, priority under chorus scheduling).
MIX: dict[str, tuple[float, int]] = {
    "single": (0.30, 0),
    "router": (0.30, 0),
    "fanout": (0.15, 10),
    "council": (0.15, 10),
    "pyramid": (0.10, 10),
}
EXTRA_PATTERNS: dict[str, dict[str, Any]] = {
    "fanout": {"kind": "fanout", "members": ["generalist", "reasoner", "coder"]},
    "council": {
        "kind": "council",
        "members": ["generalist", "reasoner", "coder"],
        "combine": "merge",
        "synthesizer": "synthesizer",
        "extract": "exact",
        "temperature": 0.7,
    },
    "pyramid": {
        "kind": "pyramid",
        "layers": [["generalist", "reasoner", "coder"], ["reasoner", "synthesizer"], ["synthesizer"]],
        "extract": "exact",
        "early_stop": 0.9,
        "temperature": 0.7,
    },
}


# CPU spent per model call outside the engines, in ms (measured on this project's 2-core EPYC;
# docs/simulated-engine.md "CPU charged per model call" gives the method and the sources).
ORCHESTRATOR_MS = 1.92  # the Orchestrator actor per model call under load (bench_capacity.py, concurrency 32)
HOST_MS = 5.0  # the engine's front end per call (AsyncLLM's input and output processing, one hop): chorus's
# ModelHost with a real engine (issue 14's profile), charged the same to a vLLM API server
CLIENT_MS = 1.5  # a mixture-of-agents client (httpx.AsyncClient, JSON in and out) per call: --measure-client


@dataclass(frozen=True)
class Charges:
    """Per-call CPU the simulation charges, in simulated seconds, and how many lanes take it."""

    call_s: float  # the request tier per model call (orchestrator, or the MoA client), on `lanes`
    front_s: float  # each replica's front end per call (ModelHost / vLLM API server), one lane per replica
    lanes: int = 1  # orchestrator replicas (chorus) or client processes (moa)


# ---- fleets: CPU charged per call, round robin, one step at a time ------------------------------


@dataclass
class ChargedFleet(Fleet):
    """A fleet whose model calls first spend request-tier CPU (one `CpuLanes`), then the chosen
    replica's front-end CPU (one lane per replica), before the engine runs them."""

    charges: Charges = field(default_factory=lambda: Charges(0.0, 0.0))
    tier: CpuLanes = field(default_factory=CpuLanes)
    fronts: dict[tuple[str, int], CpuLanes] = field(default_factory=dict)

    async def generate(self, model: str, request: GenerationRequest) -> tuple[Result, Replica]:
        await self.tier.charge(self.charges.call_s)
        async with self._dispatch(model, request) as replica:
            front = self.fronts.setdefault((model, replica.index), CpuLanes(1, self.tier.time_scale))
            await front.charge(self.charges.front_s)
            return await replica.generate(request), replica


class RoundRobin(Balancer):
    """What a client over plain servers does: the next server of the model, whatever its load."""

    def __init__(self) -> None:
        super().__init__()
        self._next: dict[str, int] = {}

    def choose(self, model: str, replicas, request: GenerationRequest | None = None):  # type: ignore[no-untyped-def]
        k = self._next.get(model, 0)
        self._next[model] = k + 1
        return replicas[k % len(replicas)]


@dataclass
class SerialFleet(ChargedFleet):
    """A fleet that runs one request's model calls one after another: within `one_at_a_time()`,
    every call waits for the request's previous call (a lock each request task holds in a
    context variable, which the pattern's gathered sub-tasks inherit)."""

    _lock: ContextVar[asyncio.Lock | None] = field(default_factory=lambda: ContextVar("serial_request", default=None))

    @contextmanager
    def one_at_a_time(self) -> Iterator[None]:
        token = self._lock.set(asyncio.Lock())
        try:
            yield
        finally:
            self._lock.reset(token)

    async def generate(self, model: str, request: GenerationRequest) -> tuple[Result, Replica]:
        lock = self._lock.get()
        if lock is None:
            return await super().generate(model, request)
        async with lock:
            return await super().generate(model, request)


# ---- config, fleet and workload -----------------------------------------------------------------


def bench_config() -> ChorusConfig:
    """The 8×80 GB preset, with the patterns this benchmark mixes added when it lacks them."""
    preset = load_config(PRESET)
    missing = {n: p for n, p in EXTRA_PATTERNS.items() if n not in preset.patterns}
    if not missing:
        return preset
    data = yaml.safe_load(PRESET.read_text())
    data.setdefault("patterns", {}).update(missing)
    return parse_config(data, str(PRESET), PRESET.parent)


@dataclass
class Deployed:
    fleet: ChargedFleet
    gpus: list[SimulatedGpu]
    replicas: list[dict[str, Any]]  # model, index, gpu ids, share, engine


@dataclass(frozen=True)
class Mode:
    """How the fleet serves: engine batches, a pattern's steps, and host admission order."""

    batching: bool  # engines batch up to max_num_seqs (else one sequence at a time)
    concurrent_steps: bool  # a pattern's independent steps run at once (else one after another)
    priorities: bool  # interactive patterns ahead of multi-model ones (else first come, first served)
    client: bool = False  # a mixture-of-agents client over one vLLM server per replica: round robin,
    # no early stop, the client's own per-call CPU instead of the orchestrator's


MODES = {
    "chorus": Mode(True, True, True),
    # What a user would pick instead: the same patterns as an asyncio client over vLLM servers that
    # batch continuously (same latency model), requests in parallel where the pattern allows.
    "moa": Mode(True, True, False, client=True),
    "naive": Mode(False, False, False),
}
# Each takes one of chorus's mechanisms away, to show what each contributes.
ABLATIONS = {
    "no_batching": Mode(False, True, True),
    "serial_steps": Mode(True, False, True),
    "no_priorities": Mode(True, True, False),
}


def charges_for(mode: Mode, args_charges: dict[str, float], replicas: int) -> Charges:
    if mode.client:
        return Charges(args_charges["client_ms"] / 1000, args_charges["host_ms"] / 1000, 1)
    return Charges(args_charges["orchestrator_ms"] / 1000, args_charges["host_ms"] / 1000, replicas)


def build_fleet(config: ChorusConfig, mode: Mode, *, time_scale: float, charges: Charges) -> Deployed:
    gpus = [SimulatedGpu(i) for i in range(GPUS)]
    by_model: dict[str, list[Replica]] = {}
    rows = []
    fleet_cls = ChargedFleet if mode.concurrent_steps else SerialFleet
    for spec in config.models:
        place = config.placement_of(spec.name)
        if not place.gpus:
            raise SystemExit(f"{PRESET}: placement.{spec.name} lists no GPUs; run `chorus plan` to write them")
        # The burst is the workload: hosts queue it rather than refuse it (max_queue raised).
        update: dict[str, Any] = {"max_queue": QUEUE_BOUND}
        if not mode.batching:
            update["max_num_seqs"] = 1
        engine_spec = spec.model_copy(update=update)
        for i, slot in enumerate(place.gpus):
            share = place.share_of(i)
            kwargs = {
                "profile": H100,
                "tensor_parallel_size": place.tensor_parallel_size,
                "gpu_share": share,
                "devices": [gpus[g] for g in slot.gpu_ids],
                "time_scale": time_scale,
                "seed": i,
            }
            held = share * place.tensor_parallel_size
            host = ModelHost(engine_spec, i, SimulatedEngine, kwargs, gpus=held)
            by_model.setdefault(spec.name, []).append(HostReplica(host, i, held))
            rows.append({"model": spec.name, "index": i, "gpu_ids": list(slot.gpu_ids), "share": share, "host": host})
    balancer = RoundRobin() if mode.client else Balancer()
    fleet = fleet_cls(by_model, balancer, charges, CpuLanes(charges.lanes, time_scale))
    return Deployed(fleet, gpus, rows)


@dataclass(frozen=True)
class Item:
    pattern: str
    messages: list[Message]
    priority: int


APPS = {
    "support": "You are the support assistant of an online shop. Follow the shop policy below exactly.",
    "code": "You are a senior software engineer helping a colleague. Follow the team conventions below.",
    "tutor": "You are a patient mathematics tutor for university students. Follow the teaching guide below.",
}
TOPICS = (
    "refund of a damaged parcel", "a race condition in an async worker pool", "the derivative of x^3 sin x",
    "changing a delivery address", "a memory leak in a caching layer", "the expected value of two dice",
    "a SQL query that returns duplicates", "a proof that sqrt 2 is irrational", "a late order and a voucher",
    "type hints for a generic repository", "the eigenvalues of a 2x2 matrix", "an invoice with the wrong VAT",
)
FILLER = ["please", "explain", "clearly", "why", "this", "happens", "and", "what", "I", "should", "check", "first", "also", "mention", "edge", "cases", "and", "give", "a", "short", "example", "if", "that", "helps", "the", "context", "is", "a", "small", "team", "with", "tight", "deadlines", "and", "we", "already", "tried", "the", "obvious", "fixes", "without", "luck", "so", "more", "detail", "is", "welcome"]


def policy(app: str, words: int = 220) -> str:
    """A long, fixed system prompt per app: the prefix its requests share."""
    rng = random.Random(f"{SEED}-{app}")
    clauses = [f"Rule {k}: " + " ".join(rng.choice(FILLER) for _ in range(10)) + "." for k in range(words // 12)]
    return APPS[app] + "\n" + "\n".join(clauses)


def workload(n: int, *, priorities: bool) -> list[Item]:
    rng = random.Random(SEED)
    names, weights = list(MIX), [w for w, _ in MIX.values()]
    policies = {app: policy(app) for app in APPS}
    items = []
    for i in range(n):
        pattern = rng.choices(names, weights)[0]
        app = rng.choice(list(APPS))
        detail = " ".join(rng.choice(FILLER) for _ in range(rng.randint(15, 60)))
        question = f"Request {i}: I need help with {rng.choice(TOPICS)}. {detail}"
        messages = [Message(role="system", content=policies[app]), Message(role="user", content=question)]
        items.append(Item(pattern, messages, MIX[pattern][1] if priorities else 0))
    return items


# ---- one mode ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def without_early_stop(config: ChorusConfig) -> ChorusConfig:
    """A mixture-of-agents client runs every layer: it has no agreement check to stop on."""
    patterns = {
        n: p.model_copy(update={"early_stop": None}) if getattr(p, "early_stop", None) is not None else p
        for n, p in config.patterns.items()
    }
    return config.model_copy(update={"patterns": patterns})


async def run_mode(
    config: ChorusConfig, mode: Mode, requests: int, *, time_scale: float, charges: Charges
) -> dict[str, Any]:
    items = workload(requests, priorities=mode.priorities)
    if mode.client:
        config = without_early_stop(config)
    deployed = build_fleet(config, mode, time_scale=time_scale, charges=charges)
    for row in deployed.replicas:
        await row["host"].start()
    chorus = Chorus(config, deployed.fleet)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    serial = deployed.fleet if isinstance(deployed.fleet, SerialFleet) else None

    async def one(item: Item) -> dict[str, Any]:
        start = loop.time()
        request = ChatRequest(model=item.pattern, messages=item.messages, priority=item.priority)
        try:
            if serial is not None:
                with serial.one_at_a_time():
                    reply = await chorus.chat(request)
            else:
                reply = await chorus.chat(request)
        except Exception as exc:  # noqa: BLE001 - a failed request is a result of the benchmark, not a crash
            return {"pattern": item.pattern, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                    "latency": (loop.time() - start) / time_scale}
        return {
            "pattern": item.pattern,
            "ok": True,
            "latency": (loop.time() - start) / time_scale,
            "done_at": (loop.time() - t0) / time_scale,
            "calls": len(reply.trace.steps),
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
            "cached_tokens": reply.usage.cached_tokens,
        }

    wall0 = time.perf_counter()
    outcomes = await asyncio.gather(*(one(item) for item in items))
    wall = time.perf_counter() - wall0
    elapsed = (loop.time() - t0) / time_scale
    result = summarize(outcomes, deployed, elapsed)
    result["wall_seconds"] = round(wall, 2)
    fleet = deployed.fleet
    result["cpu"] = {
        "call_ms": charges.call_s * 1000,
        "front_ms": charges.front_s * 1000,
        "request_tier_lanes": charges.lanes,
        "request_tier_utilization": round(fleet.tier.utilization(elapsed), 4),
        "request_tier_cpu_s": round(fleet.tier.busy_seconds, 2),
        "front_cpu_s": round(sum(f.busy_seconds for f in fleet.fronts.values()), 2),
    }
    for row in deployed.replicas:
        await row["host"].shutdown()
    return result


def summarize(outcomes: list[dict[str, Any]], deployed: Deployed, elapsed: float) -> dict[str, Any]:
    ok = [o for o in outcomes if o["ok"]]
    patterns = {}
    for name in MIX:
        mine = [o for o in outcomes if o["pattern"] == name]
        lat = [o["latency"] for o in mine if o["ok"]]
        patterns[name] = {
            "requests": len(mine),
            "failed": sum(1 for o in mine if not o["ok"]),
            "calls_per_request": round(statistics.mean(o["calls"] for o in mine if o["ok"]), 2) if lat else None,
            "p50_s": round(pct(lat, 0.50), 3),
            "p99_s": round(pct(lat, 0.99), 3),
            "mean_s": round(statistics.mean(lat), 3) if lat else None,
            # Rates over the whole run: the pattern's share of the fleet's output.
            "requests_per_s": round(len(lat) / elapsed, 3),
            "completion_tokens_per_s": round(sum(o["completion_tokens"] for o in mine if o["ok"]) / elapsed, 1),
        }
    completion = sum(o["completion_tokens"] for o in ok)
    prompt = sum(o["prompt_tokens"] for o in ok)
    cached = sum(o["cached_tokens"] for o in ok)
    replicas = []
    weighted = [0.0] * GPUS
    for row in deployed.replicas:
        engine: SimulatedEngine = row["host"].engine
        busy = engine.busy_seconds / elapsed
        for g in row["gpu_ids"]:
            weighted[g] += row["share"] * busy
        replicas.append({
            "model": row["model"], "replica": row["index"], "gpu_ids": row["gpu_ids"], "gpu_share": row["share"],
            "busy": round(busy, 4), "max_batch": engine.max_batch, "tokens": engine.tokens_generated,
            "requests": len(engine.stats), "steps": engine.steps,
        })
    util = [g.work_seconds / elapsed for g in deployed.gpus]
    work = sum(g.work_seconds for g in deployed.gpus)
    errors = sorted({o["error"] for o in outcomes if not o["ok"]})
    return {
        "elapsed_s": round(elapsed, 3),
        "completed": len(ok),
        "failed": len(outcomes) - len(ok),
        "errors": errors[:5],
        "requests_per_s": round(len(ok) / elapsed, 3),
        "completion_tokens_per_s": round(completion / elapsed, 1),
        "model_calls": sum(o["calls"] for o in ok),
        "tokens": {"prompt": prompt, "completion": completion, "cached": cached,
                   "cached_share_of_prompt": round(cached / prompt, 4) if prompt else 0.0},
        "gpu_utilization": [round(u, 4) for u in util],
        "gpu_utilization_mean": round(statistics.mean(util), 4),
        "gpu_work_seconds": round(work, 2),
        "gpu_seconds_per_1k_tokens": round(1000 * work / completion, 3) if completion else None,
        "gpu_share_weighted_busy": [round(w, 4) for w in weighted],
        "patterns": patterns,
        "replicas": replicas,
        "finish_times_s": sorted(round(o["done_at"], 3) for o in ok),
    }


def ratios(chorus: dict[str, Any], naive: dict[str, Any]) -> dict[str, Any]:
    """chorus against another mode (`naive`, or `moa` for ratios_vs_moa: "naive" in a key names it)."""
    def r(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None

    return {
        "throughput_requests": r(chorus["requests_per_s"], naive["requests_per_s"]),
        "throughput_tokens": r(chorus["completion_tokens_per_s"], naive["completion_tokens_per_s"]),
        "gpu_utilization": r(chorus["gpu_utilization_mean"], naive["gpu_utilization_mean"]),
        "gpu_seconds_per_token_naive_over_chorus": r(
            naive["gpu_seconds_per_1k_tokens"], chorus["gpu_seconds_per_1k_tokens"]
        ),
        "makespan_naive_over_chorus": r(naive["elapsed_s"], chorus["elapsed_s"]),
        "latency_naive_over_chorus": {
            name: {
                "p50": r(naive["patterns"][name]["p50_s"], p["p50_s"]),
                "p99": r(naive["patterns"][name]["p99_s"], p["p99_s"]),
            }
            for name, p in chorus["patterns"].items()
        },
    }


# ---- output ------------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    m = report["modes"]
    c, a, n = m["chorus"], m["moa"], m["naive"]
    rn, ra = report["ratios"], report["ratios_vs_moa"]
    cpu = report["cpu_charged_ms"]
    lines = [
        f"Scale benchmark — SIMULATED 8×H100 (not a measurement), {report['requests']} concurrent requests, "
        f"{report['date']}",
        f"CPU charged per model call: orchestrator {cpu['orchestrator_ms']} ms on {report['orchestrator_replicas']} "
        f"lane(s), MoA client {cpu['client_ms']} ms, replica front end {cpu['host_ms']} ms",
        f"{'':12} {'chorus':>10} {'moa client':>11} {'naive':>10} {'moa/chorus':>11} {'naive/chorus':>13}",
        f"{'elapsed s':12} {c['elapsed_s']:>10.1f} {a['elapsed_s']:>11.1f} {n['elapsed_s']:>10.1f} "
        f"{ra['makespan_naive_over_chorus']:>10}x {rn['makespan_naive_over_chorus']:>12}x",
        f"{'req/s':12} {c['requests_per_s']:>10.2f} {a['requests_per_s']:>11.2f} {n['requests_per_s']:>10.2f} "
        f"{_inv(ra['throughput_requests']):>10}x {_inv(rn['throughput_requests']):>12}x",
        f"{'tok/s':12} {c['completion_tokens_per_s']:>10.0f} {a['completion_tokens_per_s']:>11.0f} "
        f"{n['completion_tokens_per_s']:>10.0f} {_inv(ra['throughput_tokens']):>10}x {_inv(rn['throughput_tokens']):>12}x",
        f"{'GPU util':12} {c['gpu_utilization_mean']:>10.1%} {a['gpu_utilization_mean']:>11.1%} "
        f"{n['gpu_utilization_mean']:>10.1%}",
        f"{'GPU-s/1k tok':12} {c['gpu_seconds_per_1k_tokens']:>10.2f} {a['gpu_seconds_per_1k_tokens']:>11.2f} "
        f"{n['gpu_seconds_per_1k_tokens']:>10.2f}",
        f"{'tier CPU %':12} {c['cpu']['request_tier_utilization']:>10.1%} {a['cpu']['request_tier_utilization']:>11.1%} "
        f"{n['cpu']['request_tier_utilization']:>10.1%}",
        f"{'failed':12} {c['failed']:>10} {a['failed']:>11} {n['failed']:>10}",
        "",
        f"{'pattern':10} {'n':>4} {'chorus p50/p99 s':>18} {'moa p50/p99 s':>18} {'naive p50/p99 s':>18} "
        f"{'moa/chorus p50, p99':>20}",
    ]
    for name, p in c["patterns"].items():
        q, r, lr = a["patterns"][name], n["patterns"][name], ra["latency_naive_over_chorus"][name]
        lines.append(
            f"{name:10} {p['requests']:>4} {p['p50_s']:>8.1f} /{p['p99_s']:>8.1f} {q['p50_s']:>8.1f} /{q['p99_s']:>8.1f} "
            f"{r['p50_s']:>8.1f} /{r['p99_s']:>8.1f} {lr['p50']:>9}x, {lr['p99']:>6}x"
        )
    lines += ["", "Ablations (chorus minus one mechanism): elapsed s, req/s, p50/p99 s per pattern"]
    for name, ab in report["ablations"].items():
        cells = "  ".join(f"{k} {p['p50_s']:.1f}/{p['p99_s']:.1f}" for k, p in ab["patterns"].items())
        lines.append(f"{name:14} {ab['elapsed_s']:>7.1f} {ab['requests_per_s']:>6.2f}  {cells}")
    return "\n".join(lines)


def _inv(x: float | None) -> float | None:
    """chorus/other as other/chorus is printed (the columns read 'other over chorus')."""
    return round(1 / x, 2) if x else None


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = report["modes"]
    colors = {"chorus": "#1f77b4", "moa": "#2ca02c", "naive": "#d62728"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    names = list(MIX)
    x = range(len(names))
    ax = axes[0][0]
    width = 0.14
    for k, (mode, stat) in enumerate([(m, s) for m in ("chorus", "moa", "naive") for s in ("p50_s", "p99_s")]):
        vals = [modes[mode]["patterns"][p][stat] for p in names]
        shade = 1.0 if stat == "p50_s" else 0.5
        offsets = [i + (k - 2.5) * width for i in x]
        ax.bar(offsets, vals, width, color=colors[mode], alpha=shade, label=f"{mode} {stat[:3]}")
    ax.set_xticks(list(x), names)
    ax.set_yscale("log")
    ax.set_ylabel("latency, simulated s (log)")
    ax.set_title("Latency per pattern (p50 solid, p99 light)")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    for k, mode in enumerate(("chorus", "moa", "naive")):
        ax.bar([g + (k - 1) * 0.27 for g in range(GPUS)], [100 * u for u in modes[mode]["gpu_utilization"]], 0.27,
               color=colors[mode], label=f"{mode} (mean {modes[mode]['gpu_utilization_mean']:.0%})")
    ax.set_xticks(range(GPUS), [f"GPU {g}" for g in range(GPUS)])
    ax.set_ylabel("utilization, % of elapsed")
    ax.set_ylim(0, 105)
    ax.set_title("Simulated GPU utilization (model work / elapsed)")
    ax.legend(fontsize=8)
    ax = axes[1][0]
    labels = ["requests/s", "completion tokens/s", "GPU-s per 1k tokens"]
    keys = ["requests_per_s", "completion_tokens_per_s", "gpu_seconds_per_1k_tokens"]
    for k, mode in enumerate(("chorus", "moa", "naive")):
        vals = [modes[mode][key] for key in keys]
        bars = ax.bar([i + (k - 1) * 0.27 for i in range(3)], vals, 0.27, color=colors[mode], label=mode)
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(3), labels)
    rt = report["ratios"]
    ra = report["ratios_vs_moa"]
    ax.set_title(f"Throughput and GPU cost (chorus: {ra['throughput_requests']}x the MoA client's requests/s, "
                 f"{rt['throughput_requests']}x naive's)", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1][1]
    for mode in ("chorus", "moa", "naive"):
        times = modes[mode]["finish_times_s"]
        ax.plot(times, range(1, len(times) + 1), color=colors[mode], label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("simulated s since the burst (log)")
    ax.set_ylabel("requests completed")
    ax.set_title("Completions over time")
    ax.legend(fontsize=8)
    fig.suptitle(f"chorus scale benchmark — SIMULATED 8×H100 (SimulatedEngine, not a measurement), "
                 f"{report['requests']} concurrent mixed requests, {report['date']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compact(result: dict[str, Any]) -> dict[str, Any]:
    """An ablation's headline figures."""
    return {
        "elapsed_s": result["elapsed_s"],
        "requests_per_s": result["requests_per_s"],
        "gpu_seconds_per_1k_tokens": result["gpu_seconds_per_1k_tokens"],
        "failed": result["failed"],
        "patterns": {n: {"p50_s": p["p50_s"], "p99_s": p["p99_s"]} for n, p in result["patterns"].items()},
    }


async def main_async(
    requests: int, config: ChorusConfig, time_scale: float, cpu: dict[str, float], replicas: int
) -> tuple[dict, dict]:
    modes = {
        name: await run_mode(config, mode, requests, time_scale=time_scale, charges=charges_for(mode, cpu, replicas))
        for name, mode in MODES.items()
    }
    ablations = {}
    for name, mode in ABLATIONS.items():
        res = await run_mode(config, mode, requests, time_scale=time_scale, charges=charges_for(mode, cpu, replicas))
        ablations[name] = {**asdict(mode), **compact(res)}
    return modes, ablations


def measure_client_ms(calls: int = 1000) -> float:
    """CPU ms per call of a mixture-of-agents client: httpx.AsyncClient posting OpenAI chat
    requests (a 300-word system prompt, 64-token answers) to a canned local server, 8 at a time."""
    import socket
    import subprocess
    import sys

    import httpx

    server = (
        "import sys, uvicorn\nfrom fastapi import FastAPI\napp = FastAPI()\n"
        "BODY = {'id': 'x', 'object': 'chat.completion', 'created': 0, 'model': 'm', 'choices': [{'index': 0, "
        "'message': {'role': 'assistant', 'content': 'hello there ' * 32}, 'finish_reason': 'stop'}], "
        "'usage': {'prompt_tokens': 300, 'completion_tokens': 64, 'total_tokens': 364}}\n"
        "@app.post('/v1/chat/completions')\nasync def chat(body: dict):\n    return BODY\n"
        "@app.get('/ready')\nasync def ready():\n    return {}\n"
        "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')\n"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", server, str(port)])

    async def run() -> float:
        messages = [{"role": "system", "content": "policy " * 300}, {"role": "user", "content": "question " * 40}]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:  # readiness: the server answers, bounded by a deadline
                try:
                    await client.get("/ready")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
            gate = asyncio.Semaphore(8)

            async def one() -> None:
                async with gate:
                    r = await client.post("/v1/chat/completions", json={"model": "m", "messages": messages})
                    r.json()

            t0 = time.process_time()
            await asyncio.gather(*(one() for _ in range(calls)))
            return 1000 * (time.process_time() - t0) / calls

    try:
        return asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clock", choices=["virtual", "scaled"], default="virtual")
    parser.add_argument(
        "--time-scale", type=float, default=0.1, help="scaled clock: wall seconds per simulated second"
    )
    parser.add_argument("--orchestrator-ms", type=float, default=ORCHESTRATOR_MS,
                        help="orchestrator CPU per model call, ms (0 = the old, uncharged simulation)")
    parser.add_argument("--host-ms", type=float, default=HOST_MS, help="replica front-end CPU per call, ms")
    parser.add_argument("--client-ms", type=float, default=CLIENT_MS, help="MoA client CPU per call, ms")
    parser.add_argument("--measure-client", action="store_true", help="measure --client-ms here first")
    parser.add_argument("--orchestrators", type=int, default=1, help="orchestrator replicas (lanes)")
    args = parser.parse_args()
    if args.measure_client:
        args.client_ms = round(measure_client_ms(), 2)
        print(f"measured MoA client CPU: {args.client_ms} ms per call")
    cpu = {"orchestrator_ms": args.orchestrator_ms, "host_ms": args.host_ms, "client_ms": args.client_ms}
    config = bench_config()
    time_scale = 1.0 if args.clock == "virtual" else args.time_scale
    factory = VirtualClockLoop if args.clock == "virtual" else None
    wall0 = time.perf_counter()
    with asyncio.Runner(loop_factory=factory) as runner:
        modes, ablations = runner.run(main_async(args.requests, config, time_scale, cpu, args.orchestrators))
    wall = time.perf_counter() - wall0
    report = {
        "benchmark": "scale",
        "date": DATE,
        "simulated": True,
        "note": "A simulation of H100 SXM GPUs by serving.sim.engine.SimulatedEngine (docs/simulated-engine.md), "
        "not a measurement on GPUs. Latencies and throughput are in simulated seconds.",
        "config": str(PRESET.relative_to(ROOT)),
        "gpus": f"{GPUS}x {H100.name}",
        "profile": asdict(H100),
        "clock": args.clock,
        "time_scale": time_scale,
        "requests": args.requests,
        "arrival": "all at once (a burst of concurrent requests)",
        "mix": {name: share for name, (share, _) in MIX.items()},
        "priorities_chorus": {name: prio for name, (_, prio) in MIX.items()},
        "modes_described": {
            "chorus": "engines batch up to max_num_seqs; a pattern's independent steps run concurrently; "
            "priority admission (single, router 0; fanout, council, pyramid 10)",
            "moa": "a mixture-of-agents client over one vLLM server per replica: continuous batching, a pattern's "
            "steps in parallel where it allows, round robin over a model's servers, first come, first served, "
            "every pyramid layer (no early stop), the client's own CPU per call",
            "naive": "max_num_seqs 1 per replica; a pattern's steps run one after another; first come, first served",
        },
        "cpu_charged_ms": cpu,
        "orchestrator_replicas": args.orchestrators,
        "patterns": {n: config.patterns[n].model_dump(exclude_defaults=True) for n in MIX},
        "fleet": [{k: v for k, v in r.items() if k not in ("busy", "max_batch", "tokens", "requests", "steps")}
                  for r in modes["chorus"]["replicas"]],
        "wall_seconds": round(wall, 1),
        "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "modes": modes,
        "ablations": ablations,
    }
    report["ratios"] = ratios(modes["chorus"], modes["naive"])
    report["ratios_vs_moa"] = ratios(modes["chorus"], modes["moa"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "scale.png")
    print(table(report))
    print(f"\nwall {wall:.1f} s; wrote {args.out / 'scale.json'} and {args.out / 'scale.png'}")


if __name__ == "__main__":
    main()
