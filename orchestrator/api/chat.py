"""POST /v1/chat/completions: a hosted model's request goes whole to vLLM's OpenAI layer
(api.hosted); a pattern's is parsed strictly (api.protocol) and run, streamed for real when
`stream: true` (the final step's tokens as the engine makes them, optional progress events for
the steps before it, the trace in the last chunk).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from orchestrator.api import feedback
from orchestrator.api.disconnect import unless_disconnected
from orchestrator.api.errors import OpenAIJSONResponse, error_body
from orchestrator.api.hosted import STREAM_OR_JSON, HostedBackend, inline_schema, json_body, serve, validated
from orchestrator.api.protocol import (
    ChatCompletionRequest,
    TraceMode,
    chunk_json,
    completion_json,
    trace_json,
    usage_json,
)
from orchestrator.core.schema import CatalogEntry, ChatRequest, Delta, Progress, Reply
from orchestrator.service.config import ServerSpec
from serving.types import Endpoint

# The document shows a pattern's request (a hosted model's body is vLLM's and may carry more).
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(ChatCompletionRequest)}},
    }
}


class ChatBackend(HostedBackend, Protocol):
    async def chat(self, req: ChatRequest) -> Reply: ...

    def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Progress | Reply]: ...

    async def catalog(self) -> list[CatalogEntry]: ...


def chat_router(backend: ChatBackend, server: ServerSpec) -> APIRouter:
    router = APIRouter()
    # Hosted models served by vLLM's OpenAI layer; the catalog is fixed for a deployment's life.
    # A model of recorded answers has no such layer: it answers as a one-call pattern does.
    hosted: set[str] = set()

    async def is_hosted(model: object) -> bool:
        if not hosted:
            hosted.update(e.id for e in await backend.catalog() if e.kind == "model" and e.openai_layer)
        return isinstance(model, str) and model in hosted

    @router.post("/v1/chat/completions", responses=STREAM_OR_JSON, openapi_extra=_BODY_DOC)
    async def chat_completions(request: Request) -> Any:
        body = await json_body(request)
        if await is_hosted(body.get("model")):
            return await serve(backend, Endpoint.CHAT, body, request, server)
        wire: ChatCompletionRequest = validated(ChatCompletionRequest, body)
        # The request's own deadline, else the server's; the backend enforces it (one mechanism
        # for HTTP and Python callers) and aborts the engine work when it passes.
        timeout_s = wire.chorus.timeout_s or server.request_timeout_s
        update = {"request_id": getattr(request.state, "request_id", None), "timeout_s": timeout_s}
        req = wire.to_request().model_copy(update=update)
        mode = wire.chorus.trace
        if not wire.stream:
            reply = await unless_disconnected(request, backend.chat(req))
            if reply is None:  # the client left; its engine work was cancelled
                return Response(status_code=499)
            await feedback.remember(request.app.state, reply)
            return OpenAIJSONResponse(completion_json(reply, mode))
        include_usage = bool(wire.stream_options and wire.stream_options.include_usage)
        events = backend.stream(req) if wire.chorus.progress else _answer_only(backend.stream(req))
        # Pull the first event before answering so an unknown model, a full queue or a pattern
        # that fails before its answer starts is a proper status rather than an error inside a
        # 200 stream (with progress asked for, the stream starts at the first step that ends).
        first = await anext(events)
        return StreamingResponse(_sse(req.model, first, events, include_usage, mode), media_type="text/event-stream")

    return router


async def _answer_only(events: AsyncIterator[Delta | Progress | Reply]) -> AsyncIterator[Delta | Progress | Reply]:
    """The stream without its progress events (the caller did not ask for them)."""
    async for event in events:
        if not isinstance(event, Progress):
            yield event


async def _sse(
    model: str,
    first: Delta | Progress | Reply,
    events: AsyncIterator[Delta | Progress | Reply],
    include_usage: bool,
    mode: TraceMode,
) -> AsyncIterator[str]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def data(obj: dict[str, Any]) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=True)}\n\n"

    yield data(chunk_json(chunk_id, created, model, {"role": "assistant", "content": ""}))
    try:
        event: Delta | Progress | Reply | None = first
        while event is not None:
            if isinstance(event, Delta):
                yield data(chunk_json(chunk_id, created, model, {"content": event.text}))
            elif isinstance(event, Progress):
                chunk = chunk_json(chunk_id, created, model, {})
                chunk["choices"], chunk["chorus"] = [], {"progress": event.model_dump(mode="json")}
                yield data(chunk)
            else:
                final = chunk_json(chunk_id, created, model, {}, event.finish_reason)
                trace = trace_json(event.trace, mode)
                if trace is not None:
                    final["chorus"] = {"trace": trace}
                yield data(final)
                if include_usage:
                    usage = chunk_json(chunk_id, created, model, {})
                    usage["choices"], usage["usage"] = [], usage_json(event)
                    yield data(usage)
            event = await anext(events, None)
    except Exception as exc:  # noqa: BLE001 - error_body logs what is not chorus's; the stream has started: report in-band, never hang the client
        yield data(error_body(exc))
    yield "data: [DONE]\n\n"
