"""Graceful drain: stop admitting requests, let the running ones finish up to a deadline.

`chorus down` closes the gate of every orchestrator replica first: new requests get `Draining` (HTTP 503 with Retry-After)
while those already inside run to their end, or until the drain deadline; then engines stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from cluster.errors import Draining


class Gate:
    def __init__(self) -> None:
        self.inside = 0
        self.closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def admit(self) -> Iterator[None]:
        if self.closed:
            raise Draining("chorus is shutting down and takes no new requests", retry_after_s=30.0)
        self.inside += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.inside -= 1
            if self.inside == 0:
                self._idle.set()

    def close(self) -> None:
        """Admit nothing more; the requests inside run on."""
        self.closed = True

    async def drain(self, timeout_s: float) -> int:
        """Close the gate and wait up to `timeout_s` for the requests inside; returns how many
        were still running at the deadline (0: all finished)."""
        self.closed = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            pass  # the deadline passed: the caller stops the engines under what is left
        return self.inside
