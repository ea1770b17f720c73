"""The `chorus` command.

    chorus up -c CONFIG [--address ADDR]   start (or join) Ray, place the models, deploy the Serve app
    chorus ask [-m NAME] QUESTION          run a pattern or a hosted model; print answer + trace
    chorus status                          models, replicas, health, load
    chorus down                            stop what `chorus up` started
    chorus plan --gpus auto|SPEC -c CONFIG place a fleet on GPUs (see `chorus plan -h`)
    chorus serve-config -c CONFIG          a Serve config file for `serve deploy` / KubeRay
    chorus eval -c CONFIG --data FILE      accuracy and cost of patterns (see `chorus eval -h`)
    chorus submit FILE [-m NAME] [--out DIR] run a batch file as a Ray Job (see `chorus submit -h`)
    chorus jobs [status|logs|stop ID]      batch jobs on the cluster
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from cluster.errors import ChorusError
from orchestrator.cli import eval_command, jobs_command, plan_command, serve_config
from orchestrator.runtime.ray_env import apply_ray_env
from orchestrator.runtime.state import RunState, clear_state, log_path, read_state, write_state


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- up ---------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from orchestrator.service.config import load_config

    load_config(args.config)  # fail fast, with the file and field, before starting anything
    state = read_state()
    if state and (state.pid is None or _pid_alive(state.pid)):
        print(f"chorus is already up ({state.url or state.address}); run `chorus down` first", file=sys.stderr)
        return 1
    if args.address:
        return _up_joined(args)
    return _up_local(args)


def _up_local(args: argparse.Namespace) -> int:
    """Start a keeper process that owns a local Ray cluster; relay its progress until ready."""
    from orchestrator.cli.keeper import READY

    log = log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "orchestrator.cli.keeper", args.config]
    if args.num_cpus:
        cmd += ["--num-cpus", str(args.num_cpus)]
    if args.num_gpus is not None:
        cmd += ["--num-gpus", str(args.num_gpus)]
    with open(log, "ab") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, start_new_session=True, text=True
        )
    for raw in proc.stdout or ():
        line = raw.rstrip("\n")
        if line.startswith(READY):
            print(f"chorus is up: {line.removeprefix(READY).strip()}  (logs: {log})")
            return 0
        print(line, flush=True)
    proc.wait()
    print(f"chorus failed to start (exit {proc.returncode}); the end of {log}:", file=sys.stderr)
    print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:]), file=sys.stderr)
    return 1


def _up_joined(args: argparse.Namespace) -> int:
    """Deploy detached actors on an existing cluster and return."""
    from orchestrator.client import ray_connect
    from orchestrator.runtime.deploy import deploy
    from orchestrator.service.config import load_config

    ray_connect(args.address)
    dep = deploy(load_config(args.config), detached=True, progress=lambda s: print(s, flush=True))
    write_state(RunState(address=args.address, url=dep.url, config=str(Path(args.config).resolve())))
    print(f"chorus is up: {dep.url}")
    return 0


# --- ask / status -------------------------------------------------------------------------------


def cmd_ask(args: argparse.Namespace) -> int:
    from orchestrator.client import connect

    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": " ".join(args.question)})
    reply = connect(args.address).ask(args.model, messages, max_tokens=args.max_tokens)
    if args.json:
        print(reply.model_dump_json(indent=2))
        return 0
    print(reply.text.strip())
    print()
    print(render_trace(reply))
    return 0


def render_trace(reply) -> str:  # type: ignore[no-untyped-def]
    t = reply.trace
    rows = [("step", "role", "model", "rep", "prompt", "compl", "queue s", "latency s", "GPU-s", "")]
    for s in t.steps:
        rows.append(
            (
                s.name,
                s.role,
                s.model,
                str(s.replica),
                str(s.prompt_tokens),
                str(s.completion_tokens),
                f"{s.queue_s:.3f}",
                f"{s.latency_s:.3f}",
                f"{s.gpu_seconds:.3f}",
                f"error: {s.error}" if s.error else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"trace of '{t.pattern}' ({t.kind})"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if t.decision is not None:
        # The decision's own fields, those left at their defaults (no early stop, no failures…) omitted.
        shown = t.decision.model_dump(mode="json", exclude_defaults=True, exclude={"kind"})
        lines.append(f"  decision ({t.decision.kind}):")
        lines += [f"    {key}: {json.dumps(value)}" for key, value in shown.items()]
    tot = t.totals
    lines.append(
        f"  total: {tot.model_calls} call(s), {tot.prompt_tokens}+{tot.completion_tokens} tokens, "
        f"{tot.wall_s:.2f}s wall, {tot.engine_seconds:.2f} engine-s, {tot.gpu_seconds:.2f} GPU-s"
    )
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from orchestrator.client import connect

    state = read_state()
    client = connect(args.address)
    status = client.status()
    if state and state.url:
        print(f"HTTP: {state.url}   config: {state.config}")
    rows = [("model", "rep", "state", "restarts", "running", "waiting", "done", "failed", "tok/s", "GPUs", "GPU ids")]
    for h in status.hosts:
        rows.append(
            (
                h.model,
                str(h.replica),
                "healthy" if h.ok else f"{h.state.upper()}: {h.detail}",
                str(h.restarts),
                f"{h.running}/{h.capacity}",
                str(h.waiting),
                str(h.completed),
                str(h.failed),
                f"{h.tokens_per_s:.1f}",
                f"{h.gpus:g}",
                ",".join(h.gpu_ids) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    patterns = [e for e in client.models() if e.kind == "pattern"]
    print("patterns: " + ", ".join(f"{e.id} ({e.pattern_kind})" for e in patterns))
    return 0 if status.ok else 2


# --- down -------------------------------------------------------------------------------------


def cmd_down(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None and not args.address:
        print("chorus is not running (no state in ~/.chorus; pass --address for a shared cluster)")
        return 0
    if state is not None and state.pid is not None:
        return _stop_keeper(state)
    from orchestrator.client import ray_connect
    from orchestrator.runtime.deploy import teardown_named

    address = ray_connect(args.address)
    killed = teardown_named()
    clear_state()
    print(f"stopped {len(killed)} chorus actor(s) on {address}")
    return 0


def _stop_keeper(state: RunState) -> int:
    import signal

    import psutil

    try:
        proc = psutil.Process(state.pid)
    except psutil.NoSuchProcess:
        clear_state()
        print("chorus was not running (stale state removed)")
        return 0
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=180)
    except psutil.TimeoutExpired:
        proc.kill()
        print("chorus did not stop in 180 s; killed it", file=sys.stderr)
    clear_state()
    print("chorus is down")
    return 0


# --- entry ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus", description="Run several LLMs on your GPUs and make them work together.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start chorus: Ray, the models, the orchestrator and the HTTP server")
    up.add_argument("-c", "--config", default="configs/cpu-demo.yaml")
    up.add_argument("--address", help="join this Ray cluster instead of starting a local one")
    up.add_argument("--num-cpus", type=int, help="logical CPUs of the local Ray (default: enough for the config)")
    up.add_argument("--num-gpus", type=int, help="GPUs the local Ray declares (default: detected)")
    up.set_defaults(func=cmd_up)

    ask = sub.add_parser("ask", help="ask a pattern or a hosted model")
    ask.add_argument("question", nargs="+")
    ask.add_argument("-m", "--model", "--pattern", dest="model", default="router", help="pattern or model name")
    ask.add_argument("--system", help="a system message")
    ask.add_argument("--max-tokens", type=int)
    ask.add_argument("--json", action="store_true", help="print the whole reply with its trace as JSON")
    ask.add_argument("--address")
    ask.set_defaults(func=cmd_ask)

    status = sub.add_parser("status", help="models, replicas, health and load")
    status.add_argument("--address")
    status.set_defaults(func=cmd_status)

    down = sub.add_parser("down", help="stop what `chorus up` started")
    down.add_argument("--address", help="remove chorus's actors from this shared cluster")
    down.set_defaults(func=cmd_down)

    plan_command.add_parser(sub)
    serve_config.add_parser(sub)
    eval_command.add_parser(sub)
    jobs_command.add_parsers(sub)
    return parser


def join_local_cluster(args: argparse.Namespace) -> None:
    """A Ray cluster `chorus up` started listens on loopback only (`ray_env`): a driver joining it
    must resolve its own node address the same way, or Ray looks for the cluster at the node's
    outside address and waits there in vain. Set before anything imports Ray."""
    state = read_state()
    if state is not None and state.pid is not None and not getattr(args, "address", None):
        apply_ray_env(loopback=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    join_local_cluster(args)
    try:
        return int(args.func(args) or 0)
    except ChorusError as exc:
        print(f"chorus: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a one-line report here; the traceback goes to the log, not the terminal
        log = log_path()
        log.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log)
        logger = logging.getLogger("chorus.cli")
        logger.addHandler(handler)
        logger.error("chorus %s failed", args.command, exc_info=exc)
        logger.removeHandler(handler)
        print(f"chorus {args.command}: {type(exc).__name__}: {_first_line(exc)} (details in {log})", file=sys.stderr)
        return 1


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "no message"


if __name__ == "__main__":
    sys.exit(main())
