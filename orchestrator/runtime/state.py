"""Where a running chorus is recorded, so `chorus ask/status/down` find it from any shell.

One JSON file, `$CHORUS_HOME/state.json` (default `~/.chorus`): the Ray address, the HTTP URL,
the config, and the pid of the process that owns the local Ray cluster (when chorus started one).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel


class RunState(BaseModel):
    address: str
    url: str | None = None
    config: str
    pid: int | None = None  # the `chorus up` keeper process; None when joined to an existing cluster
    ray_auth_mode: str | None = None  # RAY_AUTH_MODE the cluster runs with; clients must match it
    job_server: str | None = None  # the local cluster's Ray job server (its dashboard), for `chorus submit`


def home() -> Path:
    return Path(os.environ.get("CHORUS_HOME", Path.home() / ".chorus"))


def state_path() -> Path:
    return home() / "state.json"


def log_path() -> Path:
    return home() / "chorus.log"


def read_state() -> RunState | None:
    try:
        return RunState.model_validate_json(state_path().read_text())
    except (OSError, ValueError):
        return None


def write_state(state: RunState) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    tmp.replace(path)


def clear_state() -> None:
    state_path().unlink(missing_ok=True)
