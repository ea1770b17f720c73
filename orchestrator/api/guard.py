"""`Guard`: the checks every HTTP request passes before a route sees it (a pure ASGI middleware).

- The request id: the client's `x-request-id` when sane, else a new one; set for the logs
  (`orchestrator.api.logs.current_request_id`), on `request.state.request_id`, and echoed back.
- API keys: `Authorization: Bearer <key>` (the scheme in any case), compared in constant time
  against every configured key; `/health` (liveness) never needs one; the docs do unless
  `server.protect_docs` is off.
- The body must arrive within `server.body_timeout_s`, else 503 with Retry-After: Serve's proxy
  may re-send a request whose replica died to another replica without its body, which would
  otherwise wait for it forever.
- The body limit holds while reading: a declared Content-Length over the limit is refused before
  a byte is read, a malformed or negative one is a 400, and a chunked upload with no length is
  cut off with 413 as soon as it passes the limit (so a huge upload cannot hold a replica).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import Sequence
from pathlib import Path

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.errors import ConfigError
from orchestrator.api.errors import error_response
from orchestrator.api.logs import REQUEST_ID_HEADER, current_request_id, request_id_from
from orchestrator.service.config import ServerSpec

OPEN_PATHS = frozenset({"/health"})
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


def resolve_api_keys(server: ServerSpec, environ: dict[str, str] | None = None) -> list[str]:
    """The accepted keys: the config's list, the env var's (comma-separated) and the file's (one per
    line, `#` comments). Read where the app runs, so secrets need not travel in the config."""
    env = os.environ if environ is None else environ
    keys = list(server.api_keys)
    if server.api_keys_env:
        if server.api_keys_env not in env:
            raise ConfigError("<server>", "server.api_keys_env", f"the environment variable {server.api_keys_env} is not set")
        keys += [k.strip() for k in env[server.api_keys_env].split(",") if k.strip()]
    if server.api_keys_file:
        try:
            lines = Path(server.api_keys_file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError("<server>", "server.api_keys_file", f"cannot read {server.api_keys_file}: {exc.strerror}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys and (server.api_keys_env or server.api_keys_file):
        # Keys were asked for: an empty source must not silently open the API to everyone.
        raise ConfigError("<server>", "server.api_keys_env/api_keys_file", "no API key found in the configured source")
    return keys


def key_matches(authorization: str | None, keys: Sequence[bytes]) -> bool:
    """True when the header carries one of `keys`. Every key is compared, in constant time."""
    if authorization is None:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = token.strip().encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key)
    return found


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_request_bytes: int,
        api_keys: Sequence[str] = (),
        protect_docs: bool = True,
        echo_request_id: bool = True,
        body_timeout_s: float = 10.0,
    ) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.max_bytes = max_request_bytes
        self.keys = [k.encode() for k in api_keys]
        self.protect_docs = protect_docs
        self.echo_request_id = echo_request_id

    def _needs_key(self, path: str) -> bool:
        if not self.keys or path in OPEN_PATHS:
            return False
        return self.protect_docs or path not in DOC_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = request_id_from(headers.get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)
        send = self._echoing(send, request_id) if self.echo_request_id else send
        try:
            await self._guarded(scope, receive, send, headers)
        finally:
            current_request_id.reset(token)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        # Under a Serve route prefix the path carries it (as `root_path`); the rules are the app's own.
        path = str(scope["path"]).removeprefix(str(scope.get("root_path", "")))
        if self._needs_key(path) and not key_matches(headers.get("authorization"), self.keys):
            await error_response(
                401,
                "missing or invalid API key (send Authorization: Bearer <key>)",
                "authentication_error",
                headers={"WWW-Authenticate": "Bearer"},
            )(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                await error_response(
                    400, f"Content-Length {length!r} is not a non-negative integer", "invalid_request_error"
                )(scope, receive, send)
                return
            if int(length) > self.max_bytes:
                await self._too_large(scope, receive, send, f"request body of {int(length)} bytes")
                return
        if scope["method"] in BODYLESS and length is None and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read_body(receive)
        except TimeoutError:
            await error_response(
                503,
                f"the request body did not arrive within {self.body_timeout_s:g} s; retry the request",
                "service_unavailable",
                headers={"Retry-After": "1", "Connection": "close"},
            )(scope, receive, send)
            return
        if body is None:
            await self._too_large(scope, receive, send, "request body")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.body_timeout_s
        while True:
            message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        # Ask the client to close: the unread rest of its upload must not be parsed as a request.
        await error_response(
            413, f"{what} exceeds {self.max_bytes} bytes", "invalid_request_error", headers={"Connection": "close"}
        )(scope, receive, send)

    @staticmethod
    def _echoing(send: Send, request_id: str) -> Send:
        async def echo(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        return echo


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the buffered body over once, then waits on the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
