"""`ModelHost.openai`: admission, engine-time accounting and coalescing around an engine's OpenAI
layer (a scripted stand-in here; vLLM's own layer runs in tests/integration)."""

from __future__ import annotations

import json

import pytest

from cluster.errors import EngineRejected
from cluster.spec import ModelSpec
from serving.engines.base import EngineHealth
from serving.host.model_host import ModelHost
from serving.types import Accounting, Coalesce, Endpoint, GenerationRequest, OpenAICall, OpenAIReply, SSEBatch
from tests.fakes.scripted_engine import ScriptedEngine

SPEC = ModelSpec(name="m", source="scripted", max_num_seqs=2)
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def host(answer: str = "one two three four five") -> ModelHost:
    h = ModelHost(SPEC, 0, ScriptedEngine, {"script": lambda r: answer})  # type: ignore[arg-type]
    h.state = "ready"  # as after start()
    return h


async def parts(h: ModelHost, call: OpenAICall) -> list:
    return [p async for p in h.openai(call)]


async def test_a_whole_reply_then_its_accounting() -> None:
    h = host()
    got = await parts(h, OpenAICall(endpoint=Endpoint.CHAT, body=BODY))
    assert isinstance(got[0], OpenAIReply) and got[0].body["choices"][0]["message"]["content"].startswith("one")
    assert isinstance(got[-1], Accounting) and got[-1].usage.completion_tokens == 5
    assert h.completed == 1 and h.admission.inside == 0


async def test_a_stream_is_coalesced_and_its_usage_taken_but_not_sent_unasked() -> None:
    h = host()
    call = OpenAICall(
        endpoint=Endpoint.CHAT, body=BODY | {"stream": True}, coalesce=Coalesce(max_items=3, max_wait_s=1.0)
    )
    got = await parts(h, call)
    batches = [p for p in got if isinstance(p, SSEBatch)]
    events = [e for b in batches for e in b.text.split("\n\n") if e]
    assert all(b.text.count("data: ") <= 3 for b in batches) and len(batches) < len(events)
    assert not any('"usage"' in e for e in events) and events[-1] == "data: [DONE]"
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "one two three four five"
    assert isinstance(got[-1], Accounting) and got[-1].usage.completion_tokens == 5


async def test_the_usage_chunk_is_kept_when_the_caller_asked_for_it() -> None:
    body = BODY | {"stream": True, "stream_options": {"include_usage": True}}
    got = await parts(host(), OpenAICall(endpoint=Endpoint.CHAT, body=body))
    assert any('"usage"' in p.text for p in got if isinstance(p, SSEBatch))


async def test_an_engine_without_an_openai_layer_is_refused() -> None:
    class Plain:
        def __init__(self, spec: ModelSpec) -> None:
            self.spec = spec

        async def health(self) -> EngineHealth:
            return EngineHealth(ok=True)

        async def stream(self, request: GenerationRequest):  # pragma: no cover - not reached
            yield None

    h = ModelHost(SPEC, 0, Plain)  # type: ignore[arg-type]
    h.state = "ready"  # as after start()
    with pytest.raises(EngineRejected, match="no OpenAI layer"):
        await parts(h, OpenAICall(endpoint=Endpoint.CHAT, body=BODY))
    assert h.failed == 0  # the caller's mistake, not the host's failure


async def test_a_pattern_stream_crosses_in_coalesced_chunks_with_timing() -> None:
    h = host()
    req = GenerationRequest.model_validate(
        {"messages": BODY["messages"], "coalesce": {"max_items": 2, "max_wait_s": 1.0}}
    )
    chunks = [c async for c in h.stream(req)]
    assert "".join(c.delta for c in chunks) == "one two three four five"
    assert len(chunks) == 3 and chunks[-1].finish_reason == "stop" and chunks[-1].engine_seconds >= 0.0
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
