"""The OpenAI-compatible HTTP API: `build_app(backend, server)`.

    POST /v1/chat/completions   `model` names a pattern or a hosted model; `stream: true` for SSE
    POST /v1/completions, /v1/embeddings, /tokenize, /detokenize   hosted models (vLLM's own layer)
    POST /v1/chorus/feedback    a score for an adaptive pattern's answer (orchestrator.api.feedback)
    GET  /v1/models             patterns and hosted models
    GET  /health                liveness: 200 while this replica answers; no details
    GET  /health/replicas       every ModelHost replica's health and load (200 all ok, else 503)
    GET  /metrics               Prometheus text of this node's metrics (when the runtime gives it)

Every error, from any layer, leaves in OpenAI's shape `{"error": {"message", "type", "param",
"code"}}`: 4xx for the caller's mistakes, 429 with Retry-After for overload, 503 when nothing can
serve, 504 past the request's deadline (`timeout_s`, enforced by the backend, which aborts the
engine work it started). All exception handlers are registered in
`orchestrator.api.errors`; the checks before any route (request id, keys, body limit) are
`orchestrator.api.guard.Guard`. The same app runs in-process (tests) and in each Ray Serve replica.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse

from orchestrator.api import feedback
from orchestrator.api.chat import ChatBackend, chat_router
from orchestrator.api.errors import OpenAIJSONResponse, document_errors, install_error_handlers
from orchestrator.api.guard import Guard
from orchestrator.api.hosted import hosted_router
from orchestrator.api.logs import REQUEST_ID_HEADER
from orchestrator.core.schema import FleetStatus
from orchestrator.service.config import ServerSpec

__all__ = ["Backend", "build_app"]

MetricsText = Callable[[], Awaitable[str]]


class Backend(ChatBackend, Protocol):
    async def status(self) -> FleetStatus: ...


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
    app.include_router(feedback.router)
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

    app.include_router(chat_router(backend, server))
    app.include_router(hosted_router(backend, server))
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
