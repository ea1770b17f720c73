"""Start-up: a ModelHost's engine start against a bare AsyncLLM start of the same model, and
`chorus up` from the command line against its slowest engine's start.

    flock /tmp/chorus-heavy.lock timeout 900 env PYTHONPATH=$PWD .venv/bin/python scripts/bench_startup.py

Side by side, alternated, same engine arguments (VLLMEngine.engine_args() for the same model):
* bare: a fresh Python process (no Ray) imports vLLM and starts `AsyncLLM.from_engine_args`;
* host: a ModelHost Ray actor on a running local Ray cluster starts the same engine; the
  host's StartTimes split its start into process up → vLLM imported → engine ready.
Reported per run: process to ready, import, and engine start (AsyncLLM.from_engine_args →
ready), and the ratio host/bare of the engine start (target ≤ 1.2).
Then `chorus up -c configs/cpu-demo.yaml` as a user runs it (its own Ray, Serve's proxy on port
8000), `--up-runs` times: seconds from the command to "chorus is up" against the slowest
engine's start in its printed timeline (target ≤ that + 10 s); `chorus down` after each.
Writes docs/bench/startup.json and docs/bench/startup.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cluster.spec import ModelSpec  # noqa: E402

MODEL = ModelSpec(
    name="tiny",
    source=str(ROOT / ".cache/models/tiny-qwen2"),
    dtype="float32",
    max_model_len=1024,
    max_num_seqs=16,
    kv_cache_memory_bytes=128 << 20,
)


def bare_child(cpus: str) -> None:
    """Runs in a fresh process: import vLLM, start AsyncLLM, print marks as JSON."""
    born = time.time()
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpus
    from vllm.v1.engine.async_llm import AsyncLLM

    from serving.engines.vllm_engine import VLLMEngine

    imported = time.time()
    llm = AsyncLLM.from_engine_args(VLLMEngine(MODEL).engine_args())
    ready = time.time()
    llm.shutdown()
    print(json.dumps({"process_up": born, "imported": imported, "ready": ready}), flush=True)


def run_bare(cpus: str) -> dict[str, float]:
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, __file__, "--bare-child", "--cpus", cpus],
        check=True, capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "VLLM_LOGGING_LEVEL": "WARNING"},
    )
    marks = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "to_ready_s": marks["ready"] - t0,
        "process_s": marks["process_up"] - t0,
        "import_s": marks["imported"] - marks["process_up"],
        "engine_start_s": marks["ready"] - marks["imported"],
    }


def run_host(cpus: str) -> dict[str, float]:
    import ray

    from serving.engines.vllm_engine import EngineSettings, VLLMEngine
    from serving.host.model_host import ModelHost

    t0 = time.time()
    host = ray.remote(ModelHost).options(num_cpus=1).remote(MODEL, 0, VLLMEngine, {"settings": EngineSettings(cpus=cpus)})
    try:
        times = ray.get(host.start.remote(), timeout=600)
        ray.get(host.shutdown.remote(), timeout=60)
    finally:
        ray.kill(host)
    imported = times.phases["vllm imported"]
    return {
        "to_ready_s": times.ready - t0,
        "process_s": times.process_up - t0,
        "import_s": imported - times.engine_start,
        "engine_start_s": times.phases["engine ready"] - imported,
    }


UP_CONFIG = ROOT / "configs/cpu-demo.yaml"
UP_MARGIN_TARGET_S = 10.0
# A timeline line of `chorus up`: "  smollm2[0]: scheduled 0.0s, …, ready 35.2s (engine start 34.9s)"
ENGINE_LINE = re.compile(r"^\s+\S+\[\d+\]: .*\(engine start ([\d.]+)s\)$")


def run_up(config: Path) -> dict[str, float]:
    """`chorus up` from the command: seconds to "chorus is up", and the slowest engine's own
    start (host process → ready) from the timeline it prints."""
    cli = [sys.executable, "-m", "orchestrator.cli.main"]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CHORUS_HOME": home}
        t0 = time.monotonic()
        up = subprocess.Popen([*cli, "up", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env, cwd=ROOT)  # fmt: skip
        starts: list[float] = []
        up_s: float | None = None
        lines: list[str] = []
        try:
            assert up.stdout is not None
            for line in up.stdout:
                lines.append(line)
                found = ENGINE_LINE.match(line.rstrip())
                if found:
                    starts.append(float(found[1]))
                if line.startswith("chorus is up"):
                    up_s = time.monotonic() - t0
            up.wait(timeout=600)
        finally:
            subprocess.run([*cli, "down"], env=env, cwd=ROOT, capture_output=True, timeout=300, check=False)
    if up_s is None or not starts:
        raise RuntimeError("chorus up did not come up:\n" + "".join(lines[-20:]))
    return {"up_s": up_s, "slowest_engine_start_s": max(starts), "margin_s": up_s - max(starts)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bare-child", action="store_true")
    ap.add_argument("--cpus", default="0-1", help="VLLM_CPU_OMP_THREADS_BIND for both (same binding)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--up-runs", type=int, default=1, help="runs of `chorus up -c configs/cpu-demo.yaml`")
    ap.add_argument("--out", default=str(ROOT / "docs/bench/startup"))
    args = ap.parse_args()
    if args.bare_child:
        bare_child(args.cpus)
        return 0
    import ray

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "VLLM_LOGGING_LEVEL": "WARNING"}})
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "host": []}
    try:
        for r in range(args.rounds):  # alternate, so drift hits both
            for kind in (("bare", "host") if r % 2 == 0 else ("host", "bare")):
                res = run_bare(args.cpus) if kind == "bare" else run_host(args.cpus)
                runs[kind].append(res)
                print(f"round {r} {kind:>4}: " + "  ".join(f"{k} {v:6.2f}" for k, v in res.items()), flush=True)
    finally:
        ray.shutdown()
    med = {k: {f: statistics.median(x[f] for x in v) for f in v[0]} for k, v in runs.items()}
    ratio = med["host"]["engine_start_s"] / med["bare"]["engine_start_s"]
    print(f"\nmedian engine start: host {med['host']['engine_start_s']:.2f}s, bare {med['bare']['engine_start_s']:.2f}s "
          f"→ host/bare {ratio:.2f}× (target ≤ 1.2×)")
    print(f"median process → ready: host {med['host']['to_ready_s']:.2f}s, bare {med['bare']['to_ready_s']:.2f}s")
    ups = []
    for r in range(args.up_runs):
        ups.append(run_up(UP_CONFIG))
        print(f"chorus up {r}: " + "  ".join(f"{k} {v:6.2f}" for k, v in ups[-1].items()), flush=True)
    up = {f: statistics.median(x[f] for x in ups) for f in ups[0]} if ups else None
    if up is not None:
        print(f"median chorus up: {up['up_s']:.1f}s from the command, {up['margin_s']:+.1f}s past the slowest engine's "
              f"start ({up['slowest_engine_start_s']:.1f}s; target ≤ +{UP_MARGIN_TARGET_S:g}s)")
    result = {"model": MODEL.source, "cpus": args.cpus, "runs": runs, "median": med, "engine_start_ratio": ratio,
              "chorus_up": {"config": str(UP_CONFIG.relative_to(ROOT)), "runs": ups, "median": up,
                            "target_margin_s": UP_MARGIN_TARGET_S}}  # fmt: skip
    Path(args.out + ".json").write_text(json.dumps(result, indent=2))
    _plot(med, up, args.out + ".png")
    return 0


def _plot(med: dict[str, dict[str, float]], up: dict[str, float] | None, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 if up else 1, 1, figsize=(7, 4.6 if up else 2.6), squeeze=False)
    ax = axes[0][0]
    parts = [("process_s", "process up"), ("import_s", "import vLLM"), ("engine_start_s", "engine start")]
    for i, kind in enumerate(("bare", "host")):
        left = 0.0
        for j, (key, label) in enumerate(parts):
            ax.barh(i, med[kind][key], left=left, color=f"C{j}", label=label if i == 0 else None)
            left += med[kind][key]
    ax.set_yticks([0, 1], ["bare AsyncLLM", "chorus ModelHost"])
    ax.set_xlabel("seconds from launch (median)")
    ax.legend(loc="lower right", fontsize=8)
    if up:
        ax = axes[1][0]
        ax.barh(1, up["slowest_engine_start_s"], color="C2", label="slowest engine start")
        ax.barh(0, up["up_s"], color="C4", label='command → "chorus is up"')
        target = up["slowest_engine_start_s"] + UP_MARGIN_TARGET_S
        ax.axvline(target, color="k", linestyle="--", label=f"target: engine start + {UP_MARGIN_TARGET_S:g} s")
        ax.set_yticks([0, 1], ["chorus up", "its engine"])
        ax.set_xlabel("seconds (configs/cpu-demo.yaml)")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
