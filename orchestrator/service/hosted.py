"""A hosted model's OpenAI API through the fleet: the raw body goes to a replica's ModelHost,
whose engine serves it with vLLM's own OpenAI layer; vLLM's response or SSE comes back as is.

chorus adds what it adds to every call: the admission check (429 when every replica is full),
the request's priority and budget, balancing over replicas, and a trace with the call's
engine- and GPU-seconds, streamed or not.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from cluster.errors import Unsupported
from orchestrator.core.budget import Budget
from orchestrator.core.trace import Step, Trace
from orchestrator.routing.fleet import Fleet
from serving.types import Accounting, Coalesce, Endpoint, OpenAICall, OpenAIReply, Sampling, SSEBatch

DONE = "data: [DONE]\n\n"


@dataclass(frozen=True)
class HostedRequest:
    """What the request tier asks of a hosted model (transport-free, pickles across Ray)."""

    endpoint: Endpoint
    body: dict[str, Any]
    priority: int = 0
    budget: Budget | None = None
    request_id: str | None = None  # the caller's id (HTTP x-request-id), into the trace
    timeout_s: float | None = None  # the request's deadline; None: server.request_timeout_s


def with_defaults(req: HostedRequest, sampling: Sampling) -> HostedRequest:
    """The config's `sampling:` defaults for what the request leaves out, as for every model
    call chorus makes (a request's own fields win)."""
    if not req.endpoint.generates:
        return req
    body = dict(req.body)
    asked = "max_tokens" in body or "max_completion_tokens" in body
    if not asked:
        body["max_completion_tokens" if req.endpoint is Endpoint.CHAT else "max_tokens"] = sampling.max_tokens
    defaults = {"temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed}
    body |= {k: v for k, v in defaults.items() if k not in body and v is not None}
    if sampling.stop and "stop" not in body:
        body["stop"] = list(sampling.stop)
    return replace(req, body=body)


def capped(endpoint: Endpoint, body: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """The body with its completion bounded by the budget's tokens (a single call spends only
    what it generates beyond its prompt, and the prompt is known only to the engine)."""
    if budget.max_tokens is None or not endpoint.generates:
        return body
    if endpoint is Endpoint.CHAT:
        asked = body.get("max_completion_tokens") or body.get("max_tokens")
        field = "max_completion_tokens"
    else:
        asked = body.get("max_tokens")
        field = "max_tokens"
    if asked is not None and not isinstance(asked, int):
        return body  # not a number: vLLM's own validation refuses it, naming the field
    limit = budget.max_tokens if asked is None else min(asked, budget.max_tokens)
    out = {k: v for k, v in body.items() if k not in ("max_tokens", "max_completion_tokens")}
    return out | {field: limit}


async def serve_hosted(
    fleet: Fleet, req: HostedRequest, *, budget: Budget, coalesce: Coalesce, full_trace: bool
) -> AsyncGenerator[OpenAIReply | SSEBatch | Trace, None]:
    """vLLM's reply (one `OpenAIReply`) or stream (`SSEBatch`es without the closing `[DONE]`),
    then the call's closed `Trace`."""
    model = str(req.body.get("model", ""))
    n = req.body.get("n")
    if budget.max_model_calls is not None and isinstance(n, int) and n > budget.max_model_calls:
        raise Unsupported("n", f"{n} choices exceed the budget of {budget.max_model_calls} model calls")
    call = OpenAICall(
        endpoint=req.endpoint, body=capped(req.endpoint, req.body, budget), priority=req.priority, coalesce=coalesce
    )
    trace = Trace(pattern=model, kind="model", request_id=req.request_id)
    step = Step(index=0, name=req.endpoint.value, role=model, model=model)
    trace.steps.append(step)
    t0 = time.perf_counter()
    try:
        # Closing this stream early (the client left, the deadline passed) closes the fleet's
        # at once, which cancels the remote call and aborts the engine request.
        async with aclosing(fleet.openai(model, call)) as parts:
            async for part, replica in parts:
                step.replica = replica.index
                if isinstance(part, Accounting):
                    step.prompt_tokens = part.usage.prompt_tokens
                    step.completion_tokens = part.usage.completion_tokens
                    step.cached_tokens = part.usage.cached_tokens
                    step.queue_s, step.run_s = part.queue_s, part.run_s
                    step.engine_seconds = part.engine_seconds
                    step.gpu_seconds = part.engine_seconds * replica.gpus
                elif isinstance(part, SSEBatch):
                    text = part.text.removesuffix(DONE)
                    if text:
                        yield SSEBatch(text=text)
                else:
                    if full_trace:
                        step.output = _first_text(part.body)
                    yield part
    except BaseException as exc:
        step.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        step.latency_s = time.perf_counter() - t0
    trace.close(step.latency_s)
    yield trace


def _first_text(body: dict[str, Any]) -> str:
    choices = body.get("choices") or []
    if not choices:
        return ""
    first = choices[0]
    message = first.get("message") or {}
    return str(message.get("content") or first.get("text") or "")


async def whole_reply(parts: AsyncIterator[OpenAIReply | SSEBatch | Trace]) -> tuple[OpenAIReply | None, Trace | None]:
    """A non-streamed call's reply and trace."""
    reply: OpenAIReply | None = None
    trace: Trace | None = None
    async for part in parts:
        if isinstance(part, OpenAIReply):
            reply = reply or part
        elif isinstance(part, Trace):
            trace = part
    return reply, trace
