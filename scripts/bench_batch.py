"""Benchmark: batch jobs. The same rows, the same model, the same engine settings, three ways:

  (a) job      `chorus submit`'s path: a Ray Job on Ray Data calling the fleet at batch priority,
               the `single` pattern, requests in flight = the model's max_num_seqs
  (b) offline  vLLM's own `LLM.chat` over the same prompts (the engine's limit), in a subprocess
  (c) http     the rows through chorus's OpenAI HTTP API by a client keeping 32 requests in flight
  (d) data-llm what a Ray user would run instead: Ray Data LLM's vLLM processor
               (`ray.data.llm.vLLMEngineProcessorConfig`), which starts an engine of its own for
               the job, in a subprocess with its own Ray; end to end (its engine start included)
               and after its first block of output (steady state)
Rows/s and tokens/s each, and (a)/(b), (c)/(b), (d)/(b). Then the interactive p50 latency of a `router`
request (sequential, one at a time) with the fleet idle and while a job runs (32 in flight), and
the job's own rows/s meanwhile, for three shares of the engine that batch work keeps beside
interactive work (`batch_slots_when_busy`): an eighth of max_num_seqs (the CPU default), a
quarter, and all of it (no yield); one deployment each, in one run.

On 2 cores, where the engine's OpenMP threads run decides much: every side is measured with its
engine on both cores (`0-1`), and again on core 0 alone, leaving core 1 to everything else (for
chorus: the job's Ray Data actor, the orchestrator replica, Serve's proxy, the host). (b) is the
faster offline binding: the engine's own limit on this machine.

The model is SmolLM2-135M (a real chat model: completions have realistic lengths); prefix
caching is off on both sides so that re-running the same rows gains nothing from a warm cache.
The offline run goes first and again last (this machine's speed drifts by up to 2× within an
hour); the faster of the two is (b).
Usage: python scripts/bench_batch.py [--rows 256] [--interactive 8]
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
from typing import Any

from benchlib import MODELS, ROOT, pyplot, summary, write

MAX_TOKENS = 32
SEQS = 32
MODEL = {
    "name": "smol",
    "source": str(MODELS / "smollm2-135m"),
    "dtype": "float32",
    "max_model_len": 1024,
    "max_num_seqs": SEQS,
    "max_queue": 1024,
    "kv_cache_memory_bytes": 256 << 20,
    "enable_prefix_caching": False,
}
TOPICS = ["the sea", "bread", "a comet", "chess", "rain", "the moon", "a violin", "bees", "glass", "winter", "maps", "salt"]
ASKS = ["Describe {} in one sentence.", "Give two facts about {}.", "Write a short poem about {}.", "Why does {} matter?"]
# Batch work's share of the engine beside interactive work on a CPU engine, by default.
DEFAULT_SLOTS = max(1, SEQS // 8)
# Engine bindings compared (VLLM_CPU_OMP_THREADS_BIND offline, `placement.cpus` in chorus).
BOTH, CORE0 = "0-1", "0"
# The deployments, in order: (label, batch_slots_when_busy, engine cores, throughput phases too).
RUNS = (
    ("an eighth", DEFAULT_SLOTS, BOTH, True),
    ("a quarter", SEQS // 4, BOTH, False),
    ("no yield", SEQS, BOTH, False),
    ("an eighth, engine on core 0", DEFAULT_SLOTS, CORE0, True),
)


def prompts(n: int) -> list[str]:
    return [f"{ASKS[i % len(ASKS)].format(TOPICS[(i // len(ASKS)) % len(TOPICS)])} (#{i})" for i in range(n)]


def config(batch_slots_when_busy: int | None = None, cores: str = BOTH) -> dict[str, Any]:
    return {
        "models": [MODEL | {"batch_slots_when_busy": batch_slots_when_busy}],
        "roles": {"classifier": "smol", "generalist": "smol", "coder": "smol"},
        "placement": {"smol": {"replicas": 1, "gpu_share": 0, "num_cpus": 2, "cpus": [cores]}},
        "sampling": {"max_tokens": MAX_TOKENS, "temperature": 0.0},
        "patterns": {
            "single": {"kind": "single", "role": "generalist"},
            "router": {
                "kind": "router",
                "classifier": "classifier",
                "routes": {"code": {"role": "coder", "when": "programs"}, "general": {"role": "generalist", "when": "anything else"}},
                "fallback": "generalist",
            },
        },
        "server": {"port": 0},
    }


# --- (b) vLLM offline, in its own process ----------------------------------------------------------


def offline(rows: int, out: str) -> None:
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=MODEL["source"],
        dtype="float32",
        max_model_len=MODEL["max_model_len"],
        max_num_seqs=SEQS,
        enforce_eager=True,
        kv_cache_memory_bytes=MODEL["kv_cache_memory_bytes"],
        enable_prefix_caching=False,
        seed=0,
    )
    sp = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0)
    conversations = [[{"role": "user", "content": p}] for p in prompts(rows)]
    llm.chat(conversations[:4], sp, use_tqdm=False)  # warm-up, as chorus is warm
    t0 = time.perf_counter()
    outs = llm.chat(conversations, sp, use_tqdm=False)
    wall = time.perf_counter() - t0
    completion = sum(len(o.outputs[0].token_ids) for o in outs)
    prompt = sum(len(o.prompt_token_ids or []) for o in outs)
    Path(out).write_text(json.dumps({"wall_s": wall, "rows": rows, "prompt_tokens": prompt, "completion_tokens": completion}))


def data_llm(rows: int, out: str) -> None:
    """(d) Ray Data LLM's vLLM processor over the same rows, engine settings and cores."""
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False, logging_level="error")
    quiet = ray.data.DataContext.get_current()
    quiet.enable_progress_bars = False
    config = vLLMEngineProcessorConfig(
        model_source=MODEL["source"],
        engine_kwargs={"dtype": "float32", "max_model_len": MODEL["max_model_len"], "max_num_seqs": SEQS,
                       "enforce_eager": True, "kv_cache_memory_bytes": MODEL["kv_cache_memory_bytes"],
                       "enable_prefix_caching": False, "seed": 0},
        batch_size=SEQS,
        concurrency=1,
        placement_group_config={"bundles": [{"CPU": 1}]},
        runtime_env={"env_vars": {"VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", BOTH)}},
        log_engine_metrics=False,
    )  # fmt: skip
    sampling = {"max_tokens": MAX_TOKENS, "temperature": 0.0}
    processor = build_processor(
        config,
        preprocess=lambda row: {"messages": [{"role": "user", "content": row["prompt"]}], "sampling_params": sampling},
        postprocess=lambda row: {"prompt_tokens": row["num_input_tokens"], "completion_tokens": row["num_generated_tokens"]},
    )
    t0 = time.perf_counter()
    done, first, first_rows, usage = 0, None, 0, {"prompt_tokens": 0, "completion_tokens": 0}
    for block in processor(ray.data.from_items([{"prompt": q} for q in prompts(rows)])).iter_batches(batch_size=None):
        done += len(block["completion_tokens"])
        usage["prompt_tokens"] += int(sum(block["prompt_tokens"]))
        usage["completion_tokens"] += int(sum(block["completion_tokens"]))
        if first is None:
            first, first_rows = time.perf_counter() - t0, done
    wall = time.perf_counter() - t0
    ray.shutdown()
    assert first is not None
    # A rate needs output spread over time: blocks landing within a second of the first are one burst.
    steady = (done - first_rows) / (wall - first) if wall - first >= 1.0 else float("nan")
    Path(out).write_text(json.dumps({"wall_s": wall, "rows": done, **usage, "first_block_s": first,
                                     "rows_per_s_after_first_block": steady}))  # fmt: skip


