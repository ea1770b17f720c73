"""Batch rows → requests or problems: both input shapes, every way a row can be refused."""

from __future__ import annotations

import json

from orchestrator.jobs.formats import HostedRow, InputFormat, RowProblem, RowRequest, RowRules, parse_row
from serving.types import BATCH_PRIORITY, Endpoint

OPENAI = RowRules(format=InputFormat.openai, known_models=frozenset({"router", "single"}), max_body_bytes=2048)
PLAIN = RowRules(format=InputFormat.plain, default_model="single", known_models=frozenset({"router", "single"}))


def line(custom_id="a", **body):
    body.setdefault("model", "router")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def test_openai_line_becomes_a_batch_priority_request():
    row = parse_row(line(max_tokens=7, temperature=0.5), 3, OPENAI)
    assert isinstance(row, RowRequest)
    assert row.custom_id == "a"
    assert row.request.model == "router" and row.request.max_tokens == 7 and row.request.temperature == 0.5
    assert row.request.priority == BATCH_PRIORITY
    assert row.request.messages[0].content == "hi"


def test_a_body_cannot_raise_itself_above_batch_priority():
    row = parse_row(line(chorus={"priority": 0}), 1, OPENAI)
    assert isinstance(row, RowRequest) and row.request.priority == BATCH_PRIORITY


def test_malformed_line_is_reported_with_its_line_number():
    p = parse_row('{"custom_id": "a", "body": ', 42, OPENAI)
    assert isinstance(p, RowProblem) and p.status is None and p.code == "invalid_json"
    assert "line 42" in p.message
    p = parse_row("[1, 2]", 7, OPENAI)
    assert isinstance(p, RowProblem) and "line 7" in p.message and "object" in p.message


def test_unknown_model_is_a_404_row_naming_the_known_ones():
    p = parse_row(line(model="nope"), 1, OPENAI)
    assert isinstance(p, RowProblem) and p.status == 404 and p.custom_id == "a"
    assert "'nope'" in p.message and "router" in p.message


def test_body_over_the_limit_is_a_413_row():
    p = parse_row(line(messages=[{"role": "user", "content": "x" * 5000}]), 1, OPENAI)
    assert isinstance(p, RowProblem) and p.status == 413 and "exceeds 2048" in p.message


def test_invalid_body_is_a_400_naming_the_field_as_the_http_api_would():
    p = parse_row(line(n=2), 1, OPENAI)
    assert isinstance(p, RowProblem) and p.status == 400 and p.message.startswith("n:")
    p = parse_row(line(messages=[]), 1, OPENAI)
    assert isinstance(p, RowProblem) and p.status == 400 and "messages" in p.message
    p = parse_row(line(stream=True), 1, OPENAI)
    assert isinstance(p, RowProblem) and p.status == 400 and "stream" in p.message


def test_envelope_problems_are_non_http_errors():
    no_id = json.dumps({"body": {"model": "router", "messages": []}})
    assert parse_row(no_id, 1, OPENAI).code == "missing_custom_id"  # type: ignore[union-attr]
    wrong = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/images/generations", "body": {}})
    p = parse_row(wrong, 1, OPENAI)
    assert isinstance(p, RowProblem) and p.status is None and p.code == "invalid_url" and p.custom_id == "a"


def test_openai_body_without_model_takes_the_jobs_model():
    rules = OPENAI.model_copy(update={"default_model": "single"})
    row = parse_row(json.dumps({"custom_id": "a", "body": {"messages": [{"role": "user", "content": "x"}]}}), 1, rules)
    assert isinstance(row, RowRequest) and row.request.model == "single"
    p = parse_row(json.dumps({"custom_id": "a", "body": {"messages": [{"role": "user", "content": "x"}]}}), 1, OPENAI)
    assert isinstance(p, RowProblem) and p.status == 400 and "--model" in p.message


def test_plain_prompt_and_messages_rows():
    row = parse_row(json.dumps({"prompt": "2+2?", "max_tokens": 3}), 9, PLAIN)
    assert isinstance(row, RowRequest)
    assert row.custom_id == "line-9" and row.request.model == "single" and row.request.max_tokens == 3
    assert row.request.messages[0].role == "user" and row.request.messages[0].content == "2+2?"
    row = parse_row(json.dumps({"custom_id": "x1", "model": "router", "messages": [{"role": "user", "content": "a"}]}), 1, PLAIN)
    assert isinstance(row, RowRequest) and row.custom_id == "x1" and row.request.model == "router"
    p = parse_row(json.dumps({"text": "no prompt"}), 4, PLAIN)
    assert isinstance(p, RowProblem) and p.code == "missing_messages" and "line 4" in p.message


HOSTED = OPENAI.model_copy(update={"known_models": frozenset({"router", "tiny", "embedder"}),
                                   "hosted_models": frozenset({"tiny", "embedder"})})
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def test_a_hosted_models_row_goes_whole_to_its_openai_layer_with_every_field():
    """What vLLM's server accepts in a batch line works here too: tools, logprobs, n > 1…"""
    row = parse_row(line(model="tiny", tools=TOOLS, tool_choice="auto", n=2, logprobs=True,
                         chorus={"priority": 0, "trace": "none"}), 1, HOSTED)
    assert isinstance(row, HostedRow) and row.custom_id == "a" and row.trace == "none"
    req = row.request
    assert req.endpoint is Endpoint.CHAT and req.priority == BATCH_PRIORITY  # no row raises itself above batch
    assert req.body["tools"] == TOOLS and req.body["n"] == 2 and req.body["logprobs"] is True
    assert "chorus" not in req.body  # chorus's options are chorus's, not vLLM's


def test_completions_and_embeddings_lines_reach_hosted_models_only():
    def at(url, **body):
        return json.dumps({"custom_id": "c", "method": "POST", "url": url, "body": body})

    row = parse_row(at("/v1/completions", model="tiny", prompt="Once", max_tokens=3), 1, HOSTED)
    assert isinstance(row, HostedRow) and row.request.endpoint is Endpoint.COMPLETIONS
    row = parse_row(at("/v1/embeddings", model="embedder", input=["a", "b"]), 1, HOSTED)
    assert isinstance(row, HostedRow) and row.request.endpoint is Endpoint.EMBEDDINGS
    p = parse_row(at("/v1/completions", model="router", prompt="Once"), 1, HOSTED)
    assert isinstance(p, RowProblem) and p.status == 400 and "'router' is a pattern" in p.message
    p = parse_row(at("/v1/embeddings", model="nope", input="a"), 1, HOSTED)
    assert isinstance(p, RowProblem) and p.status == 404


def test_a_hosted_rows_bad_chorus_options_are_a_400_naming_the_field():
    p = parse_row(line(model="tiny", chorus={"priority": "high"}), 1, HOSTED)
    assert isinstance(p, RowProblem) and p.status == 400 and p.message.startswith("chorus.priority")
