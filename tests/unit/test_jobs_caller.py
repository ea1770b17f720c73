"""Answering rows: output lines, error lines for failing rows, the in-flight bound, and the two
failures that stop a job instead of writing a line."""

from __future__ import annotations

import asyncio
import json

import pytest

from cluster.errors import EngineError, EngineRejected, NoHealthyReplica, NotRunning, OverloadedError
from orchestrator.core.schema import ChatRequest, Reply
from orchestrator.core.trace import Step, Trace
from orchestrator.jobs.caller import RowAnswerer, outcomes_of, outcomes_table
from orchestrator.jobs.formats import InputFormat, RowRules
from orchestrator.jobs.link import HostedAnswer
from orchestrator.service.hosted import HostedRequest
from tests.unit.fixtures import scripted_chorus

RULES = RowRules(format=InputFormat.openai, known_models=frozenset({"single", "router"}))
PATTERNS = {"single": {"kind": "single", "role": "generalist"}}


def row(custom_id: str, model: str = "single", content: str = "hi") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


async def test_answered_row_is_an_openai_batch_output_line_with_usage_and_trace():
    chorus, engines = scripted_chorus({"generalist": lambda req: "four"}, PATTERNS)
    out = await RowAnswerer(chorus, RULES, 4).answer(3, row("q1", content="2 + 2"))
    rec = json.loads(out.text)
    assert out.ok and out.line == 3 and rec["line"] == 3 and rec["custom_id"] == "q1" and rec["error"] is None
    body = rec["response"]["body"]
    assert rec["response"]["status_code"] == 200 and rec["response"]["request_id"] == body["id"]
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "four"
    assert body["usage"]["prompt_tokens"] == out.prompt_tokens == 3
    assert body["chorus"]["trace"]["steps"][0]["role"] == "generalist"
    assert engines["generalist"].calls[0].priority == 10  # batch priority reaches the engine


async def test_failing_rows_get_error_lines_and_the_rest_go_on():
    def script(req):
        return EngineError("engine fell over") if "boom" in req.messages[-1].content else "fine"

    chorus, _ = scripted_chorus({"generalist": script}, PATTERNS)
    outs = await RowAnswerer(chorus, RULES, 4).answer_all(
        [1, 2, 3, 4], [row("a"), row("b", content="boom"), row("c", model="nope"), "{oops"]
    )
    recs = [json.loads(o.text) for o in outs]
    assert [o.ok for o in outs] == [True, False, False, False]
    assert recs[1]["response"]["status_code"] == 500 and "engine fell over" in recs[1]["response"]["body"]["error"]["message"]
    assert recs[2]["response"]["status_code"] == 404
    assert recs[3]["response"] is None and recs[3]["error"]["code"] == "invalid_json" and "line 4" in recs[3]["error"]["message"]


class Gauge:
    """An asker that records how many requests are in flight at once."""

    def __init__(self, chorus) -> None:
        self.chorus, self.now, self.peak = chorus, 0, 0

    async def chat(self, req: ChatRequest) -> Reply:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await self.chorus.chat(req)
        finally:
            self.now -= 1


async def test_requests_in_flight_never_exceed_the_bound_across_batches():
    chorus, _ = scripted_chorus({"generalist": lambda req: "x"}, PATTERNS, delay_s=0.01)
    gauge = Gauge(chorus)
    answerer = RowAnswerer(gauge, RULES, 5)
    batches = [answerer.answer_all(list(range(b * 20, b * 20 + 20)), [row(f"r{b}-{i}") for i in range(20)]) for b in range(3)]
    results = await asyncio.gather(*batches)
    assert sum(len(r) for r in results) == 60 and all(o.ok for r in results for o in r)
    assert gauge.peak == 5


async def test_chorus_gone_stops_the_job_instead_of_writing_error_lines():
    class Gone:
        async def chat(self, req: ChatRequest) -> Reply:
            raise NotRunning("the chorus orchestrator is not available")

    with pytest.raises(NotRunning):
        await RowAnswerer(Gone(), RULES, 2).answer(1, row("a"))


async def test_overload_is_retried_after_the_servers_retry_after():
    chorus, _ = scripted_chorus({"generalist": lambda req: "late"}, PATTERNS)

    class Busy:
        refused = 0

        async def chat(self, req: ChatRequest) -> Reply:
            if self.refused < 2:
                self.refused += 1
                raise OverloadedError("full", retry_after_s=0.01)
            return await chorus.chat(req)

    busy = Busy()
    out = await RowAnswerer(busy, RULES, 2).answer(1, row("a"))
    assert out.ok and busy.refused == 2