def run_data_llm(rows: int, tmp: Path, cores: str) -> dict[str, Any]:
    out = tmp / "data_llm.json"
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": cores}
    subprocess.run([sys.executable, __file__, "--data-llm-child", str(rows), str(out)], check=True, env=env, timeout=900)
    return dict(json.loads(out.read_text()))


def run_offline(rows: int, tmp: Path, cores: str) -> dict[str, Any]:
    out = tmp / "offline.json"
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": cores}
    subprocess.run([sys.executable, __file__, "--offline-child", str(rows), str(out)], check=True, env=env, timeout=600)
    return dict(json.loads(out.read_text()))


# --- chorus: (a) the job, (c) HTTP, interactive latency ----------------------------------------------


def batch_file(path: Path, rows: int) -> Path:
    with open(path, "w") as f:
        for i, p in enumerate(prompts(rows)):
            body = {"model": "single", "messages": [{"role": "user", "content": p}], "max_tokens": MAX_TOKENS}
            f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
    return path


def run_job(server: Any, src: Path, out: Path, max_in_flight: int | None = None) -> dict[str, Any]:
    from orchestrator.jobs import submit as jobs

    argv = jobs.job_argv(str(src), str(out), None, shard_rows=32, max_in_flight=max_in_flight, python=sys.executable)
    t0 = time.perf_counter()
    job_id = jobs.submit(server, argv, input=str(src), out=str(out), model=None)
    last: list[Any] = []
    status = jobs.follow(server, job_id, last.append, lambda line: None, timeout_s=900)
    e2e = time.perf_counter() - t0
    if status.value != "SUCCEEDED" or not last:
        raise RuntimeError(f"job {job_id} ended {status}: {server.client.get_job_logs(job_id)[-2000:]}")
    p = last[-1]
    # The first shard marks the end of the job's start-up (its Ray Data workers); after it, steady state.
    first = next(q for q in last if q.done > 0)
    steady = (p.done - first.done) / (p.elapsed_s - first.elapsed_s) if p.elapsed_s > first.elapsed_s else float("nan")
    return {"wall_s": p.elapsed_s, "e2e_s": e2e, "rows": p.done, "prompt_tokens": p.prompt_tokens,
            "completion_tokens": p.completion_tokens, "in_flight": p.in_flight, "errors": p.errors,
            "first_shard_s": first.elapsed_s, "rows_per_s_after_first_shard": steady}


