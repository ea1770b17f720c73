"""Scale benchmark (simulated): the Qwen2.5 fleet on 8×H100, 500 concurrent mixed requests.

    python scripts/bench_scale.py [--out docs/bench] [--requests 500] [--clock virtual|scaled]

A SIMULATION, not a measurement: every engine is a `serving.sim.engine.SimulatedEngine` (the
latency model of docs/simulated-engine.md), hosted by a real `ModelHost` behind a real `Fleet`
and `Chorus`, so admission, replica choice and the patterns' own code run as in production.
The fleet, roles and placement are those of configs/gpu-8x80.yaml (patterns fanout, council and
pyramid are added here). Two modes run side by side on the same workload:

* chorus   — engines batch up to each model's max_num_seqs, a pattern's independent steps run
             concurrently, hosts admit interactive requests (single, router: priority 0) ahead
             of multi-model ones (priority 10).
* naive    — every replica serves one request at a time (max_num_seqs 1), a pattern's steps run
             one after another (a per-request lock in the fleet; pattern code is unchanged) and
             hosts serve first come, first served.

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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.core.schema import ChatRequest
from orchestrator.routing.fleet import Fleet
from orchestrator.routing.replicas import HostReplica, Replica
from orchestrator.service.chorus import Chorus
from orchestrator.service.config import ChorusConfig, load_config, parse_config
from serving.host.model_host import ModelHost
from serving.sim.clock import VirtualClockLoop
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


# ---- the naive mode's fleet ----------------------------------------------------------------


@dataclass
class SerialFleet(Fleet):
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
    fleet: Fleet
    gpus: list[SimulatedGpu]
    replicas: list[dict[str, Any]]  # model, index, gpu ids, share, engine


@dataclass(frozen=True)
class Mode:
    """How the fleet serves: engine batches, a pattern's steps, and host admission order."""

    batching: bool  # engines batch up to max_num_seqs (else one sequence at a time)
    concurrent_steps: bool  # a pattern's independent steps run at once (else one after another)
    priorities: bool  # interactive patterns ahead of multi-model ones (else first come, first served)


MODES = {"chorus": Mode(True, True, True), "naive": Mode(False, False, False)}
# Each takes one of chorus's mechanisms away, to show what each contributes.
ABLATIONS = {
    "no_batching": Mode(False, True, True),
    "serial_steps": Mode(True, False, True),
    "no_priorities": Mode(True, True, False),
}


def build_fleet(config: ChorusConfig, mode: Mode, *, time_scale: float) -> Deployed:
    gpus = [SimulatedGpu(i) for i in range(GPUS)]
    by_model: dict[str, list[Replica]] = {}
    rows = []
    fleet_cls = Fleet if mode.concurrent_steps else SerialFleet
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
    return Deployed(fleet_cls(by_model), gpus, rows)


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