def test_outcomes_survive_the_arrow_round_trip():
    chorus, _ = scripted_chorus({"generalist": lambda req: "x"}, PATTERNS)
    outs = asyncio.run(RowAnswerer(chorus, RULES, 2).answer_all([1, 2], [row("a"), "{"]))
    assert outcomes_of(outcomes_table(outs)) == outs


async def test_a_model_without_a_healthy_replica_is_waited_for_then_the_row_is_answered():
    chorus, _ = scripted_chorus({"generalist": lambda req: "back"}, PATTERNS)

    class Restarting:
        refused = 0

        async def chat(self, req: ChatRequest) -> Reply:
            if self.refused < 5:  # more than the overload retries: a restart is waited for, not counted
                self.refused += 1
                raise NoHealthyReplica("tiny", "replica 0 restarting", retry_after_s=0.01)
            return await chorus.chat(req)

    asker = Restarting()
    out = await RowAnswerer(asker, RULES, 2).answer(1, row("a"))
    assert out.ok and asker.refused == 5


async def test_a_model_that_stays_without_a_healthy_replica_stops_the_stage(monkeypatch):
    monkeypatch.setattr("orchestrator.jobs.caller.REPLICA_WAIT_S", 0.05)

    class Down:
        calls = 0

        async def chat(self, req: ChatRequest) -> Reply:
            self.calls += 1
            raise NoHealthyReplica("tiny", "replica 0 failed", retry_after_s=0.02)

    down = Down()
    with pytest.raises(NoHealthyReplica):
        await RowAnswerer(down, RULES, 2).answer(1, row("a"))
    assert down.calls == 3  # waited 0.02 + 0.02 s; a third wait would pass the 0.05 s bound


class HostedFleet:
    """An asker whose hosted model answers as vLLM's OpenAI layer would (or refuses as it would)."""

    def __init__(self) -> None:
        self.asked: list[HostedRequest] = []

    async def chat(self, req: ChatRequest) -> Reply:
        raise AssertionError("a hosted model's row must not take the pattern path")

    async def hosted(self, req: HostedRequest) -> HostedAnswer:
        self.asked.append(req)
        if req.body.get("tool_choice") == "bogus":
            raise EngineRejected("tool_choice: 'bogus' is not a valid choice", param="tool_choice")
        call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
        body = {"id": "chatcmpl-7", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}}
        trace = Trace(pattern="tiny", kind="model")
        trace.steps.append(Step(index=0, name="chat", role="tiny", model="tiny", prompt_tokens=11, completion_tokens=9,
                                engine_seconds=0.5, gpu_seconds=0.25, output="x"))
        trace.close(0.6)
        return HostedAnswer(body=body, trace=trace)


HOSTED_RULES = RowRules(format=InputFormat.openai, known_models=frozenset({"tiny"}), hosted_models=frozenset({"tiny"}))


async def test_a_hosted_models_row_is_vllms_response_with_the_trace_added():
    fleet = HostedFleet()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = {"model": "tiny", "messages": [{"role": "user", "content": "weather?"}], "tools": tools}
    raw = json.dumps({"custom_id": "w", "method": "POST", "url": "/v1/chat/completions", "body": body})
    out = await RowAnswerer(fleet, HOSTED_RULES, 2).answer(5, raw)
    rec = json.loads(out.text)
    assert out.ok and rec["custom_id"] == "w" and rec["response"]["status_code"] == 200
    got = rec["response"]["body"]
    assert rec["response"]["request_id"] == got["id"] == "chatcmpl-7"
    assert got["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert got["chorus"]["trace"]["totals"]["gpu_seconds"] == 0.25
    assert "output" not in got["chorus"]["trace"]["steps"][0]  # the summary trace, as over HTTP
    assert (out.prompt_tokens, out.completion_tokens, out.gpu_seconds) == (11, 9, 0.25)
    assert fleet.asked[0].body["tools"] == tools and fleet.asked[0].priority == 10


async def test_a_hosted_row_vllm_refuses_gets_its_4xx_line_and_the_job_goes_on():
    fleet = HostedFleet()
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "bogus"}
    raw = json.dumps({"custom_id": "b", "body": body})
    out = await RowAnswerer(fleet, HOSTED_RULES, 2).answer(1, raw)
    rec = json.loads(out.text)
    assert not out.ok and rec["response"]["status_code"] == 400
    assert "tool_choice" in rec["response"]["body"]["error"]["message"]
