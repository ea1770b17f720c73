"""Submitting a batch job as a Ray Job and following it: what `chorus submit` and `chorus jobs` use.

The job server is the Ray dashboard of the cluster. Where it is:

- `--address http://HOST:8265` (or https): that job server, directly; how a remote cluster is reached;
- `--address HOST:PORT` (a Ray cluster address, not Ray Client): this process connects to that cluster
  and Ray tells it where the cluster's dashboard listens;
- no address: the job server `chorus up` recorded for its local cluster, else the dashboard of the
  cluster it recorded it joined.

The job itself is `python -m orchestrator.jobs.run INPUT --out DIR …`, the same command
`ray job submit -- …` runs; its progress comes back through its log (`orchestrator.jobs.progress`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.job_submission import JobDetails, JobStatus, JobSubmissionClient

from cluster.errors import NotRunning
from orchestrator.jobs.progress import Progress, parse_progress
from orchestrator.runtime.state import read_state

KIND_KEY, KIND = "chorus", "batch"  # metadata that marks chorus's own jobs among a cluster's Ray Jobs
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}


@dataclass(frozen=True)
class JobServer:
    client: JobSubmissionClient
    address: str
    local: bool  # the job runs on this machine: paths and this Python are valid there


def _auth(mode: str | None) -> None:
    if mode:
        from orchestrator.client import set_ray_auth_mode

        set_ray_auth_mode(mode)


def job_server(address: str | None = None) -> JobServer:
    """The job server of the given cluster, or of the one `chorus up` recorded."""
    state = read_state()
    if state is not None and "RAY_AUTH_MODE" not in os.environ:
        _auth(state.ray_auth_mode)
    if address is None and state is not None and state.job_server:
        address = state.job_server
    try:
        if address is not None and address.startswith(("http://", "https://")):
            return JobServer(JobSubmissionClient(address), address, local=_is_local(address))
        from orchestrator.client import ray_connect

        ray_connect(address)  # a Ray cluster address: Ray knows where its dashboard listens
        client = JobSubmissionClient()
    except ConnectionError as exc:
        raise NotRunning(f"no Ray job server at {address or 'the recorded cluster'}: {exc}") from None
    url = client.get_address()
    return JobServer(client, url, local=_is_local(url))


def _is_local(url: str) -> bool:
    host = url.split("://", 1)[-1].split(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1")


def job_argv(
    input: str,
    out: str,
    model: str | None,
    *,
    shard_rows: int | None = None,
    max_in_flight: int | None = None,
    python: str = "python",
) -> list[str]:
    argv = [python, "-m", "orchestrator.jobs.run", input, "--out", out]
    if model:
        argv += ["--model", model]
    if shard_rows:
        argv += ["--shard-rows", str(shard_rows)]
    if max_in_flight:
        argv += ["--max-in-flight", str(max_in_flight)]
    return argv


def submit(server: JobServer, argv: Sequence[str], *, input: str, out: str, model: str | None) -> str:
    """Submit the job; its id."""
    job_id = f"chorus-batch-{uuid.uuid4().hex[:10]}"
    metadata = {KIND_KEY: KIND, "input": input, "out": out, "model": model or ""}
    return str(server.client.submit_job(entrypoint=shlex.join(argv), submission_id=job_id, metadata=metadata))


def python_for(server: JobServer) -> str:
    """The interpreter the job runs with: this one on a local cluster (it has chorus), else `python`."""
    return sys.executable if server.local else "python"


def chorus_jobs(server: JobServer) -> list[JobDetails]:
    jobs = [j for j in server.client.list_jobs() if (j.metadata or {}).get(KIND_KEY) == KIND]
    return sorted(jobs, key=lambda j: j.start_time or 0)


def last_progress_of(server: JobServer, job_id: str) -> Progress | None:
    found = None
    for line in server.client.get_job_logs(job_id).splitlines():
        found = parse_progress(line) or found
    return found


def follow(
    server: JobServer,
    job_id: str,
    on_progress: Callable[[Progress], None],
    on_line: Callable[[str], None],
    timeout_s: float | None = None,
) -> JobStatus:
    """Relay the job's log until it ends: progress lines to `on_progress`, the rest to `on_line`.
    With `timeout_s`, a job still running then raises TimeoutError (it goes on)."""

    async def tail() -> None:
        pending = ""
        async for chunk in server.client.tail_job_logs(job_id):
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                progress = parse_progress(line)
                if progress is not None:
                    on_progress(progress)
                elif line.strip():
                    on_line(line)
        if pending.strip():
            on_line(pending)

    # The SDK logs the normal end of a log tail ("WebSocket closed for job …") at INFO on a logger
    # it sets to INFO itself; that line is noise under chorus's own progress.
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)
    asyncio.run(asyncio.wait_for(tail(), timeout_s))
    status: JobStatus = server.client.get_job_status(job_id)
    return status


def describe(job: JobDetails) -> dict[str, Any]:
    meta = job.metadata or {}
    return {
        "id": job.submission_id or job.job_id,
        "status": str(job.status.value if hasattr(job.status, "value") else job.status),
        "model": meta.get("model", ""),
        "input": Path(meta.get("input", "")).name,
        "out": meta.get("out", ""),
    }
