"""The job's link to the orchestrator's Serve handle: replies pass through, Serve's failures
arrive as chorus's typed errors (the caller retries an overload and stops on a deployment gone)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ray.serve._private.common import DeploymentID
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from cluster.errors import NotRunning, OverloadedError
from orchestrator.core.schema import ChatRequest
from orchestrator.jobs.link import ChorusLink
from serving.types import Message


class Method:
    """One method of a fake DeploymentHandle: `.remote(...)` returns an awaitable that raises."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def remote(self, *args: Any) -> Any:
        async def fail() -> Any:
            raise self.exc

        return fail()


class Handle:
    def __init__(self, exc: Exception) -> None:
        self.chat = Method(exc)


def ask(exc: Exception) -> None:
    req = ChatRequest(model="router", messages=[Message(role="user", content="hi")], priority=10)
    asyncio.run(ChorusLink(Handle(exc)).chat(req))


def test_serve_back_pressure_is_an_overload_with_its_retry_after():
    with pytest.raises(OverloadedError) as err:
        ask(BackPressureError(num_queued_requests=9, max_queued_requests=8, retry_after_s=2.5))
    assert err.value.retry_after_s == 2.5


def test_an_unavailable_deployment_is_not_running():
    with pytest.raises(NotRunning):
        ask(DeploymentUnavailableError(DeploymentID(name="Orchestrator", app_name="chorus")))
