"""The OpenAI-compatible HTTP API: `build_app(backend, server)`.

    POST /v1/chat/completions   `model` names a pattern or a hosted model; `stream: true` for SSE
    POST /v1/chorus/feedback    a score for an adaptive pattern's answer (orchestrator.api.feedback)
    GET  /v1/models             patterns and hosted models
    GET  /health                200 when every replica is healthy, else 503 with the details

Every error, from any layer, leaves in OpenAI's shape `{"error": {"message", "type", "param",
"code"}}`: 4xx for the caller's mistakes, 429 with Retry-After for overload, 5xx for faults.
All exception handlers are registered in `orchestrator.api.errors`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from orchestrator.api import feedback
from orchestrator.api.errors import error_body, error_response, install_error_handlers
from orchestrator.api.protocol import ChatCompletionRequest, chunk_json, completion_json, usage_json
from orchestrator.core.schema import CatalogEntry, ChatRequest, Delta, FleetStatus, Reply
from orchestrator.service.config import ServerSpec


class Backend(Protocol):
    async def chat(self, req: ChatRequest) -> Reply: ...

    def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Reply]: ...

    async def catalog(self) -> list[CatalogEntry]: ...

    async def status(self) -> FleetStatus: ...


def build_app(backend: Backend, server: ServerSpec = ServerSpec()) -> FastAPI:
    app = FastAPI(title="chorus", version="0.1.0")
    app.state.backend = backend
    app.state.server = server
    install_error_handlers(app)
    app.include_router(feedback.router)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > server.max_request_bytes:
            return error_response(413, f"request body of {length} bytes exceeds {server.max_request_bytes}", "invalid_request_error")
        if server.api_keys and request.url.path.startswith("/v1/"):
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in server.api_keys:
                return error_response(401, "missing or invalid API key (send Authorization: Bearer <key>)", "authentication_error")
        return await call_next(request)

    @app.get("/health")
    async def health() -> JSONResponse:
        status = await app.state.backend.status()
        return JSONResponse(status.model_dump(mode="json"), status_code=200 if status.ok else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entries = await app.state.backend.catalog()
        now = int(time.time())
        return {
            "object": "list",
            "data": [
                {
                    "id": e.id,
                    "object": "model",
                    "created": now,
                    "owned_by": "chorus",
                    "chorus": {"kind": e.kind, "pattern_kind": e.pattern_kind, "description": e.description},
                }
                for e in entries
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        req = body.to_request()
        if not body.stream:
            reply = await app.state.backend.chat(req)
            feedback.remember(app.state, reply)
            return JSONResponse(completion_json(reply))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = app.state.backend.stream(req)
        # Pull the first event before answering so an unknown model or a full queue is a
        # proper 4xx rather than an error inside a 200 stream.
        first = await anext(events)
        return StreamingResponse(_sse(req.model, first, events, include_usage), media_type="text/event-stream")

    return app


async def _sse(
    model: str, first: Delta | Reply, events: AsyncIterator[Delta | Reply], include_usage: bool
) -> AsyncIterator[str]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def data(obj: dict[str, Any]) -> str:
        return f"data: {json.dumps(obj)}\n\n"

    yield data(chunk_json(chunk_id, created, model, {"role": "assistant", "content": ""}))
    try:
        event: Delta | Reply | None = first
        while event is not None:
            if isinstance(event, Delta):
                yield data(chunk_json(chunk_id, created, model, {"content": event.text}))
            else:
                final = chunk_json(chunk_id, created, model, {}, event.finish_reason)
                final["chorus"] = {"trace": event.trace.model_dump(mode="json")}
                yield data(final)
                if include_usage:
                    usage = chunk_json(chunk_id, created, model, {})
                    usage["choices"], usage["usage"] = [], usage_json(event)
                    yield data(usage)
            event = await anext(events, None)
    except Exception as exc:  # the stream has started: report in-band, never hang the client
        yield data(error_body(exc))
    yield "data: [DONE]\n\n"
