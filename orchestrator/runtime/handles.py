"""Calling a Ray actor as if it were local, written once.

`call`, `stream` and `call_blocking` take a bound actor method (`handle.generate`), await its
result and translate Ray's failures into chorus's error tree exactly once:

- the actor raised: its own exception is re-raised as it was (a chorus error keeps its type and
  HTTP status; a programming error stays a programming error and fails the request);
- the actor is gone or did not answer in time: `lost` (by default `EngineError`, so a dead
  ModelHost is a failed member; callers of the orchestrator pass `UnavailableError`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from cluster.errors import ChorusError, EngineError


@contextmanager
def translated(what: str, lost: type[ChorusError] = EngineError) -> Iterator[None]:
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


async def call(method: Any, *args: Any, what: str, lost: type[ChorusError] = EngineError) -> Any:
    with translated(what, lost):
        return await method.remote(*args)


async def stream(method: Any, *args: Any, what: str, lost: type[ChorusError] = EngineError) -> AsyncIterator[Any]:
    with translated(what, lost):
        async for ref in method.options(num_returns="streaming").remote(*args):
            yield await ref


def call_blocking(
    method: Any, *args: Any, what: str, timeout_s: float, lost: type[ChorusError] = EngineError
) -> Any:
    with translated(what, lost):
        return ray.get(method.remote(*args), timeout=timeout_s)
