"""`Deadline`: one request's timeout (`server.request_timeout_s`), shared by all of its awaits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from cluster.errors import DeadlineExceeded

T = TypeVar("T")


class Deadline:
    """The request timeout, shared by every await of one request (504 once it has passed)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    async def run(self, awaitable: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(awaitable, timeout=max(0.0, self.at - time.monotonic()))
        except TimeoutError:
            if time.monotonic() < self.at:
                raise  # a timeout of the callee's own, not ours
            raise DeadlineExceeded(f"the request did not finish within {self.seconds:g} s") from None
