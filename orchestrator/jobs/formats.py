"""One input row → a `ChatRequest` to run, or the reason it cannot run.

Two input shapes are read, one per file:

- **OpenAI Batch** (`openai`): `{"custom_id", "method": "POST", "url": "/v1/chat/completions",
  "body": {...chat completion request...}}`; `body.model` names a pattern or a hosted model
  (the job's `--model` fills it in when a body leaves it out). A hosted model also answers
  `/v1/completions` and `/v1/embeddings` lines, as OpenAI's Batch API does.
- **plain** (`plain`): `{"messages": [...]}` or `{"prompt": "..."}`, optionally `custom_id`,
  `model` and any chat-completion field (`max_tokens`, `temperature`…); the job's `--model`
  names the pattern for rows without their own.

A body is checked as the HTTP API checks it, so a row fails in a batch exactly as it would over
HTTP (same status, same message): a pattern's by `ChatCompletionRequest`; a hosted model's goes
whole to its engine's OpenAI layer (vLLM validates it, and every field vLLM supports works:
`tools`, `logprobs`, `n`…), with chorus's own `chorus` options read here. Problems are split in two:
`RowProblem.status` set → the row got an HTTP-like answer (400, 404, 413) in `response`;
`status` None → the line itself is unusable (not JSON, no custom_id…) and goes to `error`.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from cluster.errors import UnknownModelError, Unsupported
from orchestrator.api.protocol import ChatCompletionRequest, ChorusOptions, TraceMode
from orchestrator.core.schema import ChatRequest
from orchestrator.service.hosted import HostedRequest
from serving.types import BATCH_PRIORITY, Endpoint

CHAT_URL = Endpoint.CHAT.path
# What a batch line may ask of a hosted model (OpenAI's Batch API: chat, completions, embeddings).
BATCH_ENDPOINTS = {e.path: e for e in (Endpoint.CHAT, Endpoint.COMPLETIONS, Endpoint.EMBEDDINGS)}


class InputFormat(str, Enum):
    openai = "openai"
    plain = "plain"


class RowRequest(BaseModel):
    model_config = ConfigDict(frozen=True)
    custom_id: str
    request: ChatRequest


class HostedRow(BaseModel):
    """A row for a hosted model: its body goes whole to the engine's OpenAI layer."""

    model_config = ConfigDict(frozen=True)
    custom_id: str
    request: HostedRequest
    trace: TraceMode = "summary"  # how much trace its output line carries


class RowProblem(BaseModel):
    model_config = ConfigDict(frozen=True)
    custom_id: str | None
    status: int | None  # None: the line is unusable; else the HTTP status the API would answer
    code: str  # OpenAI error type, or an input error code such as `invalid_json`
    message: str


class RowRules(BaseModel):
    """What every row of one job is checked against."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: InputFormat
    default_model: str | None = None
    known_models: frozenset[str] = frozenset()  # empty: do not check here (chorus still does)
    hosted_models: frozenset[str] = frozenset()  # served by their engine's OpenAI layer (vLLM's)
    max_body_bytes: int = 1 << 20
    unit: str = "line"  # what a position is called in messages and default custom_ids: line | row


def default_custom_id(rules: RowRules, line: int) -> str:
    return f"{rules.unit}-{line}"


def detect_format(first: dict[str, Any]) -> InputFormat:
    """The shape of a file, from its first JSON object."""
    return InputFormat.openai if "custom_id" in first and "body" in first else InputFormat.plain


def decode(raw: str, line: int, rules: RowRules) -> dict[str, Any] | RowProblem:
    """The JSON object on one line, or why it is not one."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return RowProblem(
            custom_id=None, status=None, code="invalid_json", message=f"{rules.unit} {line}: not valid JSON ({exc.msg} at column {exc.colno})"
        )
    if not isinstance(value, dict):
        return RowProblem(
            custom_id=None, status=None, code="invalid_json", message=f"{rules.unit} {line}: expected a JSON object, got {type(value).__name__}"
        )
    return value


