"""A `ModelHost` serving raw OpenAI requests through its engine's OpenAI layer.

The same host discipline as its own `generate`: admission by priority up to the engine's batch
capacity, the busy clock that splits engine time among the requests sharing it (GPU-seconds),
completed/failed counts and throughput. A stream's SSE lines are coalesced before they cross
Ray. The last item is always an `Accounting`: usage, queue and run time, engine seconds.

Usage of a stream comes from vLLM's own usage chunk: the host asks for it
(`stream_options.include_usage`) and drops it again when the caller did not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from cluster.errors import EngineRejected, RequestError
from serving.engines.base import OpenAIEngine
from serving.host.coalesce import coalesced
from serving.types import Accounting, OpenAICall, OpenAIPart, OpenAIReply, SSEBatch, Usage

if TYPE_CHECKING:
    from serving.host.model_host import ModelHost


def with_usage(body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The body asking for a stream's usage chunk, and whether the caller asked for it itself."""
    if not body.get("stream"):
        return body, True
    options = body.get("stream_options") or {}
    wanted = bool(options.get("include_usage"))
    return {**body, "stream_options": {**options, "include_usage": True}}, wanted


def usage_in(line: str) -> Usage | None:
    """The usage a stream's usage chunk (no choices, a usage object) reports, else None."""
    if '"usage"' not in line or '"choices":[]' not in line:
        return None
    data = json.loads(line.removeprefix("data: "))
    return _usage(data.get("usage"))


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )


async def serve_openai(host: ModelHost, call: OpenAICall) -> AsyncIterator[OpenAIPart]:
    engine = host.engine
    if not isinstance(engine, OpenAIEngine):
        raise EngineRejected(
            f"model '{host.spec.name}' runs on {type(engine).__name__}, which has no OpenAI layer; "
            "only vLLM-hosted models serve the OpenAI API",
            status=400,
        )
    body, wants_usage = with_usage(call.body)
    arrived = time.perf_counter()
    usage = Usage()
    async with host.admission.slot(call.priority):
        entered = time.perf_counter()
        mark = host.clock.enter()
        try:
            source = engine.openai(call.endpoint, body)
            async for batch in coalesced(source, call.coalesce, host.streams):
                lines: list[str] = []
                for item in batch:
                    if isinstance(item, dict):
                        usage = _usage(item.get("usage")) or usage
                        yield OpenAIReply(body=item)
                        continue
                    found = usage_in(item)
                    if found is not None:
                        usage = found
                        if not wants_usage:
                            continue
                    lines.append(item)
                if lines:
                    yield SSEBatch(text="".join(lines))
        except (RequestError, asyncio.CancelledError, GeneratorExit):
            raise  # the caller's mistake, or the caller left (the engine aborted it): not a fault
        except BaseException:
            host.failed += 1
            raise
        finally:
            share = host.clock.leave(mark)
        finished = time.perf_counter()
    host._done(usage.completion_tokens)
    yield Accounting(usage=usage, queue_s=entered - arrived, run_s=finished - entered, engine_seconds=share)