async def run_http(base_url: str, rows: int, concurrency: int = 32) -> dict[str, Any]:
    import httpx

    todo = list(enumerate(prompts(rows)))
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:

        async def worker() -> None:
            while todo:
                _, p = todo.pop()
                r = await client.post("/chat/completions", json={"model": "single", "max_tokens": MAX_TOKENS,
                                                                 "messages": [{"role": "user", "content": p}]})
                r.raise_for_status()
                u = r.json()["usage"]
                usage["prompt_tokens"] += u["prompt_tokens"]
                usage["completion_tokens"] += u["completion_tokens"]

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "rows": rows, **usage}


def router_latencies(base_url: str, n: int) -> list[float]:
    import httpx

    out = []
    with httpx.Client(base_url=base_url, timeout=300) as client:
        for i in range(n):
            t0 = time.perf_counter()
            r = client.post("/chat/completions", json={"model": "router", "max_tokens": MAX_TOKENS,
                                                       "messages": [{"role": "user", "content": f"What is {i} + {i}?"}]})
            r.raise_for_status()
            out.append(time.perf_counter() - t0)
    return out


def latency_during_job(server: Any, base_url: str, src: Path, out: Path, n: int, max_in_flight: int | None) -> dict[str, Any]:
    """Start a job, wait for its first shard (steady state), then time `n` router requests; stop it."""
    from orchestrator.jobs import submit as jobs

    argv = jobs.job_argv(str(src), str(out), None, shard_rows=32, max_in_flight=max_in_flight, python=sys.executable)
    job_id = jobs.submit(server, argv, input=str(src), out=str(out), model=None)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # readiness: the job has written a shard
        p = jobs.last_progress_of(server, job_id)
        if p is not None and p.done > 0:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"job {job_id} wrote no shard in 300 s")
    before, t0 = p, time.monotonic()
    lat = router_latencies(base_url, n)
    p = jobs.last_progress_of(server, job_id)
    window = time.monotonic() - t0
    still_running = p is not None and p.state == "running" and p.done < p.total
    server.client.stop_job(job_id)
    jobs.follow(server, job_id, lambda _: None, lambda _: None, timeout_s=120)
    job_rows_per_s = (p.done - before.done) / window if p is not None else None  # shards land in blocks of 32: coarse
    return {"latencies": lat, "in_flight": p.in_flight if p else None, "job_running_throughout": still_running,
            "job_rows_per_s_meanwhile": job_rows_per_s}


