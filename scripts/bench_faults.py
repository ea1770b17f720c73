"""Benchmark 6: a replica killed under load.

A closed loop of 8 concurrent HTTP clients over 2 replicas of the tiny Qwen2 (32 greedy tokens
per request). At t = --kill-at seconds, replica 0's process is killed with SIGKILL. Ray restarts
the process in its placement bundle, chorus's supervisor starts its engine and routes to it again
once a probe passes. Reported: requests/s and errors/s per second, requests lost, the calls in
flight on the killed replica, time to recovery (replica healthy and serving again) against the
engine start time measured at deploy (same process start, vLLM import and engine start).
Target: lost ≤ in flight on the killed replica; recovery ≤ engine start + 5 s.

    python scripts/bench_faults.py [--kill-at 10] [--after 15] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import time
from typing import Any

import httpx
from benchlib import chorus_deployment, pyplot, summary, tiny_model, write

MAX_TOKENS = 32


def config() -> dict[str, Any]:
    return {
        "models": [tiny_model("tiny", max_num_seqs=16)],
        "roles": {"generalist": "tiny"},
        "placement": {"tiny": {"replicas": 2, "gpu_share": 0, "num_cpus": 1}},
        "sampling": {"max_tokens": MAX_TOKENS, "temperature": 0.0},
        "healing": {"probe_interval_s": 0.25, "probe_timeout_s": 5},
        "server": {"port": 0},
    }


async def run(kill_at: float, after: float, clients: int, limit_s: float) -> dict[str, Any]:
    import ray

    starts: list[float] = []

    def progress(line: str) -> None:
        print(f"  [deploy] {line}", flush=True)
        # "tiny[0]: scheduled 0.0s, process up 0.2s, …, ready 24.7s (engine start 24.5s)"
        m = re.search(r"tiny\[\d\]: .*, ready ([\d.]+)s", line)
        if m:
            starts.append(float(m.group(1)))

    with chorus_deployment(config(), progress=progress) as dep:
        base = str(dep.url)
        host = dep.hosts["tiny"][0]
        pid = ray.get(host.process_id.remote(), timeout=30)
        body = {"model": "tiny", "messages": [{"role": "user", "content": "Tell me about the sea."}]}
        records: list[tuple[float, float, int]] = []  # (start, end, HTTP status) relative to t0
        states: list[tuple[float, str, int]] = []  # (t, replica 0's state, its completed count)
        stop = asyncio.Event()
        t0 = time.monotonic()
        marks: dict[str, float] = {}

        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients + 4)) as http:

            async def client() -> None:
                while not stop.is_set():
                    s = time.monotonic() - t0
                    try:
                        r = await http.post(f"{base}/chat/completions", json=body)
                        code = r.status_code
                    except httpx.HTTPError:
                        code = 0
                    records.append((s, time.monotonic() - t0, code))

            async def watch() -> None:
                while not stop.is_set():
                    r = await http.get(base.removesuffix("/v1") + "/health/replicas")
                    rep = {h["replica"]: h for h in r.json()["hosts"]}[0]
                    states.append((time.monotonic() - t0, rep["state"], rep["completed"]))
                    late = "killed" in marks and time.monotonic() - t0 > marks["killed"] + 0.5
                    if late and "recovered" not in marks and rep["state"] == "healthy" and rep["completed"] > 0:
                        marks["recovered"] = time.monotonic() - t0
                    await asyncio.sleep(0.1)  # the timeline's resolution

            async def fault() -> None:
                await asyncio.sleep(kill_at)  # the scenario's schedule: kill at t = kill_at
                status = await host.status.remote()
                marks["in_flight"] = status.running + status.waiting
                os.kill(pid, signal.SIGKILL)
                marks["killed"] = time.monotonic() - t0
                marks["killed_wall"] = time.time()
                print(f"  killed replica 0 at t={marks['killed']:.1f}s with {marks['in_flight']} call(s) in flight on it")
                while "recovered" not in marks and time.monotonic() - t0 < limit_s:  # noqa: ASYNC110 - polls the watcher's mark under the scenario's time limit
                    await asyncio.sleep(0.1)
                if "recovered" in marks:  # the restarted process's own start, as it timed it
                    # start() on a ready host returns its successful start's times, starting nothing.
                    marks["restart"] = (await host.start.remote()).model_dump()
                await asyncio.sleep(after)  # keep the loop running after recovery, for the timeline
                stop.set()

            await asyncio.gather(fault(), watch(), *(client() for _ in range(clients)))

    killed = marks["killed"]
    horizon = int(max(e for _, e, _ in records)) + 1
    ok_per_s = [sum(1 for _, e, c in records if c == 200 and sec <= e < sec + 1) for sec in range(horizon)]
    err_per_s = [sum(1 for _, e, c in records if c != 200 and sec <= e < sec + 1) for sec in range(horizon)]
    lost = [r for r in records if r[2] != 200 and r[1] >= killed]
    engine_start = summary(starts)["max"]
    recovery = marks.get("recovered", float("nan")) - killed
    before = [c for sec, c in enumerate(ok_per_s) if 2 <= sec < int(killed)]
    after_rec = [c for sec, c in enumerate(ok_per_s) if sec >= int(marks.get("recovered", horizon)) + 1]
    # Recovery split: Ray restarting the process, the supervisor noticing and starting its
    # engine, the engine's own start (under the surviving replica's load), and the engine ready
    # until the fleet routes to it again (a probe, then the board sync).
    split: dict[str, float] = {}
    if "restart" in marks:
        r, kill_wall = marks["restart"], marks["killed_wall"]
        split = {
            "process_restart_s": r["process_up"] - kill_wall,
            "until_engine_start_s": r["engine_start"] - r["process_up"],
            "engine_start_s": r["ready"] - r["engine_start"],
            "ready_to_routed_s": recovery - (r["ready"] - kill_wall),
        }
    restart_start = split.get("engine_start_s", float("nan"))
    result = {
        "recovery_split_s": split,
        "restart_engine_start_s": restart_start,
        "target_recovery_restart_s": restart_start + 5,
        "met_recovery_target_restart": recovery <= restart_start + 5,
        "clients": clients,
        "max_tokens": MAX_TOKENS,
        "kill_at_s": killed,
        "in_flight_on_killed": marks["in_flight"],
        "requests": len(records),
        "lost": len(lost),
        "lost_statuses": sorted({c for _, _, c in lost}),
        "recovery_s": recovery,
        "engine_start_s": engine_start,
        "target_recovery_s": engine_start + 5,
        "met_lost_target": len(lost) <= marks["in_flight"],
        "met_recovery_target": recovery <= engine_start + 5,
        "rps_before_kill": sum(before) / max(1, len(before)),
        "rps_after_recovery": sum(after_rec) / max(1, len(after_rec)),
        "timeline": {"ok_per_s": ok_per_s, "errors_per_s": err_per_s},
        "replica0_states": [(round(t, 2), s) for t, s, _ in states],
    }
    print(
        f"lost {len(lost)} request(s) (in flight on the killed replica: {marks['in_flight']}); "
        f"recovered in {recovery:.1f}s (engine start at deploy {engine_start:.1f}s, target ≤ {engine_start + 5:.1f}s); "
        f"{result['rps_before_kill']:.1f} req/s before, {result['rps_after_recovery']:.1f} after"
    )
    if split:
        print(
            "recovery split: "
            + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f}s" for k, v in split.items())
            + f"; against the restart's own engine start + 5 s = {restart_start + 5:.1f}s: "
            + ("met" if result["met_recovery_target_restart"] else "missed")
        )
    plot(result, states)
    return result


def plot(result: dict[str, Any], states: list[tuple[float, str, int]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    ok, err = result["timeline"]["ok_per_s"], result["timeline"]["errors_per_s"]
    xs = list(range(len(ok)))
    ax.plot(xs, ok, label="requests/s (200)", color="tab:blue")
    ax.bar(xs, err, label="errors/s", color="tab:red", alpha=0.7)
    ax.axvline(result["kill_at_s"], color="k", ls="--", label="replica 0 killed")
    if result["recovery_s"] == result["recovery_s"]:  # not NaN
        ax.axvline(result["kill_at_s"] + result["recovery_s"], color="tab:green", ls="--", label="replica 0 serving again")
    down = [t for t, s, _ in states if s != "healthy"]
    if down:
        ax.axvspan(min(down), max(down), color="tab:orange", alpha=0.15, label="replica 0 not healthy")
    ax.set_xlabel("seconds")
    ax.set_ylabel("per second")
    ax.set_title(
        f"kill 1 of 2 replicas under {result['clients']} closed-loop clients: lost {result['lost']} "
        f"(in flight {result['in_flight_on_killed']}), recovery {result['recovery_s']:.1f}s"
    )
    ax.legend(loc="lower left", fontsize=8)
    write("faults", result, fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-at", type=float, default=10.0)
    parser.add_argument("--after", type=float, default=10.0, help="seconds to keep the loop running after recovery")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--limit", type=float, default=240.0, help="give up waiting for recovery after this")
    args = parser.parse_args()
    asyncio.run(run(args.kill_at, args.after, args.clients, args.limit))


if __name__ == "__main__":
    main()
