"""The OpenAI endpoints of hosted models: the raw body goes to vLLM's own OpenAI layer on a
replica (orchestrator.service.hosted), and vLLM's response or SSE stream comes back as it is,
with chorus's trace added (`chorus` in the body, or in one last chunk before `[DONE]`).

    POST /v1/chat/completions   (hosted models; patterns are api.chat's)
    POST /v1/completions
    POST /v1/embeddings         (a model whose engine runs a pooling task)
    POST /tokenize, /detokenize
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from orchestrator.api.disconnect import unless_disconnected
from orchestrator.api.errors import OpenAIJSONResponse, error_body
from orchestrator.api.protocol import ChorusOptions, TraceMode, surrogate_at, trace_json, with_trace
from orchestrator.core.trace import Trace
from orchestrator.service.config import ServerSpec
from orchestrator.service.hosted import HostedRequest, whole_reply
from serving.types import Endpoint, OpenAIReply, SSEBatch

# A 200 is JSON, or SSE when the request asked to stream.
STREAM_OR_JSON: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {}, "text/event-stream": {}}}}

# The document shows only what chorus reads of a hosted body; vLLM validates the rest.
_HOSTED_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model"],
                    "properties": {"model": {"type": "string", "minLength": 1}, "stream": {"type": "boolean"}},
                    "additionalProperties": True,
                }
            }
        },
    }
}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` written in place (for an operation's openapi_extra,
    which cannot add components). The request models are not recursive."""
    schema = model.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    out: dict[str, Any] = inline(schema)
    return out


class HostedBackend(Protocol):
    def hosted(self, req: HostedRequest, full_trace: bool) -> AsyncIterator[OpenAIReply | SSEBatch | Trace]: ...


class Envelope(BaseModel):
    """What chorus itself reads from a hosted request; vLLM validates the rest."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    stream: StrictBool = False


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise RequestValidationError([{"loc": (), "msg": f"the body is not valid JSON: {exc.msg}"}]) from None
    except UnicodeDecodeError:
        raise RequestValidationError([{"loc": (), "msg": "the body is not valid UTF-8"}]) from None
    if not isinstance(body, dict):
        raise RequestValidationError([{"loc": (), "msg": "the body must be a JSON object"}])
    where = surrogate_at(body, ())  # JSON may carry a lone surrogate ("\ud800"); no tokenizer can encode it
    if where is not None:
        msg = "text is not valid Unicode (a lone surrogate)"
        raise RequestValidationError([{"loc": where, "msg": msg}])
    return body


def validated(model: type[BaseModel], data: Any, *prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": (*prefix, *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


def split_options(body: dict[str, Any]) -> tuple[dict[str, Any], ChorusOptions]:
    """The body without chorus's own `chorus` field, and that field parsed."""
    rest = {k: v for k, v in body.items() if k != "chorus"}
    return rest, validated(ChorusOptions, body.get("chorus") or {}, "chorus")


async def serve(
    backend: HostedBackend, endpoint: Endpoint, body: dict[str, Any], request: Request, server: ServerSpec
) -> Any:
    """One hosted-model request: vLLM's JSON with the trace added, or its SSE stream. The
    backend enforces the deadline (`chorus.timeout_s`, else the server's) as for patterns."""
    body, options = split_options(body)
    envelope = validated(Envelope, body)
    req = HostedRequest(
        endpoint=endpoint,
        body=body,
        priority=options.priority,
        budget=options.budget,
        request_id=getattr(request.state, "request_id", None),
        timeout_s=options.timeout_s or server.request_timeout_s,
    )
    parts = backend.hosted(req, options.trace == "full")
    if not envelope.stream:
        whole = await unless_disconnected(request, whole_reply(parts))
        if whole is None:  # the client left; its engine work was cancelled
            return Response(status_code=499)
        reply, trace = whole
        return OpenAIJSONResponse(with_trace(reply.body if isinstance(reply, OpenAIReply) else {}, trace, options.trace))
    # Pull the first part before answering, so a refusal (unknown model, too-long prompt, a full
    # queue) is a proper 4xx rather than an error inside a 200 stream.
    first = await anext(parts)
    return StreamingResponse(_sse(envelope.model, endpoint, first, parts, options.trace), media_type="text/event-stream")


async def _sse(
    model: str,
    endpoint: Endpoint,
    first: OpenAIReply | SSEBatch | Trace,
    parts: AsyncIterator[OpenAIReply | SSEBatch | Trace],
    mode: TraceMode,
) -> AsyncIterator[str]:
    try:
        part: OpenAIReply | SSEBatch | Trace | None = first
        while part is not None:
            if isinstance(part, SSEBatch):
                yield part.text
            elif isinstance(part, Trace) and mode != "none":
                obj = "chat.completion.chunk" if endpoint is Endpoint.CHAT else "text_completion"
                last = {"id": f"chorus-{int(time.time() * 1000)}", "object": obj, "created": int(time.time()),
                        "model": model, "choices": [], "chorus": {"trace": trace_json(part, mode)}}  # fmt: skip
                yield f"data: {json.dumps(last, ensure_ascii=True)}\n\n"
            part = await anext(parts, None)
    except Exception as exc:  # noqa: BLE001 - error_body logs what is not chorus's; the stream has started: report in-band, never hang the client
        yield f"data: {json.dumps(error_body(exc), ensure_ascii=True)}\n\n"
    yield "data: [DONE]\n\n"


def hosted_router(backend: HostedBackend, server: ServerSpec) -> APIRouter:
    router = APIRouter()

    def route(endpoint: Endpoint) -> None:
        async def handler(request: Request) -> Any:
            return await serve(backend, endpoint, await json_body(request), request, server)

        router.add_api_route(
            endpoint.path,
            handler,
            methods=["POST"],
            name=endpoint.value,
            responses=STREAM_OR_JSON,
            openapi_extra=_HOSTED_BODY_DOC,
        )

    for endpoint in (Endpoint.COMPLETIONS, Endpoint.EMBEDDINGS, Endpoint.TOKENIZE, Endpoint.DETOKENIZE):
        route(endpoint)
    return router
