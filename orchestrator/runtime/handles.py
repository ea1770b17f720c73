"""Calling a Ray actor as if it were local, written once.

`call` and `stream` take a bound actor method (`handle.generate`), await its
result and translate Ray's failures into chorus's error tree exactly once:

- the actor raised: its own exception is re-raised as it was (a chorus error keeps its type and
  HTTP status; a programming error stays a programming error and fails the request);
- the actor is gone or did not answer in time: `lost` (by default `ReplicaLost`, an
  `EngineError`: a dead ModelHost is a failed member, or a call the fleet retries elsewhere;
  callers of the orchestrator pass `UnavailableError`).

Cancellation crosses the hop too: when the awaiting task is cancelled (its HTTP client left, its
deadline passed, its pattern stopped early), the remote task is cancelled with `ray.cancel`,
which cancels the actor's async method, and so on down to the engine, which aborts the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError, TaskCancelledError

from cluster.errors import ChorusError, ReplicaLost


@contextmanager
def translated(what: str, lost: type[ChorusError] = ReplicaLost) -> Iterator[None]:
    try:
        yield
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, Exception):
            raise cause from None
        raise
    except RayActorError:
        # The message names no actor id, pid or address: it may reach an HTTP client.
        raise lost(f"{what} is not available (its process died or restarted)") from None
    except GetTimeoutError:
        raise lost(f"{what} did not answer in time") from None


def _cancel(ref: Any) -> None:
    """Cancel a remote actor task this side stopped waiting for (a finished one is left alone)."""
    try:
        ray.cancel(ref)
    except (RayActorError, TaskCancelledError, ValueError):
        pass  # the actor is gone or the task already ended: nothing left to cancel


async def call(method: Any, *args: Any, what: str, lost: type[ChorusError] = ReplicaLost) -> Any:
    with translated(what, lost):
        ref = method.remote(*args)
        try:
            return await ref
        except asyncio.CancelledError:
            _cancel(ref)
            raise


async def stream(method: Any, *args: Any, what: str, lost: type[ChorusError] = ReplicaLost) -> AsyncIterator[Any]:
    with translated(what, lost):
        refs = method.options(num_returns="streaming").remote(*args)
        finished = False
        try:
            async for ref in refs:
                yield await ref
            finished = True
        finally:
            # Cancelled, closed early by the consumer, or failed: stop the remote generator.
            if not finished:
                _cancel(refs)
