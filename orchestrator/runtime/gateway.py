"""`Gateway`: a Ray actor serving the HTTP API (uvicorn in the actor's event loop).

Running the server as an actor lets `chorus up --address` return while the API keeps serving,
the way Ray Serve runs its proxy. The socket is bound before `start` returns, so the URL it
reports accepts connections at once.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from orchestrator.api.app import build_app
from orchestrator.runtime.actor import RayBackend
from orchestrator.service.config import ServerSpec


class Gateway:
    def __init__(self, server: ServerSpec, orchestrator: Any) -> None:
        self.spec = server
        self.app = build_app(RayBackend(orchestrator), server)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    async def start(self) -> str:
        if self._task is not None:
            return self.url
        family = socket.AF_INET6 if ":" in self.spec.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.spec.host, self.spec.port))
        sock.listen(2048)
        port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        # A wildcard bind is reachable on loopback; report that address.
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.spec.host, self.spec.host)
        if family == socket.AF_INET6 and not host.startswith("["):
            host = f"[{host}]"
        self.url = f"http://{host}:{port}/v1"
        return self.url

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._task = None