def bench(rows: int, interactive: int) -> None:
    import ray
    from ray import serve
    from ray.job_submission import JobSubmissionClient

    from orchestrator.jobs import submit as jobs
    from orchestrator.runtime.deploy import NAMESPACE, deploy
    from orchestrator.service.config import parse_config

    tmp = Path(tempfile.mkdtemp(prefix="chorus-bench-batch-"))
    offline_runs: dict[str, list[dict[str, Any]]] = {BOTH: [], CORE0: []}

    def offline_round() -> None:
        for cores, runs in offline_runs.items():
            print(f"(b) vLLM offline LLM.chat over {rows} prompts, engine on cores {cores} ...", flush=True)
            runs.append(run_offline(rows, tmp, cores))
            print(f"    {runs[-1]['rows'] / runs[-1]['wall_s']:.2f} rows/s", flush=True)

    offline_round()
    print(f"(d) Ray Data LLM's vLLM processor over {rows} prompts, engine on cores {BOTH} (its engine start included) ...", flush=True)
    data_llm_result = run_data_llm(rows, tmp, BOTH)
    print(f"    {data_llm_result['rows'] / data_llm_result['wall_s']:.2f} rows/s end to end, "
          f"{data_llm_result['rows_per_s_after_first_block']:.2f} after its first block "
          f"({data_llm_result['first_block_s']:.1f} s)", flush=True)  # fmt: skip
    ctx = ray.init(address="local", num_cpus=8, namespace=NAMESPACE, include_dashboard=True, dashboard_host="127.0.0.1",
                   log_to_driver=False, logging_level="error")
    url = f"http://{ctx.dashboard_url}"
    server = jobs.JobServer(JobSubmissionClient(url), url, local=True)
    src, long = batch_file(tmp / "rows.jsonl", rows), batch_file(tmp / "long.jsonl", rows * 4)
    interactive_runs: dict[str, dict[str, Any]] = {}
    job: dict[str, dict[str, Any]] = {}
    http: dict[str, dict[str, Any]] = {}
    for label, slots, cores, throughput in RUNS:
        print(f"  deployment with batch_slots_when_busy = {slots} ({label}), engine on cores {cores} ...", flush=True)
        dep = deploy(parse_config(config(slots, cores), "<bench>", ROOT), progress=lambda s: print(f"  [deploy] {s}", flush=True))
        try:
            base = str(dep.url)  # ends in /v1
            router_latencies(base, 4)  # warm-up: the engine and both patterns
            print("    idle router latency ...", flush=True)
            idle = router_latencies(base, interactive)
            if throughput:
                print(f"(a) chorus job over {rows} rows ...", flush=True)
                job[cores] = run_job(server, src, tmp / f"out-a-{cores}")
                j = job[cores]
                print(f"    {j['rows'] / j['wall_s']:.2f} rows/s (end to end incl. job start {j['rows'] / j['e2e_s']:.2f})", flush=True)
                print("(c) HTTP, 32 in flight ...", flush=True)
                http[cores] = asyncio.run(run_http(base, rows))
                print(f"    {http[cores]['rows'] / http[cores]['wall_s']:.2f} rows/s", flush=True)
            print("    router latency during a job ...", flush=True)
            busy = latency_during_job(server, base, long, tmp / f"out-busy-{slots}-{cores}", interactive, None)
        finally:
            dep.shutdown()
            serve.shutdown()  # the next deployment starts Serve again, on its own port
        interactive_runs[label] = {
            "batch_slots_when_busy": slots, "engine_cores": cores, "idle": summary(idle),
            "during_job": summary(busy["latencies"]),
            "p50_during_job_over_idle": summary(busy["latencies"])["p50"] / summary(idle)["p50"],
            "job_rows_per_s_meanwhile": busy["job_rows_per_s_meanwhile"], "job_in_flight": busy["in_flight"],
            "job_running_throughout": busy["job_running_throughout"],
        }
        print(f"    p50 during a job / idle: {interactive_runs[label]['p50_during_job_over_idle']:.2f}", flush=True)
    ray.shutdown()
    print("(b) vLLM offline again (this machine's speed drifts; the better run counts) ...", flush=True)
    offline_round()

    def rates(r: dict[str, Any]) -> dict[str, float]:
        return {"rows_per_s": r["rows"] / r["wall_s"], "completion_tokens_per_s": r["completion_tokens"] / r["wall_s"],
                "tokens_per_s": (r["prompt_tokens"] + r["completion_tokens"]) / r["wall_s"]}

    offline_best = {cores: min(runs, key=lambda r: r["wall_s"]) for cores, runs in offline_runs.items()}
    limit_cores = min(offline_best, key=lambda c: offline_best[c]["wall_s"])  # the engine's own limit
    systems: dict[str, dict[str, Any]] = {}
    for cores in (BOTH, CORE0):
        systems[f"job@{cores}"] = {**job[cores], **rates(job[cores]), "rows_per_s_end_to_end": job[cores]["rows"] / job[cores]["e2e_s"]}
        systems[f"offline@{cores}"] = {**offline_best[cores], **rates(offline_best[cores])}
        systems[f"http@{cores}"] = {**http[cores], **rates(http[cores])}
    systems[f"data-llm@{BOTH}"] = {**data_llm_result, **rates(data_llm_result)}
    limit = systems[f"offline@{limit_cores}"]["rows_per_s"]
    ratios: dict[str, float] = {}
    ratios[f"data-llm@{BOTH}_over_offline_rows"] = systems[f"data-llm@{BOTH}"]["rows_per_s"] / limit
    ratios[f"data-llm@{BOTH}_steady_over_offline_rows"] = data_llm_result["rows_per_s_after_first_block"] / limit
    for cores in (BOTH, CORE0):
        j = systems[f"job@{cores}"]
        ratios[f"job@{cores}_over_offline_rows"] = j["rows_per_s"] / limit
        ratios[f"job@{cores}_steady_over_offline_rows"] = j["rows_per_s_after_first_shard"] / limit
        ratios[f"job@{cores}_end_to_end_over_offline_rows"] = j["rows_per_s_end_to_end"] / limit
        ratios[f"job@{cores}_over_offline@{cores}_rows"] = j["rows_per_s"] / systems[f"offline@{cores}"]["rows_per_s"]
        ratios[f"http@{cores}_over_offline_rows"] = systems[f"http@{cores}"]["rows_per_s"] / limit
    ratios |= {f"router_p50_during_job_over_idle[{k}]": v["p50_during_job_over_idle"] for k, v in interactive_runs.items()}
    result = {
        "rows": rows, "max_tokens": MAX_TOKENS, "model": "smollm2-135m", "max_num_seqs": SEQS,
        "systems": systems, "offline_limit": f"offline@{limit_cores}",
        "offline_runs_rows_per_s": {c: [r["rows"] / r["wall_s"] for r in runs] for c, runs in offline_runs.items()},
        "ratios": ratios, "interactive": interactive_runs, "default_batch_slots_when_busy": DEFAULT_SLOTS,
    }
    for k, v in ratios.items():
        print(f"  {k}: {v:.2f}")
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    names = [f"{k.split('@')[0]}\n{k.split('@')[1]}" for k in systems]
    colours = {"job": "#4c72b0", "offline": "#999999", "http": "#dd8452", "data-llm": "#55a868"}
    left.bar(names, [v["rows_per_s"] for v in systems.values()], color=[colours[k.split("@")[0]] for k in systems])
    left.set_ylabel("rows/s")
    left.set_title(f"{rows} rows, SmolLM2-135M, ≤{MAX_TOKENS} tokens; engine cores below", fontsize=9)
    labels, values, bar_colours = [], [], []
    for label, r in interactive_runs.items():
        short = label.replace(", engine on core 0", "\ncore 0")
        labels += [f"idle\n{short}", f"job\n{short}"]
        values += [r["idle"]["p50"], r["during_job"]["p50"]]
        bar_colours += ["#999999", "#4c72b0"]
    right.bar(labels, values, color=bar_colours)
    right.tick_params(axis="x", labelsize=7)
    right.set_ylabel("router p50 latency (s)")
    right.set_title(f"interactive router requests (job: {SEQS} in flight)", fontsize=9)
    write("batch", result, fig)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--offline-child":
        offline(int(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--data-llm-child":
        data_llm(int(sys.argv[2]), sys.argv[3])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--interactive", type=int, default=8)
    args = ap.parse_args()
    bench(args.rows, args.interactive)


if __name__ == "__main__":
    main()
