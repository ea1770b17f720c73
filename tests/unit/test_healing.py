"""Healing logic over fakes: health-aware routing, the retry of a lost call, the supervisor's
decisions (restart, wave-aware start, back-off, give up), deadlines, early stop and drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from cluster.errors import DeadlineExceeded, Draining, EngineError, NoHealthyReplica, ReplicaLost
from cluster.spec import ModelSpec
from orchestrator.api.app import build_app
from orchestrator.core.schema import ChatRequest
from orchestrator.patterns import decision_of
from orchestrator.patterns.consensus import ConsensusDecision
from orchestrator.routing.fleet import Fleet
from orchestrator.routing.health import HealingSpec, HealthBoard
from orchestrator.runtime.supervisor import Supervisor
from serving.host.admission import Load
from serving.host.model_host import HostStatus, ModelHost
from serving.types import GenerationRequest, Message, Result, StreamChunk
from tests.fakes.scripted_engine import ScriptedEngine
from tests.unit.fixtures import scripted_chorus

REQ = GenerationRequest(messages=[Message(role="user", content="hi")])


@dataclass
class FakeReplica:
    """A replica whose process can die (`dead`), whose engine state and probes a test sets."""

    index: int
    gpus: float = 0.0
    capacity: int = 4
    max_queue: int | None = None
    dead: bool = False
    engine: str = "ready"
    probe_ok: bool = True
    gpu_ids: list[str] = field(default_factory=list)
    start_fails: bool = False
    calls: int = 0
    starts: int = 0
    restarts: int = 0
    chunks_before_death: int = 0

    async def generate(self, request: GenerationRequest) -> Result:
        self.calls += 1
        if self.dead:
            raise ReplicaLost(f"replica {self.index} is not available (its process died or restarted)")
        return Result(text=f"from {self.index}")

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        for i in range(self.chunks_before_death):
            yield StreamChunk(delta=f"t{i} ")
        if self.dead:
            raise ReplicaLost(f"replica {self.index} is not available")
        yield StreamChunk(delta=f"from {self.index}", finish_reason="stop")

    async def status(self) -> HostStatus:
        return await self.probe(1.0)

    async def probe(self, timeout_s: float, generate_every_s: float = 0.0) -> HostStatus:
        if self.dead:
            raise ReplicaLost("gone")
        ok = self.engine == "ready" and self.probe_ok
        return HostStatus(model="m", replica=self.index, ok=ok, engine=self.engine, gpu_ids=self.gpu_ids, node_id="n")  # type: ignore[arg-type]

    async def start(self) -> None:
        self.starts += 1
        self.engine = "starting"
        await asyncio.sleep(0)  # let the supervisor see the start in flight
        self.engine = "failed" if self.start_fails else "ready"

    def restart(self) -> None:
        self.restarts += 1
        self.engine = "idle"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def fleet_of(*replicas: FakeReplica, **spec: float) -> Fleet:
    return Fleet({"m": list(replicas)}, health=HealthBoard(HealingSpec(**spec)))  # type: ignore[arg-type]


# --- routing ------------------------------------------------------------------------------------


async def test_a_call_lost_with_its_replica_is_retried_once_on_a_healthy_one():
    a, b = FakeReplica(0, dead=True), FakeReplica(1)
    fleet = fleet_of(a, b)
    fleet.balancer.begin("m", b)  # b looks busier, so a is picked first
    result, replica = await fleet.generate("m", REQ)
    assert result.text == "from 1" and replica is b and a.calls == 1
    assert fleet.health.of("m", 0).state == "restarting"  # marked at once, before any probe
    fleet.balancer.end("m", b)
    await fleet.generate("m", REQ)
    assert a.calls == 1  # no longer routed to


async def test_no_healthy_replica_fails_at_once_naming_the_model_and_when_to_retry():
    fleet = fleet_of(FakeReplica(0, dead=True), FakeReplica(1, dead=True))
    t0 = time.perf_counter()
    with pytest.raises(ReplicaLost):  # both tried: the request's own call is lost
        await fleet.generate("m", REQ)
    with pytest.raises(NoHealthyReplica) as info:
        await fleet.generate("m", REQ)
    assert time.perf_counter() - t0 < 1.0
    text = str(info.value)
    assert "model 'm'" in text and "replica 0 restarting" in text and info.value.retry_after_s >= 1


async def test_a_stream_is_retried_only_before_its_first_token():
    early, spare = FakeReplica(0, dead=True), FakeReplica(1)
    fleet = fleet_of(early, spare)
    fleet.balancer.begin("m", spare)
    chunks = [c.delta async for c in fleet.stream("m", REQ)]
    assert chunks == ["from 1"]

    late, spare2 = FakeReplica(0, dead=True, chunks_before_death=2), FakeReplica(1)
    fleet = fleet_of(late, spare2)
    fleet.balancer.begin("m", spare2)
    got = []
    with pytest.raises(ReplicaLost):
        async for c in fleet.stream("m", REQ):
            got.append(c.delta)
    assert got == ["t0 ", "t1 "] and spare2.calls == 0  # a retry would repeat the tokens sent


async def test_status_shows_the_state_and_reason_and_never_hangs_on_a_dead_replica():
    a, b = FakeReplica(0, dead=True), FakeReplica(1)
    fleet = fleet_of(a, b)
    fleet.health.lost("m", 0, "its process died; Ray is restarting it")
    status = {s.replica: s for s in await fleet.status(timeout_s=0.5)}
    assert status[0].state == "restarting" and not status[0].ok and "process died" in status[0].detail
    assert status[1].state == "healthy" and status[1].ok
    assert "Traceback" not in status[0].detail


# --- the supervisor ------------------------------------------------------------------------------


async def test_a_restarted_process_gets_its_engine_started_and_rejoins():
    a = FakeReplica(0)
    fleet = fleet_of(a)
    sup = Supervisor(fleet.replicas, fleet.health)  # type: ignore[arg-type]
    a.dead = True
    await sup.tick()
    assert fleet.health.of("m", 0).state == "restarting" and fleet.health.of("m", 0).restarts == 1
    a.dead, a.engine = False, "idle"  # Ray brought the process back; its engine is not started
    await sup.tick()
    await asyncio.gather(*sup._starting.values())
    assert a.starts == 1
    await sup.tick()
    assert fleet.health.of("m", 0).state == "healthy" and fleet.health.routable("m", 0)


async def test_admission_reads_the_boards_reports_and_asks_only_replicas_without_one():
    class Counted(FakeReplica):
        asked = 0

        async def load(self) -> Load:
            self.asked += 1
            return Load(running=4, waiting=2, capacity=4, max_waiting=2)

    a, b = Counted(0, max_queue=2), Counted(1, max_queue=2)
    fleet = fleet_of(a, b)
    assert await fleet.saturated(["m"]) == ["m"] and a.asked == b.asked == 1  # no reports yet: asked
    fleet.health.answered("m", 0, full=False)
    fleet.health.answered("m", 1, full=True)
    assert await fleet.saturated(["m"]) == [] and a.asked == b.asked == 1  # the board's reports: no call
    fleet.health.answered("m", 0, full=True)
    assert await fleet.saturated(["m"]) == ["m"] and a.asked == b.asked == 1


async def test_the_supervisor_carries_each_replicas_admission_to_the_board():
    class Full(FakeReplica):
        async def probe(self, timeout_s: float, generate_every_s: float = 0.0) -> HostStatus:
            return (await super().probe(timeout_s)).model_copy(update={"full": True})

    fleet = fleet_of(Full(0), FakeReplica(1))
    await Supervisor(fleet.replicas, fleet.health).tick()  # type: ignore[arg-type]
    assert fleet.health.of("m", 0).full is True and fleet.health.of("m", 1).full is False


async def test_an_engine_failing_its_probes_is_restarted_after_the_threshold():
    a = FakeReplica(0, probe_ok=False)
    fleet = fleet_of(a, unhealthy_after=2)
    sup = Supervisor(fleet.replicas, fleet.health)  # type: ignore[arg-type]
    await sup.tick()
    assert a.restarts == 0 and fleet.health.routable("m", 0)  # one bad probe is not enough
    await sup.tick()
    assert a.restarts == 1 and fleet.health.of("m", 0).state == "restarting"


async def test_engines_sharing_a_gpu_start_one_at_a_time():
    a = FakeReplica(0, engine="idle", gpu_ids=["0"])
    b = FakeReplica(1, engine="idle", gpu_ids=["0"])
    c = FakeReplica(2, engine="idle", gpu_ids=["1"])
    fleet = fleet_of(a, b, c)
    sup = Supervisor(fleet.replicas, fleet.health)  # type: ignore[arg-type]
    await sup.tick()  # learns where each replica sits
    first = {index for _, index in sup._starting}
    assert 2 in first and len(first & {0, 1}) == 1  # one per GPU
    assert "another engine on its GPU" in fleet.health.of("m", ({0, 1} - first).pop()).detail
    await asyncio.gather(*sup._starting.values())
    await sup.tick()
    await asyncio.gather(*sup._starting.values())
    assert a.starts == b.starts == 1


async def test_failed_starts_back_off_then_the_replica_is_marked_failed():
    a = FakeReplica(0, engine="idle", start_fails=True)
    clock = Clock()
    fleet = Fleet({"m": [a]}, health=HealthBoard(HealingSpec(max_restarts=2, backoff_s=10), now=clock))  # type: ignore[list-item]
    sup = Supervisor(fleet.replicas, fleet.health)  # type: ignore[arg-type]
    await sup.tick()
    await asyncio.gather(*sup._starting.values())
    assert a.starts == 1 and a.engine == "failed"
    await sup.tick()  # the failure is seen: back off before trying again
    assert a.starts == 1 and "back-off" in fleet.health.of("m", 0).detail
    clock.t += 10
    await sup.tick()
    await asyncio.gather(*sup._starting.values())
    assert a.starts == 2
    for _ in range(6):  # later attempts wait longer; past max_restarts it gives up
        clock.t += 100
        await sup.tick()
        await asyncio.gather(*sup._starting.values())
    h = fleet.health.of("m", 0)
    assert h.state == "failed" and "gave up after 2 restart(s)" in h.detail and a.starts == 3
    assert not fleet.health.routable("m", 0)


async def test_a_host_refuses_calls_until_its_engine_is_ready():
    host = ModelHost(ModelSpec(name="m", source="x"), 0, ScriptedEngine, {"script": lambda r: "ok"})
    with pytest.raises(ReplicaLost, match="not serving"):
        await host.generate(REQ)
    assert (await host.status()).engine == "idle"
    await asyncio.gather(host.start(), host.start())  # idempotent: one start shared
    assert (await host.probe(1.0)).ok and (await host.generate(REQ)).text == "ok"


async def test_a_busy_engine_passes_its_probe_by_its_progress_an_idle_one_by_a_probe_request():
    host = ModelHost(ModelSpec(name="m", source="x"), 0, ScriptedEngine, {"script": lambda r: "ok"})
    await host.start()
    engine: ScriptedEngine = host.engine  # type: ignore[assignment]
    first = await host.probe(1.0)
    assert first.ok and first.probe_s is not None and len(engine.calls) == 1  # idle: it generated
    await host.generate(REQ)
    busy = await host.probe(1.0)
    assert busy.ok and busy.probe_s is None and len(engine.calls) == 2  # it produced output: no probe request
    again = await host.probe(1.0)
    assert again.ok and again.probe_s is not None and len(engine.calls) == 3  # nothing since: a probe request
    quiet = await host.probe(1.0, generate_every_s=60)
    assert quiet.ok and quiet.probe_s is None and len(engine.calls) == 3  # idle, last token recent: health only


async def test_an_idle_engine_whose_probe_failed_is_probed_by_a_token_again_at_once():
    fail = {"now": True}

    def script(req: GenerationRequest) -> str | Exception:
        return EngineError("wedged") if fail["now"] else "ok"

    host = ModelHost(ModelSpec(name="m", source="x"), 0, ScriptedEngine, {"script": script})
    await host.start()
    assert not (await host.probe(1.0, generate_every_s=60)).ok
    assert not (await host.probe(1.0, generate_every_s=60)).ok  # no pass to rest on: a token again
    fail["now"] = False
    assert (await host.probe(1.0, generate_every_s=60)).probe_s is not None
    assert (await host.probe(1.0, generate_every_s=60)).probe_s is None  # passed just now: health only


async def test_a_probe_slower_than_its_timeout_is_a_failed_probe_of_a_live_engine():
    host = ModelHost(ModelSpec(name="m", source="x"), 0, ScriptedEngine, {"script": lambda r: "ok", "delay_s": 5})
    await host.start()
    status = await host.probe(0.05)
    assert not status.ok and status.engine == "ready" and "took longer than 0.05 s" in status.detail
    assert status.engine_running == 0  # the abandoned probe was aborted in the engine


async def test_a_host_answering_after_its_probe_deadline_but_within_the_margin_is_not_lost():
    class Slow(FakeReplica):
        async def probe(self, timeout_s: float, generate_every_s: float = 0.0) -> HostStatus:
            await asyncio.sleep(timeout_s * 1.2)  # stands in for a busy host's slow answer
            return await super().probe(timeout_s)

    fleet = fleet_of(Slow(0), probe_timeout_s=0.05)
    sup = Supervisor(fleet.replicas, fleet.health)  # type: ignore[arg-type]
    await sup.tick()
    assert fleet.health.of("m", 0).state == "healthy"


async def test_a_cancelled_call_is_aborted_in_the_engine():
    host = ModelHost(ModelSpec(name="m", source="x"), 0, ScriptedEngine, {"script": lambda r: "ok", "delay_s": 5})
    await host.start()
    task = asyncio.create_task(host.generate(REQ))
    await asyncio.sleep(0.01)
    assert host.engine.running() == 1  # type: ignore[attr-defined]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    status = await host.status()
    assert status.engine_running == 0 and status.running == 0 and status.failed == 0
    assert host.engine.aborted == 1  # type: ignore[attr-defined]


# --- deadlines, early stop, drain ----------------------------------------------------------------


def ask(model: str, **kw: float) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content="?")], **kw)


async def test_a_request_past_its_deadline_is_aborted_and_answered_504():
    chorus, engines = scripted_chorus({"generalist": lambda r: "late"}, {"single": {"kind": "single", "role": "generalist"}}, delay_s=5)
    t0 = time.perf_counter()
    with pytest.raises(DeadlineExceeded):
        await chorus.chat(ask("single", timeout_s=0.2))
    assert time.perf_counter() - t0 < 1.0 and engines["generalist"].aborted == 1
    with pytest.raises(DeadlineExceeded):
        async for _ in chorus.stream(ask("generalist", timeout_s=0.2)):
            pass
    assert engines["generalist"].running() == 0
    app = build_app(chorus)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as http:
        r = await http.post(
            "/v1/chat/completions",
            json={"model": "single", "messages": [{"role": "user", "content": "?"}], "chorus": {"timeout_s": 0.2}},
        )
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"


async def test_consensus_stops_early_and_cancels_the_member_it_no_longer_needs():
    chorus, engines = scripted_chorus(
        {"generalist": lambda r: "#### 7", "coder": lambda r: "#### 7", "judge": lambda r: "#### 7", "reasoner": lambda r: "x"},
        {"c": {"kind": "consensus", "members": ["generalist", "coder", "judge"], "extract": "numeric", "threshold": 0.6}},
    )
    engines["judge"].delay_s = 5.0  # the slow member
    t0 = time.perf_counter()
    reply = await chorus.chat(ask("c"))
    assert time.perf_counter() - t0 < 1.0
    decision = decision_of(reply.trace)
    assert isinstance(decision, ConsensusDecision)
    assert reply.text == "#### 7" and decision.stopped_members == ["member[2]"] and decision.early_stop
    assert engines["judge"].aborted == 1 and engines["judge"].running() == 0
    assert [s.error for s in reply.trace.steps if s.error] == ["cancelled"]


async def test_drain_refuses_new_requests_and_lets_running_ones_finish():
    chorus, _ = scripted_chorus({"generalist": lambda r: "done"}, {"single": {"kind": "single", "role": "generalist"}}, delay_s=0.2)
    running = asyncio.create_task(chorus.chat(ask("single")))
    await asyncio.sleep(0.05)
    drained = asyncio.create_task(chorus.drain(5.0))
    await asyncio.sleep(0.01)
    with pytest.raises(Draining):
        await chorus.chat(ask("single"))
    assert (await running).text == "done" and await drained == 0


async def test_a_plain_request_whose_client_left_is_cancelled():
    from starlette.requests import Request

    from orchestrator.api.disconnect import unless_disconnected

    left = asyncio.Event()

    async def receive() -> dict[str, str]:
        await left.wait()
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    cancelled = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(5)  # stands in for a long model call
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "done"

    task = asyncio.create_task(unless_disconnected(request, work()))
    await asyncio.sleep(0.01)
    left.set()
    assert await asyncio.wait_for(task, 1.0) is None and cancelled.is_set()

    async def stays() -> dict[str, str]:
        await asyncio.Event().wait()  # a client that never leaves
        return {"type": "http.disconnect"}

    async def quick() -> str:
        return "done"

    assert await unless_disconnected(Request({"type": "http", "method": "POST", "headers": []}, stays), quick()) == "done"


async def test_gather_cancels_the_calls_still_running_when_one_ends_the_request():
    from orchestrator.core.context import Context
    from orchestrator.core.trace import Trace

    cancelled = asyncio.Event()

    class Dispatcher:
        async def generate(self, model: str, request: GenerationRequest) -> tuple[Result, FakeReplica]:
            if model == "gone":
                raise NoHealthyReplica("gone", "replica 0 restarting")
            try:
                await asyncio.sleep(5)  # stands in for a long model call
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return Result(text="late"), FakeReplica(0)

    ctx = Context(Dispatcher(), {"a": "slow", "b": "gone"}, Trace(pattern="p", kind="fanout"))
    msgs = [Message(role="user", content="?")]
    t0 = time.perf_counter()
    with pytest.raises(NoHealthyReplica):
        await ctx.gather(ctx.call("a", msgs, name="a"), ctx.call("b", msgs, name="b"))
    assert time.perf_counter() - t0 < 1.0 and cancelled.is_set()
    assert ctx.trace.steps[0].error == "cancelled"