async def run_mode(config: ChorusConfig, mode: Mode, requests: int, *, time_scale: float) -> dict[str, Any]:
    items = workload(requests, priorities=mode.priorities)
    deployed = build_fleet(config, mode, time_scale=time_scale)
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
    c, n, rt = report["modes"]["chorus"], report["modes"]["naive"], report["ratios"]
    lines = [
        f"Scale benchmark — SIMULATED 8×H100 (not a measurement), {report['requests']} concurrent requests, "
        f"{report['date']}",
        f"{'':10} {'chorus':>22} {'naive':>22} {'ratio':>8}",
        f"{'elapsed s':10} {c['elapsed_s']:>22.1f} {n['elapsed_s']:>22.1f} {rt['makespan_naive_over_chorus']:>7}x",
        f"{'req/s':10} {c['requests_per_s']:>22.2f} {n['requests_per_s']:>22.2f} {rt['throughput_requests']:>7}x",
        f"{'tok/s':10} {c['completion_tokens_per_s']:>22.0f} {n['completion_tokens_per_s']:>22.0f} "
        f"{rt['throughput_tokens']:>7}x",
        f"{'GPU util':10} {c['gpu_utilization_mean']:>22.1%} {n['gpu_utilization_mean']:>22.1%} "
        f"{rt['gpu_utilization']:>7}x",
        f"{'GPU-s/1k tok':10} {c['gpu_seconds_per_1k_tokens']:>22.2f} {n['gpu_seconds_per_1k_tokens']:>22.2f} "
        f"{rt['gpu_seconds_per_token_naive_over_chorus']:>7}x less",
        f"{'failed':10} {c['failed']:>22} {n['failed']:>22}",
        "",
        f"{'pattern':10} {'n':>4} {'chorus p50/p99 s':>22} {'naive p50/p99 s':>22} {'naive/chorus':>14}",
    ]
    for name, p in c["patterns"].items():
        q, lr = n["patterns"][name], rt["latency_naive_over_chorus"][name]
        lines.append(
            f"{name:10} {p['requests']:>4} {p['p50_s']:>10.1f} /{p['p99_s']:>9.1f} "
            f"{q['p50_s']:>10.1f} /{q['p99_s']:>9.1f} "
            f"{lr['p50']:>6}x /{lr['p99']:>5}x"
        )
    lines.append("")
    pairs = zip(c["gpu_utilization"], n["gpu_utilization"], strict=True)
    per_gpu = "  ".join(f"g{i}:{u:.0%}/{v:.0%}" for i, (u, v) in enumerate(pairs))
    lines.append(f"GPU util  {per_gpu}  (chorus/naive)")
    lines += ["", "Ablations (chorus minus one mechanism): elapsed s, req/s, p50/p99 s per pattern"]
    for name, a in report["ablations"].items():
        cells = "  ".join(f"{n} {p['p50_s']:.1f}/{p['p99_s']:.1f}" for n, p in a["patterns"].items())
        lines.append(f"{name:14} {a['elapsed_s']:>7.1f} {a['requests_per_s']:>6.2f}  {cells}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = report["modes"]
    colors = {"chorus": "#1f77b4", "naive": "#d62728"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    names = list(MIX)
    x = range(len(names))
    ax = axes[0][0]
    width = 0.2
    for k, (mode, stat) in enumerate([(m, s) for m in ("chorus", "naive") for s in ("p50_s", "p99_s")]):
        vals = [modes[mode]["patterns"][p][stat] for p in names]
        shade = 1.0 if stat == "p50_s" else 0.5
        offsets = [i + (k - 1.5) * width for i in x]
        ax.bar(offsets, vals, width, color=colors[mode], alpha=shade, label=f"{mode} {stat[:3]}")
    ax.set_xticks(list(x), names)
    ax.set_yscale("log")
    ax.set_ylabel("latency, simulated s (log)")
    ax.set_title("Latency per pattern (p50 solid, p99 light)")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    for k, mode in enumerate(("chorus", "naive")):
        ax.bar([g + (k - 0.5) * 0.4 for g in range(GPUS)], [100 * u for u in modes[mode]["gpu_utilization"]], 0.4,
               color=colors[mode], label=f"{mode} (mean {modes[mode]['gpu_utilization_mean']:.0%})")
    ax.set_xticks(range(GPUS), [f"GPU {g}" for g in range(GPUS)])
    ax.set_ylabel("utilization, % of elapsed")
    ax.set_ylim(0, 105)
    ax.set_title("Simulated GPU utilization (model work / elapsed)")
    ax.legend(fontsize=8)
    ax = axes[1][0]
    labels = ["requests/s", "completion tokens/s", "GPU-s per 1k tokens"]
    keys = ["requests_per_s", "completion_tokens_per_s", "gpu_seconds_per_1k_tokens"]
    for k, mode in enumerate(("chorus", "naive")):
        vals = [modes[mode][key] for key in keys]
        bars = ax.bar([i + (k - 0.5) * 0.4 for i in range(3)], vals, 0.4, color=colors[mode], label=mode)
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(3), labels)
    rt = report["ratios"]
    ax.set_title(f"Throughput and GPU cost (chorus: {rt['throughput_requests']}x requests/s, "
                 f"{rt['gpu_seconds_per_token_naive_over_chorus']}x less GPU time per token)", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1][1]
    for mode in ("chorus", "naive"):
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


async def main_async(requests: int, config: ChorusConfig, time_scale: float) -> tuple[dict, dict]:
    modes = {name: await run_mode(config, mode, requests, time_scale=time_scale) for name, mode in MODES.items()}
    ablations = {}
    for name, mode in ABLATIONS.items():
        ablations[name] = {**asdict(mode), **compact(await run_mode(config, mode, requests, time_scale=time_scale))}
    return modes, ablations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clock", choices=["virtual", "scaled"], default="virtual")
    parser.add_argument(
        "--time-scale", type=float, default=0.1, help="scaled clock: wall seconds per simulated second"
    )
    args = parser.parse_args()
    config = bench_config()
    time_scale = 1.0 if args.clock == "virtual" else args.time_scale
    factory = VirtualClockLoop if args.clock == "virtual" else None
    wall0 = time.perf_counter()
    with asyncio.Runner(loop_factory=factory) as runner:
        modes, ablations = runner.run(main_async(args.requests, config, time_scale))
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
            "naive": "max_num_seqs 1 per replica; a pattern's steps run one after another; first come, first served",
        },
        "patterns": {n: config.patterns[n].model_dump(exclude_defaults=True) for n in MIX},
        "fleet": [{k: v for k, v in r.items() if k not in ("busy", "max_batch", "tokens", "requests", "steps")}
                  for r in modes["chorus"]["replicas"]],
        "wall_seconds": round(wall, 1),
        "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "modes": modes,
        "ablations": ablations,
    }
    report["ratios"] = ratios(modes["chorus"], modes["naive"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "scale.png")
    print(table(report))
    print(f"\nwall {wall:.1f} s; wrote {args.out / 'scale.json'} and {args.out / 'scale.png'}")


if __name__ == "__main__":
    main()
