"""The OpenAI-compatible endpoint, driven by the official `openai` client, over real engines."""

from __future__ import annotations

import httpx
import openai
import pytest

from orchestrator.patterns import RouterDecision, parse_decision

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "Say hello."}]


def test_a_pattern_answers_with_its_trace(openai_client):
    c = openai_client.chat.completions.create(model="router", messages=USER)
    assert c.object == "chat.completion" and c.model == "router"
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].finish_reason in {"stop", "length"}
    trace = c.model_extra["chorus"]["trace"]
    assert trace["kind"] == "router" and [s["name"] for s in trace["steps"]] == ["classify", "answer"]
    assert c.usage.prompt_tokens == trace["totals"]["prompt_tokens"] > 0
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens


def test_a_hosted_model_answers_directly(openai_client):
    c = openai_client.chat.completions.create(model="tiny", messages=USER, max_tokens=5)
    assert c.usage.completion_tokens == 5 and c.choices[0].finish_reason == "length"
    trace = c.model_extra["chorus"]["trace"]
    assert trace["kind"] == "model" and trace["steps"][0]["model"] == "tiny"


def test_streaming_a_model_matches_the_whole_answer(openai_client):
    whole = openai_client.chat.completions.create(model="tiny-b", messages=USER, max_tokens=8)
    chunks = list(
        openai_client.chat.completions.create(
            model="tiny-b", messages=USER, max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "length"
    usage = [ch.usage for ch in chunks if ch.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 8
    # vLLM's own stream, then chorus's trace in one last chunk before [DONE].
    assert chunks[-1].choices == [] and chunks[-1].model_extra["chorus"]["trace"]["totals"]["completion_tokens"] == 8


def test_streaming_a_pattern_ends_with_its_trace(openai_client):
    chunks = list(openai_client.chat.completions.create(model="router", messages=USER, stream=True))
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1
    route = parse_decision(finals[0].model_extra["chorus"]["trace"]["decision"])
    assert isinstance(route, RouterDecision) and route.label in {"code", "math", "general"}


def test_unknown_model_is_404_in_openai_shape(openai_client):
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.chat.completions.create(model="no-such-thing", messages=USER)
    err = info.value.body
    assert info.value.status_code == 404
    assert "no-such-thing" in err["message"] and "router" in err["message"]
    assert err["type"] == "not_found_error"


def test_unknown_model_when_streaming_is_404_too(openai_client):
    with pytest.raises(openai.NotFoundError):
        list(openai_client.chat.completions.create(model="nope", messages=USER, stream=True))


def test_list_models_shows_patterns_and_models(openai_client, chorus_server):
    ids = {m.id for m in openai_client.models.list()}
    assert set(chorus_server.config.patterns) <= ids and {"tiny", "tiny-b"} <= ids


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "router"}, "messages"),
        ({"model": "router", "messages": []}, "messages"),
        ({"model": "router", "messages": USER, "temperature": 9}, "temperature"),
        ({"model": "router", "messages": USER, "n": 2}, "n"),
        ({"model": "router", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ],
)
def test_malformed_bodies_are_400_naming_the_field(chorus_server, body, field):
    r = httpx.post(f"{chorus_server.base_url}/chat/completions", json=body, timeout=30)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"].startswith(field)


def test_invalid_json_is_400(chorus_server):
    r = httpx.post(
        f"{chorus_server.base_url}/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_a_prompt_longer_than_the_context_is_400(openai_client):
    long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model="tiny", messages=long)
    assert "1024" in info.value.body["message"]  # vLLM's own message names the context length


def test_health_reports_every_replica(chorus_server):
    root = chorus_server.base_url.removesuffix("/v1")
    assert httpx.get(root + "/health", timeout=30).json() == {"status": "ok"}
    r = httpx.get(root + "/health/replicas", timeout=30)
    assert r.status_code == 200
    hosts = r.json()["hosts"]
    assert {(h["model"], h["replica"]) for h in hosts} == {("tiny", 0), ("tiny-b", 0), ("smol", 0), ("tiny-embed", 0)}
    assert all(h["ok"] and h["capacity"] == 16 for h in hosts)


def test_a_real_chat_model_answers_coherently(openai_client):
    """SmolLM2 (a trained model, unlike the tiny random ones) through the same path."""
    c = openai_client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=24
    )
    assert "Paris" in c.choices[0].message.content
