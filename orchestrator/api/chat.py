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
from fastapi.responses import JSONResponse, StreamingResponse

from orchestrator.api.errors import error_body
from orchestrator.api.hosted import HostedBackend, json_body, serve, validated
from orchestrator.api.protocol import (
    ChatCompletionRequest,
    TraceMode,
    chunk_json,
    completion_json,
    trace_json,
    usage_json,
)
from orchestrator.core.schema import CatalogEntry, ChatRequest, Delta, Progress, Reply
from serving.types import Endpoint


class ChatBackend(HostedBackend, Protocol):
    async def chat(self, req: ChatRequest) -> Reply: ...

    def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Progress | Reply]: ...

    async def catalog(self) -> list[CatalogEntry]: ...


def chat_router(backend: ChatBackend) -> APIRouter:
    router = APIRouter()
    hosted: set[str] = set()  # hosted model names; the catalog is fixed for a deployment's life

    async def is_hosted(model: object) -> bool:
        if not hosted:
            hosted.update(e.id for e in await backend.catalog() if e.kind == "model")
        return isinstance(model, str) and model in hosted

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        body = await json_body(request)
        if await is_hosted(body.get("model")):
            return await serve(backend, Endpoint.CHAT, body)
        wire: ChatCompletionRequest = validated(ChatCompletionRequest, body)
        req = wire.to_request()
        mode = wire.chorus.trace
        if not wire.stream:
            return JSONResponse(completion_json(await backend.chat(req), mode))
        include_usage = bool(wire.stream_options and wire.stream_options.include_usage)
        events = backend.stream(req)
        first = await anext(events)  # a refusal before the stream starts is a proper 4xx
        return StreamingResponse(
            _sse(req.model, first, events, include_usage, mode, wire.chorus.progress), media_type="text/event-stream"
        )

    return router


async def _sse(
    model: str,
    first: Delta | Progress | Reply,
    events: AsyncIterator[Delta | Progress | Reply],
    include_usage: bool,
    mode: TraceMode,
    progress: bool,
) -> AsyncIterator[str]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def data(obj: dict[str, Any]) -> str:
        return f"data: {json.dumps(obj)}\n\n"

    yield data(chunk_json(chunk_id, created, model, {"role": "assistant", "content": ""}))
    try:
        event: Delta | Progress | Reply | None = first
        while event is not None:
            if isinstance(event, Delta):
                yield data(chunk_json(chunk_id, created, model, {"content": event.text}))
            elif isinstance(event, Progress):
                if progress:
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
    except Exception as exc:  # the stream has started: report in-band, never hang the client
        yield data(error_body(exc))
    yield "data: [DONE]\n\n"
