"""Python access to a running chorus through Ray: `connect(address).ask(pattern, messages)`.

    from orchestrator.client import connect
    chorus = connect()                      # the cluster `chorus up` recorded, or "auto"
    reply = chorus.ask("router", "Write a haiku about GPUs")
    print(reply.text, reply.trace.totals)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import ray

from serving.types import Message

from orchestrator.core.budget import Budget
from orchestrator.runtime.deploy import NAMESPACE, find_orchestrator
from cluster.errors import NotRunning
from orchestrator.runtime.handles import call, call_blocking
from orchestrator.core.schema import CatalogEntry, ChatRequest, FleetStatus, Reply
from orchestrator.runtime.state import read_state

WHAT = "the chorus orchestrator"


def _messages(messages: str | Sequence[Message | dict[str, str]]) -> list[Message]:
    if isinstance(messages, str):
        return [Message(role="user", content=messages)]
    return [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]


class Client:
    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def request(
        self,
        model: str,
        messages: str | Sequence[Message | dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        budget: Budget | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
    ) -> ChatRequest:
        return ChatRequest(
            model=model,
            messages=_messages(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            budget=budget,
            priority=priority,
            timeout_s=timeout_s,
        )

    def ask(self, model: str, messages: str | Sequence[Message | dict[str, str]], *, timeout_s: float = 600, **kw: Any) -> Reply:
        """Run a pattern (or a hosted model) and wait for its reply. Raises chorus's own errors.

        `timeout_s` is also the request's deadline: chorus aborts it (DeadlineExceeded) rather
        than keep engines busy for a caller that stopped waiting."""
        request = self.request(model, messages, timeout_s=timeout_s, **kw)
        reply: Reply = call_blocking(self.handle.chat, request, what=WHAT, timeout_s=timeout_s + 5, lost=NotRunning)
        return reply

    async def ask_async(self, model: str, messages: str | Sequence[Message | dict[str, str]], **kw: Any) -> Reply:
        reply: Reply = await call(self.handle.chat, self.request(model, messages, **kw), what=WHAT, lost=NotRunning)
        return reply

    def models(self) -> list[CatalogEntry]:
        entries: list[CatalogEntry] = call_blocking(self.handle.catalog, what=WHAT, timeout_s=60, lost=NotRunning)
        return entries

    def status(self) -> FleetStatus:
        status: FleetStatus = call_blocking(self.handle.status, what=WHAT, timeout_s=60, lost=NotRunning)
        return status


def _set_ray_auth_mode(mode: str) -> None:
    """Ray only turns token auth on by itself for clusters it finds as "auto"; for a recorded
    address the client must say so. Ray caches its config at import, so refresh it the way
    Ray's own token set-up does."""
    from ray._raylet import Config

    os.environ["RAY_AUTH_MODE"] = mode
    Config.initialize("")


def ray_connect(address: str | None = None) -> str:
    """Connect this process to Ray: the given address, else the one `chorus up` recorded, else
    "auto". Returns the address used."""
    state = read_state()
    if not address and state is not None:
        address = state.address
        if state.ray_auth_mode and "RAY_AUTH_MODE" not in os.environ:
            _set_ray_auth_mode(state.ray_auth_mode)
    address = address or "auto"
    if not ray.is_initialized():
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level="error")
        except ConnectionError as exc:
            raise NotRunning(f"no Ray cluster at {address}: {exc}; start chorus with `chorus up`") from None
    return address


def connect(address: str | None = None) -> Client:
    """Connect this process to the chorus cluster and find its orchestrator."""
    address = ray_connect(address)
    try:
        return Client(find_orchestrator())
    except ValueError:
        raise NotRunning(
            f"no chorus orchestrator in Ray namespace '{NAMESPACE}' at {address}; start one with `chorus up`"
        ) from None
