"""Python access to a running chorus through Ray: `connect(address).ask(pattern, messages)`.

    from orchestrator.client import connect
    chorus = connect()                      # the cluster `chorus up` recorded, "auto", or ray://…
    reply = chorus.ask("router", "Write a haiku about GPUs")
    print(reply.text, reply.trace.totals)

The client holds a Serve handle (`DeploymentHandle`) to the orchestrator deployment, so its calls
are spread over the replicas like HTTP requests; it works from any driver, Ray Client included.

    from orchestrator.patterns import decision_of
    route = decision_of(reply.trace)        # what the pattern decided, as its typed model (docs/trace.md)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import ray
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from cluster.errors import DeadlineExceeded, NotRunning, OverloadedError
from orchestrator.core.budget import Budget
from orchestrator.core.schema import CatalogEntry, ChatRequest, FleetStatus, Reply
from orchestrator.runtime.deploy import NAMESPACE, find_orchestrator
from orchestrator.runtime.handles import translated
from orchestrator.runtime.state import read_state
from serving.types import Message

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
        # A little longer than the deadline, so chorus's own DeadlineExceeded is what arrives.
        with served(timeout_s + 5):
            reply: Reply = self.handle.chat.remote(request).result(timeout_s=timeout_s + 5)
        return reply

    async def ask_async(self, model: str, messages: str | Sequence[Message | dict[str, str]], **kw: Any) -> Reply:
        with served():
            reply: Reply = await self.handle.chat.remote(self.request(model, messages, **kw))
        return reply

    def models(self) -> list[CatalogEntry]:
        with served():
            entries: list[CatalogEntry] = self.handle.catalog.remote().result(timeout_s=60)
        return entries

    def status(self) -> FleetStatus:
        with served():
            status: FleetStatus = self.handle.status.remote().result(timeout_s=60)
        return status


@contextmanager
def served(timeout_s: float = 60) -> Iterator[None]:
    """Serve's and Ray's failures as chorus's errors (the replica's own errors pass as they are);
    `timeout_s` is the wait the caller gave the call. Every caller of the orchestrator's Serve
    handle goes through it."""
    try:
        with translated(WHAT, NotRunning):
            yield
    except TimeoutError:
        raise DeadlineExceeded(timeout_s, WHAT) from None
    except BackPressureError as exc:
        raise OverloadedError(f"{WHAT} is at capacity; retry shortly", retry_after_s=exc.retry_after_s or 1.0) from None
    except DeploymentUnavailableError:
        raise NotRunning(f"{WHAT} is not available now") from None


def set_ray_auth_mode(mode: str) -> None:
    """Ray only turns token auth on by itself for clusters it finds as "auto"; for a recorded
    address the client must say so. Ray caches its config at import, so refresh it the way
    Ray's own token set-up does."""
    from ray._raylet import Config  # type: ignore[attr-defined]  # absent from Ray's _raylet stub

    os.environ["RAY_AUTH_MODE"] = mode
    Config.initialize("")


def ray_connect(address: str | None = None) -> str:
    """Connect this process to Ray: the given address, else the one `chorus up` recorded, else
    "auto". Returns the address used."""
    state = read_state()
    if not address and state is not None:
        address = state.address
        if state.ray_auth_mode and "RAY_AUTH_MODE" not in os.environ:
            set_ray_auth_mode(state.ray_auth_mode)
    address = address or "auto"
    # Serve's handle logs its routing set-up at INFO on the caller's terminal: not chorus's output.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    if not ray.is_initialized():
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as exc:
            raise NotRunning(f"no Ray cluster at {address}: {exc}; start chorus with `chorus up`") from None
    return address


def connect(address: str | None = None) -> Client:
    """Connect this process to the chorus cluster and find its orchestrator deployment."""
    address = ray_connect(address)
    try:
        return Client(find_orchestrator())
    except NotRunning as exc:
        raise NotRunning(f"{exc} at {address}; start one with `chorus up`") from None
