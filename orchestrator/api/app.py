"""The OpenAI-compatible HTTP API: `build_app(backend, server)`.

    POST /v1/chat/completions   `model` names a pattern or a hosted model; `stream: true` for SSE
    GET  /v1/models             patterns and hosted models
    GET  /health                liveness: 200 while this replica answers; no details
    GET  /health/replicas       every ModelHost replica's health and load (200 all ok, else 503)
    GET  /metrics               Prometheus text of this node's metrics (when the runtime gives it)

Every error, from any layer, leaves in OpenAI's shape `{"error": {"message", "type", "param",
"code"}}`: 4xx for the caller's mistakes, 429 with Retry-After for overload, 503 when nothing can
serve, 504 past the request timeout. All exception handlers are registered in
`orchestrator.api.errors`; the checks before any route (request id, keys, body limit) are
`orchestrator.api.guard.Guard`. The same app runs in-process (tests) and in each Ray Serve replica.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from cluster.errors import DeadlineExceeded
from orchestrator.api.errors import OpenAIJSONResponse, document_errors, error_body, install_error_handlers
from orchestrator.api.guard import Guard
from orchestrator.api.logs import REQUEST_ID_HEADER
from orchestrator.api.protocol import ChatCompletionRequest, chunk_json, completion_json, usage_json
from orchestrator.core.schema import CatalogEntry, ChatRequest, Delta, FleetStatus, Reply
from orchestrator.service.config import ServerSpec

T = TypeVar("T")
MetricsText = Callable[[], Awaitable[str]]


class Backend(Protocol):
    async def chat(self, req: ChatRequest) -> Reply: ...

    def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Reply]: ...

    async def catalog(self) -> list[CatalogEntry]: ...

    async def status(self) -> FleetStatus: ...


class Deadline:
    """The request timeout, shared by every await of one request."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    async def run(self, awaitable: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(awaitable, timeout=max(0.0, self.at - time.monotonic()))
        except TimeoutError:
            if time.monotonic() < self.at:
                raise  # a timeout of the callee's own, not ours
            raise DeadlineExceeded(f"the request did not finish within {self.seconds:g} s") from None


def build_app(
    backend: Backend,
    server: ServerSpec | None = None,
    *,
    api_keys: Sequence[str] | None = None,
    metrics_text: MetricsText | None = None,
    echo_request_id: bool = True,
) -> FastAPI:
    """`api_keys` are the resolved keys (`orchestrator.api.auth.resolve_api_keys`); by default the
    config's own list. `echo_request_id=False` where Serve's proxy already returns the id."""
    server = server or ServerSpec()
    app = FastAPI(title="chorus", version="0.1.0", default_response_class=OpenAIJSONResponse)
    app.state.backend = backend
    app.state.server = server
    install_error_handlers(app)
    app.add_middleware(
        Guard,
        max_request_bytes=server.max_request_bytes,
        api_keys=list(server.api_keys if api_keys is None else api_keys),
        protect_docs=server.protect_docs,
        echo_request_id=echo_request_id,
        body_timeout_s=server.body_timeout_s,
    )
    if server.cors_origins:  # added last, so it runs first: preflights need no key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=server.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "retry-after"],
        )
    _document_errors(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/replicas")
    async def replicas() -> JSONResponse:
        status = await app.state.backend.status()
        return OpenAIJSONResponse(status.model_dump(mode="json"), status_code=200 if status.ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        if metrics_text is None:
            return PlainTextResponse("# no metrics in this process\n", media_type="text/plain; version=0.0.4")
        return PlainTextResponse(await metrics_text(), media_type="text/plain; version=0.0.4")

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

    @app.post(
        "/v1/chat/completions",
        responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        req = body.to_request().model_copy(update={"request_id": request.state.request_id})
        deadline = Deadline(server.request_timeout_s)
        if not body.stream:
            reply = await deadline.run(app.state.backend.chat(req))
            return OpenAIJSONResponse(completion_json(reply))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = app.state.backend.stream(req)
        # Pull the first event before answering so an unknown model or a full queue is a
        # proper 4xx rather than an error inside a 200 stream.
        first = await deadline.run(anext(events))
        return StreamingResponse(
            _sse(req.model, first, events, include_usage, deadline), media_type="text/event-stream"
        )

    return app


def _document_errors(app: FastAPI) -> None:
    """The OpenAPI document lists the error statuses the API really sends."""
    plain = app.openapi
    done = False

    def openapi() -> dict[str, Any]:
        nonlocal done
        schema = plain()
        if not done:
            document_errors(schema)
            done = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _sse(
    model: str,
    first: Delta | Reply,
    events: AsyncIterator[Delta | Reply],
    include_usage: bool,
    deadline: Deadline,
) -> AsyncIterator[str]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def data(obj: dict[str, Any]) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=True)}\n\n"

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
            event = await deadline.run(anext(events, None))
    except Exception as exc:  # noqa: BLE001 - error_body logs what is not chorus's; the stream has started: report in-band, never hang the client
        yield data(error_body(exc))
    yield "data: [DONE]\n\n"
