"""`GatedEngine`: a scripted engine whose start finishes only once a Serve application runs.

A deploy that started its request tier after the engines were ready would wait on it forever
(until its deadline): deploying one proves that the two start together."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cluster.errors import EngineError
from cluster.spec import ModelSpec
from tests.fakes.scripted_engine import Script, ScriptedEngine

POLL_S = 0.1


class GatedEngine(ScriptedEngine):
    def __init__(self, spec: ModelSpec, script: Script, *, app: str, timeout_s: float = 120.0, **kw: Any) -> None:
        super().__init__(spec, script, **kw)
        self.app, self.timeout_s = app, timeout_s

    async def start(self) -> dict[str, float]:
        from ray import serve

        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            found = (await asyncio.to_thread(serve.status)).applications.get(self.app)
            if found is not None and found.status == "RUNNING":
                return await super().start()
            await asyncio.sleep(POLL_S)  # readiness polling of the application, bounded by the deadline
        raise EngineError(f"the Serve application '{self.app}' was not running within {self.timeout_s:g} s")
