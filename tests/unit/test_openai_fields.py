"""Patterns honour what applies and refuse the rest: strict requests, response_format on the
final step, real streaming of the final step, trace sizes, and the hosted path's accounting."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from orchestrator.api.app import build_app
from orchestrator.core.budget import Budget
from orchestrator.service.hosted import capped
from serving.host.openai_host import usage_in, with_usage
from serving.types import Endpoint, JsonSchema
from tests.unit.fixtures import scripted_chorus

PATTERNS = {
    "single": {"kind": "single", "role": "generalist"},
    "fanout": {"kind": "fanout", "members": ["generalist", "generalist"]},
    "council": {
        "kind": "council",
        "members": ["generalist", "generalist"],
        "combine": "merge",
        "synthesizer": "synthesizer",
        "extract": "exact",
    },
}
USER = [{"role": "user", "content": "hi"}]


def make():
    chorus, engines = scripted_chorus(
        {"generalist": lambda r: "member answer", "synthesizer": lambda r: '{"ok": true} merged words here'},
        PATTERNS,
    )
    transport = httpx.ASGITransport(app=build_app(chorus))
    http = httpx.AsyncClient(transport=transport, base_url="http://chorus/v1")
    client = openai.AsyncOpenAI(base_url="http://chorus/v1", api_key="none", http_client=http, max_retries=0)
    return chorus, engines, client, transport


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("logprobs", {"logprobs": True}),
        ("top_logprobs", {"top_logprobs": 2}),
        ("n", {"n": 2}),
        ("presence_penalty", {"presence_penalty": 0.5}),
        ("logit_bias", {"logit_bias": {"1": 5}}),
        ("tool_choice", {"tool_choice": "auto"}),
    ],
)
async def test_a_field_a_pattern_cannot_honour_is_a_400_naming_it(field: str, kwargs: dict) -> None:
    _, engines, client, _ = make()
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="single", messages=USER, **kwargs)
    assert info.value.body["param"] == field and field in info.value.body["message"]
    assert not engines["generalist"].calls  # refused before any model ran


async def test_unknown_and_mistyped_fields_are_refused() -> None:
    _, _, _, transport = make()
    async with httpx.AsyncClient(transport=transport, base_url="http://chorus") as http:
        typo = await http.post("/v1/chat/completions", json={"model": "single", "messages": USER, "temprature": 0})
        yes = await http.post("/v1/chat/completions", json={"model": "single", "messages": USER, "stream": "yes"})
    assert typo.status_code == 400 and typo.json()["error"]["param"] == "temprature"
    assert yes.status_code == 400 and yes.json()["error"]["param"] == "stream"


async def test_response_format_constrains_the_final_step_only() -> None:
    _, engines, client, _ = make()
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    reply = await client.chat.completions.create(model="council", messages=USER, response_format=fmt)
    assert engines["synthesizer"].calls[0].constraint == JsonSchema(json_schema=schema)
    assert all(c.constraint is None for c in engines["generalist"].calls)
    # No agreement line after the JSON: it would break it.
    assert reply.choices[0].message.content == '{"ok": true} merged words here'


async def test_response_format_on_a_pattern_that_cannot_follow_it_is_a_400() -> None:
    _, engines, client, _ = make()
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="fanout", messages=USER, response_format={"type": "json_object"})
    assert info.value.body["param"] == "response_format" and "fanout" in info.value.body["message"]
    assert not engines["generalist"].calls


async def test_a_streamed_council_streams_the_synthesizer_with_progress_before_it() -> None:
    _, _, _, transport = make()
    body = {"model": "council", "messages": USER, "stream": True, "chorus": {"progress": True, "trace": "full"}}
    async with httpx.AsyncClient(transport=transport, base_url="http://chorus") as http:
        r = await http.post("/v1/chat/completions", json=body)
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    kinds = [
        "progress" if "progress" in e.get("chorus", {}) else "trace" if "trace" in e.get("chorus", {}) else "delta"
        for e in events
    ]
    deltas = [e["choices"][0]["delta"].get("content", "") for e, k in zip(events, kinds) if k == "delta"]
    assert kinds[1:3] == ["progress", "progress"]  # both members, before any token
    assert kinds[-1] == "trace"
    # The synthesizer's words arrive as their own deltas, then the agreement line.
    assert deltas[1].startswith('{"ok":') and len(deltas) > 3
    assert "".join(deltas).startswith('{"ok": true} merged words here\n\nCouncil agreement')
    assert events[-1]["chorus"]["trace"]["steps"][-1]["output"].startswith('{"ok"')


@pytest.mark.parametrize(("mode", "has_output"), [("full", True), ("summary", False)])
async def test_trace_size_is_chosen_per_request(mode: str, has_output: bool) -> None:
    _, _, client, _ = make()
    reply = await client.chat.completions.create(model="council", messages=USER, extra_body={"chorus": {"trace": mode}})
    steps = reply.model_extra["chorus"]["trace"]["steps"]
    assert len(steps) == 3 and ("output" in steps[0]) is has_output


async def test_no_trace_when_asked_for_none() -> None:
    _, _, client, _ = make()
    reply = await client.chat.completions.create(
        model="single", messages=USER, extra_body={"chorus": {"trace": "none"}}
    )
    assert reply.model_extra["chorus"]["trace"] is None


async def test_hosted_requests_pass_through_with_the_trace() -> None:
    _, _, client, _ = make()
    reply = await client.chat.completions.create(
        model="generalist", messages=USER, extra_body={"chorus": {"priority": 3}}
    )
    assert reply.choices[0].message.content == "member answer"
    assert reply.model_extra["chorus"]["trace"]["kind"] == "model"


async def test_a_pattern_on_a_hosted_only_endpoint_is_a_400() -> None:
    _, _, client, _ = make()
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model="council", prompt="x")
    assert info.value.body["param"] == "model"


def test_the_host_asks_for_usage_and_knows_whether_the_caller_did() -> None:
    body, wanted = with_usage({"stream": True, "model": "m"})
    assert body["stream_options"] == {"include_usage": True} and not wanted
    assert with_usage({"stream": True, "stream_options": {"include_usage": True}})[1]
    line = 'data: {"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}\n\n'
    usage = usage_in(line)
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (3, 5)
    assert usage_in('data: {"choices":[{"delta":{"content":"usage"}}]}\n\n') is None


def test_a_token_budget_caps_a_hosted_completion() -> None:
    body = {"model": "m", "max_tokens": 500}
    assert capped(Endpoint.CHAT, body, Budget(max_tokens=100)) == {"model": "m", "max_completion_tokens": 100}
    assert capped(Endpoint.COMPLETIONS, {"model": "m"}, Budget(max_tokens=7)) == {"model": "m", "max_tokens": 7}
    assert capped(Endpoint.EMBEDDINGS, body, Budget(max_tokens=7)) == body


def test_the_configs_sampling_defaults_fill_what_a_hosted_request_leaves_out() -> None:
    from orchestrator.service.hosted import HostedRequest, with_defaults
    from serving.types import Sampling

    sampling = Sampling(max_tokens=16, temperature=0.0, stop=["END"])
    req = with_defaults(HostedRequest(Endpoint.CHAT, {"model": "m", "temperature": 0.7}), sampling)
    assert req.body == {"model": "m", "temperature": 0.7, "max_completion_tokens": 16, "top_p": 1.0, "stop": ["END"]}
    emb = HostedRequest(Endpoint.EMBEDDINGS, {"model": "m", "input": "x"})
    assert with_defaults(emb, sampling) == emb


async def test_a_council_that_trims_the_streamed_answer_still_streams() -> None:
    chorus, _ = scripted_chorus(
        {"generalist": lambda r: "member answer", "synthesizer": lambda r: "merged words here  "}, PATTERNS
    )
    from orchestrator.core.schema import ChatRequest, Delta, Reply
    from serving.types import Message

    req = ChatRequest(model="council", messages=[Message(role="user", content="hi")])
    events = [e async for e in chorus.stream(req)]
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert isinstance(events[-1], Reply) and text.startswith("merged words here")
    assert "Council agreement" in text and events[-1].text.startswith("merged words here\n\nCouncil agreement")
