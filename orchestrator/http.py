"""The OpenAI-compatible HTTP API: `build_app(backend, server)`.

    POST /v1/chat/completions   `model` names a pattern or a hosted model; `stream: true` for SSE
    GET  /v1/models             patterns and hosted models
    GET  /health                200 when every replica is healthy, else 503 with the details

Every error, from any layer, leaves in OpenAI's shape `{"error": {"message", "type", "param",
"code"}}`: 4xx for the caller's mistakes, 429 with Retry-After for overload, 5xx for faults.
All exception handlers are registered in `_install_error_handlers`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .config import ServerSpec
from .errors import ChorusError, OverloadedError
from .openai_schema import (
    ChatCompletionRequest,
    chunk_json,
    completion_json,
    error_json,
    usage_json,
)
from .service import CatalogEntry, ChatRequest, Delta, FleetStatus, Reply

log = logging.getLogger("chorus.http")


class Backend(Protocol):
    async def chat(self, req: ChatRequest) -> Reply: ...

    def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Reply]: ...

    async def catalog(self) -> list[CatalogEntry]: ...

    async def status(self) -> FleetStatus: ...


class _Unauthorized(Exception):
    pass


def build_app(backend: Backend, server: ServerSpec = ServerSpec()) -> FastAPI:
    app = FastAPI(title="chorus", version="0.1.0")
    app.state.backend = backend
    app.state.server = server
    _install_error_handlers(app)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > server.max_request_bytes:
            return _error(413, f"request body of {length} bytes exceeds {server.max_request_bytes}", "invalid_request_error")
        if server.api_keys and request.url.path.startswith("/v1/"):
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in server.api_keys:
                return _error(401, "missing or invalid API key (send Authorization: Bearer <key>)", "authentication_error")
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
    except ChorusError as exc:
        yield data(error_json(str(exc), exc.error_type, exc.http_status))
    except Exception as exc:  # the stream has started: report in-band, never hang the client
        log.exception("stream failed")
        yield data(error_json(f"{type(exc).__name__}: {exc}", "server_error", 500))
    yield "data: [DONE]\n\n"


def _error(status: int, message: str, error_type: str, param: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_json(message, error_type, status, param), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        msg = str(err.get("msg", "invalid request")).removeprefix("Value error, ")
        where = ".".join(loc)
        return _error(400, f"{where}: {msg}" if where else msg, "invalid_request_error", where or None)

    @app.exception_handler(OverloadedError)
    async def overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
        retry = max(1, round(exc.retry_after_s))
        return _error(429, str(exc), exc.error_type, headers={"Retry-After": str(retry)})

    @app.exception_handler(ChorusError)
    async def chorus_error(_: Request, exc: ChorusError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("request failed: %s", exc)
        return _error(exc.http_status, str(exc), exc.error_type)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def fault(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")
