"""Benchmark: tokens/s of a hosted model's stream through chorus vs vLLM's own OpenAI server.

The same model (tiny-qwen2, float32) and engine settings behind both; the official `openai`
client streams chat completions of a fixed length (`ignore_eos`) at 1 and at 32 concurrent
streams. vLLM's server runs alone, then chorus is deployed on a local Ray and measured the same
way (each coalescing window; then, in a child process whose Ray starts with Serve's direct
ingress, straight to the orchestrator replica's own HTTP port), then vLLM's server again: no
side competes with another for the two cores, and vLLM's figure is the better of its two runs.
Beside them, what a Ray user would deploy instead: Ray Serve LLM's OpenAI application
(`ray.serve.llm.build_openai_app`) over the same model and engine settings, in a child process
with its own Ray and the same Serve settings, streamed through the same Serve proxy path.
Both engines are bound to the same core (VLLM_CPU_OMP_THREADS_BIND). Each level runs
`--rounds` times; the best round counts (these machines are shared and noisy).

Prints the figures and writes docs/bench/stream.json and docs/bench/stream.png.
Usage (under the heavy lock): python scripts/bench_stream.py [--tokens 128] [--rounds 3] [--no-direct] [--no-serve-llm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import MODELS, chorus_deployment, direct_ingress_url, pyplot, summary, tiny_model, write

LEVELS = (1, 32)
MAX_MODEL_LEN = 1024
KV_BYTES = 256 << 20
CORES = "0"
# chorus's `streaming:` policies compared: the default (Ray Serve LLM's 50 ms window, widened
# while a host sends many streams at once), and Ray Serve LLM's fixed 50 ms window.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "fixed 50 ms": {"host_messages_per_s": None},
}
QUESTION = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


async def one_stream(client: Any, model: str, tokens: int) -> tuple[float, int, float]:
    """Time to the first token, tokens, and the longest pause between two arrivals of text after
    the first (what a reader of the stream sees as a stall)."""
    t0 = time.perf_counter()
    first: float | None = None
    last, gap = 0.0, 0.0
    count = 0
    stream = await client.chat.completions.create(
        model=model,
        messages=QUESTION,
        max_tokens=tokens,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            now = time.perf_counter() - t0
            if first is None:
                first = now
            else:
                gap = max(gap, now - last)
            last = now
        if chunk.usage is not None:
            count = chunk.usage.completion_tokens
    return (first if first is not None else float("nan")), count, gap


async def level(base_url: str, model: str, concurrency: int, tokens: int, rounds: int) -> dict[str, Any]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
    await one_stream(client, model, 8)  # warm: the first request compiles and caches
    best: dict[str, Any] | None = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, model, tokens) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        total = sum(n for _, n, _ in results)
        if total != tokens * concurrency:
            raise RuntimeError(f"{model}: got {total} tokens, expected {tokens * concurrency}")
        run = {
            "tokens_per_s": total / wall,
            "wall_s": wall,
            "ttft_s": summary([f for f, _, _ in results]),
            "longest_pause_s": summary([g for _, _, g in results]),
        }
        if best is None or run["tokens_per_s"] > best["tokens_per_s"]:
            best = run
    await client.close()
    assert best is not None
    return best


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vllm_server(port: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(MODELS / "tiny-qwen2"), "--served-model-name", "tiny",
        "--dtype", "float32", "--max-model-len", str(MAX_MODEL_LEN), "--max-num-seqs", "64",
        "--enforce-eager", "--kv-cache-memory-bytes", str(KV_BYTES),
        "--host", "127.0.0.1", "--port", str(port), "--disable-uvicorn-access-log",
    ]  # fmt: skip
    env = os.environ | {"VLLM_CPU_OMP_THREADS_BIND": CORES, "VLLM_LOGGING_LEVEL": "WARNING"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM's server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet: poll again until the deadline
        time.sleep(0.5)  # readiness polling of a child process, bounded by the deadline
    raise TimeoutError(f"vLLM's server not ready within {timeout_s:.0f} s")


def measure(base_url: str, model: str, tokens: int, rounds: int) -> dict[str, Any]:
    out = {}
    for c in LEVELS:
        out[str(c)] = asyncio.run(level(base_url, model, c, tokens, rounds))
        print(f"    {c:>2} streams: {out[str(c)]['tokens_per_s']:8.1f} tok/s  "
              f"TTFT p50 {out[str(c)]['ttft_s']['p50'] * 1000:6.1f} ms  "
              f"longest pause p50 {out[str(c)]['longest_pause_s']['p50'] * 1000:6.1f} ms", flush=True)  # fmt: skip
    return out


def vllm_run(tokens: int, rounds: int) -> dict[str, Any]:
    port = free_port()
    print("vLLM's own OpenAI server:", flush=True)
    proc = vllm_server(port)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", proc)
        return measure(f"http://127.0.0.1:{port}/v1", "tiny", tokens, rounds)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def chorus_config(policy: dict[str, Any]) -> dict[str, Any]:
    return {
        "models": [tiny_model("tiny", max_num_seqs=64, kv_cache_memory_bytes=KV_BYTES)],
        "roles": {"generalist": "tiny"},
        "server": {"port": 0},
        "streaming": policy,
    }


def direct_child(tokens: int, rounds: int, out: str) -> None:
    """In a child process whose Ray starts with direct ingress: the default window, straight to
    the orchestrator replica's own HTTP port (one Ray hop per stream message fewer)."""
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = CORES
    with chorus_deployment(chorus_config(next(iter(VARIANTS.values())))):
        Path(out).write_text(json.dumps(measure(direct_ingress_url(), "tiny", tokens, rounds)))


