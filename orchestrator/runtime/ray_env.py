"""The environment a Ray cluster started for chorus carries. No Ray import here: it must be set
before the process that starts Ray imports it.

- `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`: Ray binds every server it starts (GCS, raylet, agents,
  Serve's controller) to the node's address; with this set the node's address is loopback, so a
  local chorus listens on 127.0.0.1 only (Ray's own switch for single-machine clusters). Only for
  a cluster that `chorus up` starts itself.
- `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`: Serve's proxy loads
  `orchestrator.runtime.proxy_guard`, so a replica lost under a request reads as 503.
- Two of Serve's throughput settings (`RAY_SERVE_THROUGHPUT_OPTIMIZED=1` turns them on with
  others): the orchestrator's code runs on its replica's event loop instead of a thread of its
  own (chorus's request path never blocks its loop), and handles reach replicas over Serve's
  gRPC data plane. Measured with an instant engine (`scripts/bench_capacity.py`, 2 cores): the
  orchestrator adds 3.45 ms per call over the host instead of 5.69, 395 calls/s per replica
  instead of 314. Left out: direct ingress (HTTP would move off `server.port` onto each
  replica's own port) and the handle's router on its caller's loop (a handle could then not be
  used outside an event loop: the CLI, the Python client and a batch job's driver call it
  synchronously). Every process of the cluster and every driver reads them when it imports
  Serve: they go to the process that starts Ray and to chorus's own drivers. (They were off
  for a while: a killed only replica's 503 missed its 1 s bound in full runs with them, and
  later without them too. The cause was Ray holding a call to the dead host for the GCS's
  death notice, fixed by `ray_replica.CALLER_ENV`; with both, the 503 came in 0.09-0.13 s.)
"""

from __future__ import annotations

import os

PROXY_CALLBACK = ("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", "orchestrator.runtime.proxy_guard:middlewares")
LOOPBACK = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
SERVE_THROUGHPUT = (
    ("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "0"),
    ("RAY_SERVE_USE_GRPC_BY_DEFAULT", "1"),
)


def ray_env(loopback: bool = True) -> dict[str, str]:
    """Variables for the process that starts a Ray cluster for chorus, and for chorus's drivers
    (before they import ray)."""
    return dict([PROXY_CALLBACK, *SERVE_THROUGHPUT, *([LOOPBACK] if loopback else [])])


def apply_ray_env(loopback: bool = True) -> None:
    """Set `ray_env()` in this process, keeping any value the user set; call before `import ray`."""
    for key, value in ray_env(loopback).items():
        os.environ.setdefault(key, value)
