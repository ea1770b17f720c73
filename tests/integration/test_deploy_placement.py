"""A pinned GPU placement deployed for real: ModelHosts land on the planned GPUs of the (fake-GPU)
session cluster, engines sharing a GPU start in different waves, and answers are costed in
GPU-seconds by each replica's share. Engines are scripted (no GPU to run vLLM on here)."""

from __future__ import annotations

import pytest
import ray

from orchestrator.core.schema import ChatRequest
from orchestrator.runtime.deploy import deploy, find_orchestrator
from orchestrator.service.config import parse_config
from serving.types import Message
from tests.fakes.scripted_engine import ScriptedEngine

pytestmark = pytest.mark.integration
NAMESPACE = "chorus-placement-test"

CONFIG = {
    "models": [
        {"name": "small", "source": "Qwen/Qwen2.5-0.5B-Instruct", "dtype": "bfloat16"},
        {"name": "large", "source": "Qwen/Qwen2.5-1.5B-Instruct", "dtype": "bfloat16"},
    ],
    "roles": {"generalist": "small", "reasoner": "large"},
    "placement": {
        "small": {"replicas": 2, "gpu_share": 0.4, "num_cpus": 0.25,
                  "gpus": [{"node": 0, "gpu_ids": [1]}, {"node": 0, "gpu_ids": [2]}]},
        "large": {"replicas": 1, "gpu_share": 0.5, "num_cpus": 0.25, "gpus": [{"node": 0, "gpu_ids": [1]}]},
    },
    "patterns": {"both": {"kind": "fanout", "members": ["generalist", "reasoner"]}},
}


def scripted(config, slot):
    return ScriptedEngine, {"script": lambda request: "fine", "delay_s": 0.05}


@pytest.fixture(scope="module")
def placed(ray_cluster):
    config = parse_config(CONFIG, "placement-test.yaml")
    dep = deploy(config, engine=scripted, http=False, namespace=NAMESPACE, timeout_s=120)
    yield dep
    dep.shutdown()


def test_hosts_land_on_the_planned_gpus(placed):
    head = ray.get_runtime_context().get_node_id()
    where = {
        (m, i): ray.get(h.status.remote(), timeout=30) for m, hosts in placed.hosts.items() for i, h in enumerate(hosts)
    }
    assert {k: s.gpu_ids for k, s in where.items()} == {("small", 0): ["1"], ("small", 1): ["2"], ("large", 0): ["1"]}
    assert all(s.node_id == head and s.ok for s in where.values())
    assert {k: s.gpus for k, s in where.items()} == {("small", 0): 0.4, ("small", 1): 0.4, ("large", 0): 0.5}


def test_engines_sharing_a_gpu_start_in_different_waves(placed):
    waves = [{(s.model, s.replica) for s in wave} for wave in placed.reservation.waves]
    wave_of = {key: n for n, keys in enumerate(waves) for key in keys}
    assert wave_of[("small", 0)] != wave_of[("large", 0)]  # both on GPU 1
    assert len(waves) == 2


def test_answers_are_costed_by_gpu_share(placed):
    orch = find_orchestrator(NAMESPACE)
    reply = orch.chat.remote(ChatRequest(model="both", messages=[Message(role="user", content="hi")])).result(timeout_s=60)
    by_model = {s.model: s for s in reply.trace.steps}
    for model, share in (("small", 0.4), ("large", 0.5)):
        step = by_model[model]
        assert step.engine_seconds > 0
        assert step.gpu_seconds == pytest.approx(step.engine_seconds * share)
    assert reply.trace.totals.gpu_seconds == pytest.approx(sum(s.gpu_seconds for s in reply.trace.steps))
