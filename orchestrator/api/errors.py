"""chorus's error tree → HTTP, in one place: the status and OpenAI error type of every class, the
body in OpenAI's shape `{"error": {"message", "type", "param", "code"}}`, and every handler.

Looked up by walking the class's MRO, so a new subclass inherits its parent's status. A
programming error (anything outside the tree) is a 500 whose body says only that it was logged:
its text may carry internals (paths, ids) that must not reach a client.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from cluster.errors import (
    ChorusError,
    DeadlineExceeded,
    EngineError,
    EngineRejected,
    OverloadedError,
    RequestError,
    StepFailed,
    UnavailableError,
    UnknownModelError,
    UnknownResponse,
)

log = logging.getLogger("chorus.http")

# class → (HTTP status, OpenAI error type); the most specific class listed wins.
STATUS: dict[type[ChorusError], tuple[int, str]] = {
    UnknownModelError: (404, "not_found_error"),
    UnknownResponse: (404, "not_found_error"),
    RequestError: (400, "invalid_request_error"),
    OverloadedError: (429, "rate_limit_error"),
    UnavailableError: (503, "service_unavailable"),
    DeadlineExceeded: (504, "timeout_error"),
    EngineError: (500, "server_error"),
    StepFailed: (500, "server_error"),
    ChorusError: (500, "server_error"),
}

INTERNAL = "internal error: the server logged the details"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorBody(BaseModel):
    """Every error chorus sends, in OpenAI's shape."""

    error: ErrorDetail


# The statuses the API really sends, for the OpenAPI document (FastAPI's default 422 is never sent:
# a malformed body is a 400).
ERROR_STATUSES: dict[int, str] = {
    400: "The request is malformed; the message names the field.",
    401: "Missing or wrong API key (when keys are configured).",
    404: "No such pattern, model, route or (feedback) response id.",
    413: "The request body exceeds `server.max_request_bytes`.",
    429: "Every replica of a needed model is saturated; see Retry-After.",
    503: "Nothing can serve the request now (e.g. the orchestrator restarted); see Retry-After.",
    504: "The request ran past its deadline (`timeout_s`, default `server.request_timeout_s`).",
}


class OpenAIJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped, so any text (even a lone surrogate a client sent) encodes."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def status_of(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, EngineRejected) and 400 <= exc.status < 500:
        # vLLM's own status for its refusal (400 invalid, 404 unknown LoRA, 413 too large…).
        return exc.status, "not_found_error" if exc.status == 404 else "invalid_request_error"
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500, "server_error"


def error_json(message: str, error_type: str, status: int, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": status}}


def error_response(
    status: int, message: str, error_type: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return OpenAIJSONResponse(error_json(message, error_type, status, param), status_code=status, headers=headers)


def error_body(exc: BaseException) -> dict[str, Any]:
    """The body for an error met after a stream has started (reported in-band)."""
    if isinstance(exc, ChorusError):
        status, kind = status_of(exc)
        return error_json(str(exc), kind, status, param_of(exc))
    log.error("stream failed", exc_info=exc)
    return error_json(INTERNAL, "server_error", 500)


def param_of(exc: ChorusError) -> str | None:
    """The request field an error is about, where it names one (`Unsupported`, `EngineRejected`)."""
    param = getattr(exc, "param", None)
    return param if isinstance(param, str) else None


def retry_after(exc: ChorusError) -> dict[str, str] | None:
    if isinstance(exc, OverloadedError | UnavailableError):
        return {"Retry-After": str(max(1, round(exc.retry_after_s)))}
    return None


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Make an OpenAPI document list the error statuses really sent, in OpenAI's shape."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body.pop("$defs", {}))
    components["ErrorBody"] = body
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, text in ERROR_STATUSES.items():
                responses.setdefault(str(status), {"description": text, "content": {"application/json": {"schema": ref}}})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        msg = str(err.get("msg", "invalid request")).removeprefix("Value error, ")
        where = ".".join(loc)
        return error_response(400, f"{where}: {msg}" if where else msg, "invalid_request_error", where or None)

    @app.exception_handler(ChorusError)
    async def chorus_error(_: Request, exc: ChorusError) -> JSONResponse:
        status, kind = status_of(exc)
        if status >= 500:
            log.error("request failed: %s", exc)
        return error_response(status, str(exc), kind, param_of(exc), headers=retry_after(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        # Keep the exception's headers: a 405 carries `Allow`.
        return error_response(exc.status_code, str(exc.detail), kind, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def fault(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return error_response(500, INTERNAL, "server_error")
