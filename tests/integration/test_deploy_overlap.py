"""`chorus up` starts its request tier while the engines start, and the first request after it
returns finds them ready (real Ray and Serve; scripted engines)."""

from __future__ import annotations

import pytest
import ray
from ray import serve

from cluster.errors import DeployError
from orchestrator.core.schema import ChatRequest
from orchestrator.runtime.deploy import deploy, find_orchestrator
from orchestrator.runtime.serve_app import app_name
from orchestrator.service.config import parse_config
from serving.types import Message
from tests.fakes.gated_engine import GatedEngine
from tests.fakes.scripted_engine import ScriptedEngine

pytestmark = pytest.mark.integration
NAMESPACE = "chorus-overlap-test"

CONFIG = {
    "models": [{"name": "m", "source": "scripted/m"}, {"name": "n", "source": "scripted/n"}],
    "roles": {"generalist": "m", "judge": "n"},
    "placement": {"m": {"num_cpus": 0.25}, "n": {"num_cpus": 0.25}},
    "patterns": {"both": {"kind": "fanout", "members": ["generalist", "judge"]}},
}


def gated(config, slot):
    """Each engine's start waits for the orchestrator application to be running."""
    return GatedEngine, {"script": lambda request: "fine", "app": app_name(NAMESPACE), "timeout_s": 90.0}


def test_the_request_tier_starts_while_the_engines_start_and_is_ready_with_them(ray_cluster):
    config = parse_config(CONFIG, "overlap-test.yaml")
    lines: list[str] = []
    dep = deploy(config, engine=gated, http=False, namespace=NAMESPACE, timeout_s=150, progress=lines.append)
    try:
        # Each engine's start waited for the running application, so deploy got here only by
        # starting the application while the engines started; both printed their timeline.
        assert "orchestrator ready" in lines
        assert sum(line.lstrip().startswith(("m[0]:", "n[0]:")) for line in lines) == 2, lines
        # The replica came up while both engines read "starting"; deploy returned once it saw
        # them ready, so the very first request is answered (no 503).
        reply = find_orchestrator(NAMESPACE).chat.remote(
            ChatRequest(model="both", messages=[Message(role="user", content="hi")])
        ).result(timeout_s=60)
        assert {s.model for s in reply.trace.steps} == {"m", "n"} and reply.text.count("fine") == 2
    finally:
        dep.shutdown()


def test_an_engine_that_cannot_start_fails_the_deploy_by_name_and_leaves_nothing_running(ray_cluster):
    """The request tier starts beside the engines; when one cannot start, deploy takes all of it
    down again: no host, no supervisor, no application left in the namespace."""
    config = parse_config(CONFIG, "overlap-test.yaml")

    def one_broken(config, slot):
        if slot.model == "n":
            return ScriptedEngine, {"script": lambda request: "fine", "start_error": "weights not found"}
        return ScriptedEngine, {"script": lambda request: "fine"}

    with pytest.raises(DeployError, match=r"model 'n' replica 0 failed to start: .*weights not found"):
        deploy(config, engine=one_broken, http=False, namespace=NAMESPACE, timeout_s=150)
    left = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a.get("namespace") == NAMESPACE]
    assert left == []
    assert app_name(NAMESPACE) not in serve.status().applications
