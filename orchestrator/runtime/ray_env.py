"""The environment a Ray cluster started for chorus carries. No Ray import here: it must be set
before the process that starts Ray imports it.

- `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`: Ray binds every server it starts (GCS, raylet, agents,
  Serve's controller) to the node's address; with this set the node's address is loopback, so a
  local chorus listens on 127.0.0.1 only (Ray's own switch for single-machine clusters). Only for
  a cluster that `chorus up` starts itself.
- `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`: Serve's proxy loads
  `orchestrator.runtime.proxy_guard`, so a replica lost under a request reads as 503.
"""

from __future__ import annotations

import os

PROXY_CALLBACK = ("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", "orchestrator.runtime.proxy_guard:middlewares")
LOOPBACK = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def ray_env(loopback: bool = True) -> dict[str, str]:
    """Variables for the process that starts a Ray cluster for chorus (before it imports ray)."""
    return dict([PROXY_CALLBACK, LOOPBACK] if loopback else [PROXY_CALLBACK])


def apply_ray_env(loopback: bool = True) -> None:
    """Set `ray_env()` in this process, keeping any value the user set; call before `import ray`."""
    for key, value in ray_env(loopback).items():
        os.environ.setdefault(key, value)
