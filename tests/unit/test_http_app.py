"""The HTTP app over scripted engines, in-process (ASGI): auth, limits, overload, failures, SSE."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from cluster.errors import EngineError
from orchestrator.api.app import build_app
from orchestrator.service.config import ServerSpec
from tests.unit.fixtures import scripted_chorus

PATTERNS = {"single": {"kind": "single", "role": "generalist"}}


def make(server: ServerSpec | None = None, script=lambda req: "hello there", **kw):
    chorus, engines = scripted_chorus({"generalist": script}, PATTERNS, **kw)
    app = build_app(chorus, server)
    transport = httpx.ASGITransport(app=app)
    return chorus, engines, transport


def client(transport, key: str = "none") -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=transport, base_url="http://chorus/v1")
    return openai.AsyncOpenAI(base_url="http://chorus/v1", api_key=key, http_client=http, max_retries=0)


USER = [{"role": "user", "content": "hi"}]


async def test_completion_carries_the_trace():
    _, _, t = make()
    c = await client(t).chat.completions.create(model="single", messages=USER)
    assert c.choices[0].message.content == "hello there"
    assert c.model_extra["chorus"]["trace"]["steps"][0]["role"] == "generalist"


async def test_text_parts_and_developer_role_are_accepted():
    _, engines, t = make()
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    await client(t).chat.completions.create(model="single", messages=messages)
    sent = engines["generalist"].calls[0].messages
    assert [(m.role, m.content) for m in sent] == [("system", "be brief"), ("user", "ab")]


async def test_api_keys_are_enforced_when_configured():
    _, _, t = make(ServerSpec(api_keys=["s3cret"]))
    with pytest.raises(openai.AuthenticationError) as info:
        await client(t, key="wrong").chat.completions.create(model="single", messages=USER)
    assert info.value.body["type"] == "authentication_error"
    c = await client(t, key="s3cret").chat.completions.create(model="single", messages=USER)
    assert c.choices[0].message.content == "hello there"


async def test_oversized_bodies_are_413():
    _, _, t = make(ServerSpec(max_request_bytes=2048))
    async with httpx.AsyncClient(transport=t, base_url="http://chorus") as http:
        r = await http.post("/v1/chat/completions", json={"model": "single", "messages": [{"role": "user", "content": "x" * 4096}]})
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"


async def test_tools_are_refused_with_the_field_named():
    _, _, t = make()
    with pytest.raises(openai.BadRequestError) as info:
        await client(t).chat.completions.create(
            model="single", messages=USER, tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]
        )
    assert info.value.body["param"] == "tools" and "patterns do not call tools" in info.value.body["message"]


async def test_engine_failure_is_500_in_openai_shape():
    _, _, t = make(script=lambda req: EngineError("CUDA error: device lost"))
    with pytest.raises(openai.InternalServerError) as info:
        await client(t).chat.completions.create(model="single", messages=USER)
    body = info.value.body
    assert body["type"] == "server_error" and "device lost" in body["message"]


async def test_full_queues_give_429_with_retry_after():
    # capacity 1, no waiting allowed: the second concurrent request is refused up front.
    chorus, engines, t = make(delay_s=0.2)
    replica = chorus.fleet.replicas["generalist"][0]
    replica.capacity, replica.max_queue = 1, 0
    c = client(t)
    first = asyncio.create_task(c.chat.completions.create(model="single", messages=USER))
    async with asyncio.timeout(5):  # bounded: the first request reaches the engine within a few loop turns
        while not engines["generalist"].calls:  # noqa: ASYNC110 - the scripted engine records calls, it signals none
            await asyncio.sleep(0)
    with pytest.raises(openai.RateLimitError) as info:
        await c.chat.completions.create(model="single", messages=USER)
    assert info.value.response.headers["retry-after"] == "1"
    assert "at capacity" in info.value.body["message"]
    assert (await first).choices[0].message.content == "hello there"


async def test_sse_stream_shape():
    _, _, t = make()
    async with httpx.AsyncClient(transport=t, base_url="http://chorus") as http:
        r = await http.post(
            "/v1/chat/completions",
            json={"model": "generalist", "messages": USER, "stream": True, "stream_options": {"include_usage": True}},
        )
    events = [line.removeprefix("data: ") for line in r.text.splitlines() if line.startswith("data: ")]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "hello there"
    # A hosted model's stream is the engine's own, usage chunk included; chorus adds the trace last.
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] == 2
    assert chunks[-1]["choices"] == [] and chunks[-1]["chorus"]["trace"]["steps"][0]["model"] == "generalist"


async def test_models_and_health():
    _, _, t = make()
    async with httpx.AsyncClient(transport=t, base_url="http://chorus") as http:
        models = (await http.get("/v1/models")).json()
        health = await http.get("/health")
        details = await http.get("/health/replicas")
    assert {m["id"]: m["chorus"]["kind"] for m in models["data"]} == {"single": "pattern", "generalist": "model"}
    assert health.status_code == 200 and health.json() == {"status": "ok"}  # liveness, no details
    assert details.status_code == 200 and details.json()["hosts"][0]["model"] == "generalist"


async def test_replica_details_are_503_when_a_replica_is_down_and_liveness_stays_200():
    _, engines, t = make()
    engines["generalist"].started = False
    async with httpx.AsyncClient(transport=t, base_url="http://chorus") as http:
        r = await http.get("/health/replicas")
        live = await http.get("/health")
    assert r.status_code == 503 and r.json()["ok"] is False
    assert live.status_code == 200
