"""A middleware for Serve's HTTP proxy: an orchestrator replica that died under a request reads as
503 in OpenAI's shape, with Retry-After, never as a bare 500.

Serve's proxy answers 408/429/503 itself, but when the replica serving a request dies it sends no
response and its HTTP server falls back to a plain-text 500. This middleware sees that (the proxy
finished, or failed, without starting a response) and answers 503 instead. Serve loads it from
`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=orchestrator.runtime.proxy_guard:middlewares` in the
environment of the cluster (`chorus up` sets it on the Ray it starts).
"""

from __future__ import annotations

import logging

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.api.errors import error_response

log = logging.getLogger("chorus.proxy")

LOST = "the orchestrator replica serving this request stopped; retry it"


class ReplicaLossAs503:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            if started:
                raise
            log.warning("request failed in the proxy before a response started", exc_info=True)
        if not started:
            await error_response(503, LOST, "service_unavailable", headers={"Retry-After": "1"})(scope, receive, send)


def middlewares() -> list[Middleware]:
    """The callback Serve's proxy calls (see the module docstring)."""
    return [Middleware(ReplicaLossAs503)]
