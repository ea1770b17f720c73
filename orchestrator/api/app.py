"""The OpenAI-compatible HTTP API: `build_app(backend, server)`.

    POST /v1/chat/completions   `model` names a pattern or a hosted model; `stream: true` for SSE
    POST /v1/completions, /v1/embeddings, /tokenize, /detokenize   hosted models (vLLM's own layer)
    GET  /v1/models             patterns and hosted models
    GET  /health                200 when every replica is healthy, else 503 with the details

Every error, from any layer, leaves in OpenAI's shape `{"error": {"message", "type", "param",
"code"}}`: 4xx for the caller's mistakes, 429 with Retry-After for overload, 5xx for faults.
All exception handlers are registered in `orchestrator.api.errors`.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from orchestrator.api.chat import ChatBackend, chat_router
from orchestrator.api.errors import error_response, install_error_handlers
from orchestrator.api.hosted import hosted_router
from orchestrator.core.schema import FleetStatus
from orchestrator.service.config import ServerSpec


class Backend(ChatBackend, Protocol):
    async def status(self) -> FleetStatus: ...


def build_app(backend: Backend, server: ServerSpec = ServerSpec()) -> FastAPI:
    app = FastAPI(title="chorus", version="0.1.0")
    app.state.backend = backend
    app.state.server = server
    install_error_handlers(app)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > server.max_request_bytes:
            return error_response(413, f"request body of {length} bytes exceeds {server.max_request_bytes}", "invalid_request_error")
        if server.api_keys and request.url.path != "/health":
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

    app.include_router(chat_router(backend))
    app.include_router(hosted_router(backend))

    return app
