"""Pieces of the request tier that need no cluster: the proxy's replica-loss guard, the metering
backend, JSON logs with request ids."""

from __future__ import annotations

import json
import logging
from collections import defaultdict

import httpx
import pytest

from cluster.errors import OverloadedError, UnknownModelError
from orchestrator.api.logs import JsonLines, RequestIdFilter, current_request_id
from orchestrator.core.schema import ChatRequest
from orchestrator.runtime.metrics import Metered
from orchestrator.runtime.proxy_guard import ReplicaLossAs503
from serving.types import Message
from tests.unit.fixtures import scripted_chorus


async def _no_response(scope, receive, send):  # what Serve's proxy does when the replica died
    return None


async def _raises(scope, receive, send):
    raise RuntimeError("ActorDiedError: actor 3f2a... pid=1234 at 10.0.0.7")


async def _fine(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("inner", [_no_response, _raises])
async def test_a_lost_replica_reads_as_503_in_openai_shape(inner):
    app = ReplicaLossAs503(inner)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        r = await http.post("/v1/chat/completions", json={})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "service_unavailable"
    assert "actor" not in r.text.lower() and "pid" not in r.text and "10.0.0.7" not in r.text


async def test_the_guard_passes_answers_through():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ReplicaLossAs503(_fine)), base_url="http://p") as http:
        r = await http.get("/")
    assert r.status_code == 200 and r.text == "ok"


class Recorded:
    def __init__(self):
        self.values = defaultdict(float)

    def inc(self, value=1.0, tags=None):
        self.values[tuple(sorted((tags or {}).items()))] += value

    observe = set = inc


class FakeMetrics:
    def __init__(self):
        for name in ("requests", "latency", "ttft", "prompt_tokens", "completion_tokens", "model_calls", "gpu_seconds",
                     "host_running", "host_waiting", "host_up"):
            setattr(self, name, Recorded())


def _req(model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content="hi")], request_id="r-1")


async def test_metered_counts_requests_tokens_calls_by_pattern_and_status():
    chorus, _ = scripted_chorus({"generalist": lambda req: "two words"}, {"single": {"kind": "single", "role": "generalist"}})
    m = FakeMetrics()
    metered = Metered(chorus, m, lambda name: "single" if name == "single" else None)
    reply = await metered.chat(_req("single"))
    assert reply.trace.request_id == "r-1"
    ok = (("kind", "single"), ("model", "single"), ("status", "200"))
    assert m.requests.values[ok] == 1
    assert m.completion_tokens.values[(("kind", "single"), ("model", "single"))] == 2
    assert m.model_calls.values[(("model", "generalist"), ("outcome", "ok"), ("pattern", "single"))] == 1
    with pytest.raises(UnknownModelError):
        await metered.chat(_req("no-such-model"))
    # An unknown name is counted under one bounded label, with its HTTP status.
    assert m.requests.values[(("kind", "unknown"), ("model", "unknown"), ("status", "404"))] == 1


async def test_metered_streams_record_time_to_first_token():
    chorus, _ = scripted_chorus({"generalist": lambda req: "a b c"}, {})
    m = FakeMetrics()
    metered = Metered(chorus, m, lambda name: "model")
    events = [e async for e in metered.stream(_req("generalist"))]
    assert len(events) == 4
    assert m.ttft.values and m.requests.values[(("kind", "model"), ("model", "generalist"), ("status", "200"))] == 1


async def test_overload_is_counted_as_429():
    chorus, _ = scripted_chorus({"generalist": lambda req: "x"}, {})

    async def full(models):
        raise OverloadedError("full")

    chorus.fleet.saturated = full  # type: ignore[method-assign]
    m = FakeMetrics()
    with pytest.raises(OverloadedError):
        await Metered(chorus, m, lambda name: "model").chat(_req("generalist"))
    assert m.requests.values[(("kind", "model"), ("model", "generalist"), ("status", "429"))] == 1


def test_json_log_lines_carry_the_request_id():
    record = logging.LogRecord("chorus.test", logging.INFO, __file__, 1, "answered %s", ("router",), None)
    token = current_request_id.set("abc-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        current_request_id.reset(token)
    line = json.loads(JsonLines().format(record))
    assert line["request_id"] == "abc-1" and line["message"] == "answered router" and line["level"] == "INFO"