def direct_run(tokens: int, rounds: int) -> dict[str, Any]:
    print(f"chorus, {next(iter(VARIANTS))}, Serve's direct ingress (HTTP straight to the orchestrator replica):", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "direct.json"
        env = {**os.environ, "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}
        cmd = [sys.executable, __file__, "--tokens", str(tokens), "--rounds", str(rounds), "--direct-out", str(out)]
        subprocess.run(cmd, env=env, check=True, timeout=1200)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def serve_llm_child(tokens: int, rounds: int, out: str) -> None:
    """In a child process with a Ray of its own: Ray Serve LLM's OpenAI app over the same model,
    engine settings and core, through Serve's proxy on a free loopback port."""
    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = CORES
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False, logging_level="error")
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = LLMConfig(
            model_loading_config={"model_id": "tiny", "model_source": str(MODELS / "tiny-qwen2")},
            engine_kwargs={"dtype": "float32", "max_model_len": MAX_MODEL_LEN, "max_num_seqs": 64,
                           "enforce_eager": True, "kv_cache_memory_bytes": KV_BYTES},
            placement_group_config={"bundles": [{"CPU": 1}]},
            deployment_config={"num_replicas": 1},
            runtime_env={"env_vars": {"VLLM_CPU_OMP_THREADS_BIND": CORES}},
        )  # fmt: skip
        serve.run(build_openai_app({"llm_configs": [config]}), blocking=False)
        Path(out).write_text(json.dumps(measure(f"http://127.0.0.1:{port}/v1", "tiny", tokens, rounds)))
    finally:
        serve.shutdown()
        ray.shutdown()


def serve_llm_run(tokens: int, rounds: int) -> dict[str, Any]:
    print("Ray Serve LLM's OpenAI application (what a Ray user would deploy instead):", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "serve_llm.json"
        cmd = [sys.executable, __file__, "--tokens", str(tokens), "--rounds", str(rounds), "--serve-llm-out", str(out)]
        subprocess.run(cmd, check=True, timeout=1200)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-direct", action="store_true", help="skip the direct-ingress phase")
    ap.add_argument("--no-serve-llm", action="store_true", help="skip the Ray Serve LLM phase")
    ap.add_argument("--direct-out", help=argparse.SUPPRESS)  # the direct-ingress child's output file
    ap.add_argument("--serve-llm-out", help=argparse.SUPPRESS)  # the Ray Serve LLM child's output file
    args = ap.parse_args()
    if args.direct_out:
        direct_child(args.tokens, args.rounds, args.direct_out)
        return
    if args.serve_llm_out:
        serve_llm_child(args.tokens, args.rounds, args.serve_llm_out)
        return

    vllm_runs = [vllm_run(args.tokens, args.rounds)]
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = CORES  # Ray's workers inherit the driver's environment
    chorus: dict[str, dict[str, Any]] = {}
    for label, policy in VARIANTS.items():
        print(f"chorus, streams coalesced per {label} (hosted model through vLLM's layer in a ModelHost):", flush=True)
        with chorus_deployment(chorus_config(policy)) as dep:
            chorus[label] = measure(dep.url, "tiny", args.tokens, args.rounds)
    if not args.no_direct:
        chorus[f"{next(iter(VARIANTS))}, direct ingress"] = direct_run(args.tokens, args.rounds)
    serve_llm = None if args.no_serve_llm else serve_llm_run(args.tokens, args.rounds)
    vllm_runs.append(vllm_run(args.tokens, args.rounds))
    vllm = {c: max((run[c] for run in vllm_runs), key=lambda r: r["tokens_per_s"]) for c in vllm_runs[0]}

    ratios = {
        label: {c: runs[c]["tokens_per_s"] / vllm[c]["tokens_per_s"] for c in vllm} for label, runs in chorus.items()
    }
    for label, by_level in ratios.items():
        for c, r in by_level.items():
            print(f"  {label:>26}, {c:>2} streams: chorus / vLLM = {r:.2f}x")
    others: dict[str, dict[str, Any]] = {}
    if serve_llm is not None:
        others["Ray Serve LLM"] = serve_llm
        ratios_serve_llm = {c: serve_llm[c]["tokens_per_s"] / vllm[c]["tokens_per_s"] for c in vllm}
        chorus_over_serve_llm = {c: chorus["default"][c]["tokens_per_s"] / serve_llm[c]["tokens_per_s"] for c in vllm}
        for c in vllm:
            print(f"  Ray Serve LLM, {c:>2} streams: / vLLM = {ratios_serve_llm[c]:.2f}x; "
                  f"chorus (default) / Ray Serve LLM = {chorus_over_serve_llm[c]:.2f}x")  # fmt: skip
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    xs = list(range(len(LEVELS)))
    width = 0.8 / (1 + len(chorus) + len(others))
    ax.bar([x - 0.4 + width / 2 for x in xs], [vllm[str(c)]["tokens_per_s"] for c in LEVELS], width,
           label="vLLM OpenAI server")  # fmt: skip
    for i, (label, runs) in enumerate(others.items(), start=1):
        pos = [x - 0.4 + width * (i + 0.5) for x in xs]
        ax.bar(pos, [runs[str(c)]["tokens_per_s"] for c in LEVELS], width, label=label, color="#999")
        for p, c in zip(pos, LEVELS, strict=True):
            r = runs[str(c)]["tokens_per_s"] / vllm[str(c)]["tokens_per_s"]
            ax.text(p, runs[str(c)]["tokens_per_s"], f"{r:.2f}x", ha="center", va="bottom")
    for i, (label, runs) in enumerate(chorus.items(), start=1 + len(others)):
        pos = [x - 0.4 + width * (i + 0.5) for x in xs]
        ax.bar(pos, [runs[str(c)]["tokens_per_s"] for c in LEVELS], width, label=f"chorus, {label}")
        for p, c in zip(pos, LEVELS, strict=True):
            ax.text(p, runs[str(c)]["tokens_per_s"], f"{ratios[label][str(c)]:.2f}x", ha="center", va="bottom")
    ax.set_xticks(xs, [f"{c} stream{'s' if c > 1 else ''}" for c in LEVELS])
    ax.set_ylabel("streamed tokens / s")
    ax.set_title(f"Hosted-model stream, tiny-qwen2, {args.tokens} tokens each (2-core CPU)")
    ax.legend(fontsize=8)
    write(
        "stream",
        {"tokens": args.tokens, "rounds": args.rounds, "vllm": vllm, "vllm_runs": vllm_runs, "chorus": chorus,
         "ratio": ratios, "variants": VARIANTS, "ray_serve_llm": serve_llm,
         "ray_serve_llm_ratio": None if serve_llm is None else {
             "over_vllm": {c: serve_llm[c]["tokens_per_s"] / vllm[c]["tokens_per_s"] for c in vllm},
             "chorus_default_over_ray_serve_llm": {
                 c: chorus["default"][c]["tokens_per_s"] / serve_llm[c]["tokens_per_s"] for c in vllm}}},
        fig,
    )


if __name__ == "__main__":
    main()