def parse_row(raw: str, line: int, rules: RowRules) -> RowRequest | HostedRow | RowProblem:
    """Check one input row (its JSON text) and build the request it asks for."""
    obj = decode(raw, line, rules)
    if isinstance(obj, RowProblem):
        return obj
    endpoint = Endpoint.CHAT
    if rules.format is InputFormat.openai:
        envelope = _openai_envelope(obj, line, rules)
        if isinstance(envelope, RowProblem):
            return envelope
        custom_id, endpoint, body = envelope
    else:
        plain = _plain_body(obj, line, rules)
        if isinstance(plain, RowProblem):
            return plain
        custom_id, body = plain
    size = len(json.dumps(body, separators=(",", ":")).encode())
    if size > rules.max_body_bytes:
        return RowProblem(
            custom_id=custom_id,
            status=413,
            code="invalid_request_error",
            message=f"request body of {size} bytes exceeds {rules.max_body_bytes}",
        )
    body.setdefault("model", rules.default_model)
    if not body.get("model"):
        return RowProblem(
            custom_id=custom_id, status=400, code="invalid_request_error", message="model: no model in the body and no --model for the job"
        )
    if body.get("stream"):
        return RowProblem(custom_id=custom_id, status=400, code="invalid_request_error", message="stream: batch rows cannot stream")
    model = body["model"]
    if rules.known_models and model not in rules.known_models:
        return RowProblem(
            custom_id=custom_id, status=404, code="not_found_error", message=str(UnknownModelError(str(model), sorted(rules.known_models)))
        )
    if model in rules.hosted_models:
        return _hosted_row(custom_id, endpoint, body)
    if endpoint is not Endpoint.CHAT:
        return RowProblem(
            custom_id=custom_id,
            status=400,
            code="invalid_request_error",
            message=f"model: {endpoint.path} serves hosted models; '{model}' is a pattern (use {CHAT_URL})",
        )
    try:
        wire = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid request")).removeprefix("Value error, ")
        return RowProblem(custom_id=custom_id, status=400, code="invalid_request_error", message=f"{where}: {msg}" if where else msg)
    try:
        request = wire.to_request(priority_floor=BATCH_PRIORITY)
    except Unsupported as exc:  # a field a pattern cannot honour, named as the HTTP API names it
        return RowProblem(custom_id=custom_id, status=400, code="invalid_request_error", message=str(exc))
    return RowRequest(custom_id=custom_id, request=request)


def _hosted_row(custom_id: str, endpoint: Endpoint, body: dict[str, Any]) -> HostedRow | RowProblem:
    """A hosted model's row: chorus's own options read, the rest left to vLLM's validation."""
    try:
        options = ChorusOptions.model_validate(body.get("chorus") or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(("chorus", *(str(p) for p in err.get("loc", ()))))
        return RowProblem(custom_id=custom_id, status=400, code="invalid_request_error", message=f"{where}: {err.get('msg')}")
    request = HostedRequest(
        endpoint=endpoint,
        body={k: v for k, v in body.items() if k != "chorus"},
        priority=max(options.priority, BATCH_PRIORITY),
        budget=options.budget,
        timeout_s=options.timeout_s,
    )
    return HostedRow(custom_id=custom_id, request=request, trace=options.trace)


def _openai_envelope(obj: dict[str, Any], line: int, rules: RowRules) -> tuple[str, Endpoint, dict[str, Any]] | RowProblem:
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return RowProblem(custom_id=None, status=None, code="missing_custom_id", message=f"{rules.unit} {line}: no custom_id string")
    method, url, body = obj.get("method", "POST"), obj.get("url", CHAT_URL), obj.get("body")
    endpoint = BATCH_ENDPOINTS.get(url) if isinstance(url, str) else None
    if method != "POST" or endpoint is None:
        return RowProblem(
            custom_id=custom_id,
            status=None,
            code="invalid_url",
            message=f"{rules.unit} {line}: only POST {', '.join(BATCH_ENDPOINTS)} are supported, got {method} {url}",
        )
    if not isinstance(body, dict):
        return RowProblem(custom_id=custom_id, status=None, code="missing_body", message=f"{rules.unit} {line}: `body` must be a JSON object")
    return custom_id, endpoint, dict(body)


def _plain_body(obj: dict[str, Any], line: int, rules: RowRules) -> tuple[str, dict[str, Any]] | RowProblem:
    custom_id = obj.get("custom_id")
    if custom_id is None:
        custom_id = default_custom_id(rules, line)
    elif not isinstance(custom_id, str) or not custom_id:
        return RowProblem(custom_id=None, status=None, code="missing_custom_id", message=f"{rules.unit} {line}: custom_id must be a non-empty string")
    body = {k: v for k, v in obj.items() if k not in ("custom_id", "prompt")}
    prompt = obj.get("prompt")
    if "messages" not in obj:
        if not isinstance(prompt, str) or not prompt:
            return RowProblem(
                custom_id=custom_id, status=None, code="missing_messages", message=f"{rules.unit} {line}: needs `messages` or a `prompt` string"
            )
        body["messages"] = [{"role": "user", "content": prompt}]
    return custom_id, body
