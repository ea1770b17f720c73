"""The process `chorus up` leaves behind when it starts its own local Ray cluster.

It owns that cluster (so `chorus down` stops exactly it, never another Ray on the machine),
deploys the config, prints progress on stdout for `chorus up` to relay, records the run
state, and waits for SIGTERM/SIGINT to tear everything down.

    python -m orchestrator.cli.keeper CONFIG [--num-cpus N] [--num-gpus N]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from orchestrator.runtime.ray_env import apply_ray_env
from orchestrator.runtime.state import RunState, clear_state, write_state
from orchestrator.service.config import load_config

READY = "chorus-ready"


def logical_cpus(config_cpus: float) -> int:
    # Engines mostly wait on each other; declare at least what the placement asks for.
    return max(os.cpu_count() or 1, int(config_cpus + 0.999) + 1)


def start_local_ray(num_cpus: int, num_gpus: int | None, **kw: Any) -> str:
    """Start a new local Ray cluster owned by this process, listening on loopback only; returns
    its address. Call before anything in this process imports ray."""
    apply_ray_env(loopback=True)
    import ray

    from orchestrator.runtime.hosts import NAMESPACE

    ctx = ray.init(
        address="local",  # always a new cluster, owned by this process, never someone else's
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        namespace=NAMESPACE,
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        log_to_driver=False,
        logging_level=logging.WARNING,
        **kw,
    )
    return str(ctx.address_info["gcs_address"])  # type: ignore[attr-defined]  # a RayContext, typed as its base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.cli.keeper")
    parser.add_argument("config")
    parser.add_argument("--num-cpus", type=int)
    parser.add_argument("--num-gpus", type=int, help="declare this many GPUs (default: what Ray detects)")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    config = load_config(args.config)
    wanted = sum(config.placement_of(m.name).num_cpus * config.placement_of(m.name).replicas for m in config.models)
    began = time.monotonic()
    address = start_local_ray(args.num_cpus or logical_cpus(wanted), args.num_gpus)
    import ray

    from orchestrator.runtime.deploy import deploy

    say(f"started a local Ray cluster at {address} in {time.monotonic() - began:.1f}s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    dep = deploy(config, progress=say)
    try:
        write_state(
            RunState(
                address=address,
                url=dep.url,
                config=os.path.abspath(args.config),
                pid=os.getpid(),
                # A new local cluster turns token authentication on; its clients must too.
                ray_auth_mode=os.environ.get("RAY_AUTH_MODE"),
            )
        )
        say(f"{READY} {dep.url}")
        # `chorus up` stops reading here; later output goes to the log only.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        stop.wait()
    finally:
        dep.shutdown()
        clear_state()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
