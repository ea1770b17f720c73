"""One supervisor, many orchestrator replicas: each replica's board copy, its own losses reported
with the next sync, and drain through the supervisor (over fakes, without Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from cluster.errors import Draining
from orchestrator.routing.health import HealthBoard, Loss, ReplicaHealth
from orchestrator.runtime.supervisor_actor import BoardSync, BoardView, SupervisorActor
from orchestrator.service.config import parse_config
from orchestrator.service.drain import Gate
from serving.host.model_host import HostStatus


class Method:
    """A fake bound actor method: `.remote(*args)` gives an awaitable, as Ray's ref does."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Awaitable[Any]:
        async def run() -> Any:
            return self.fn(*args)

        return run()


class AsyncMethod(Method):
    """A fake bound actor method over an async function."""

    def remote(self, *args: Any) -> Awaitable[Any]:
        result: Awaitable[Any] = self.fn(*args)
        return result


class ProbedHost:
    """A ModelHost that answers probes with the engine state it is set to."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.probe = Method(lambda *_: HostStatus(model="m", replica=0, ok=self.engine == "ready", engine=self.engine))


class FakeSupervisor:
    """The supervisor's board and drain flag, answering `sync` as `SupervisorActor.sync` does."""

    def __init__(self) -> None:
        self.board = HealthBoard()
        self.draining = False
        self.reports: list[tuple[str, list[Loss], bool, int]] = []
        self.sync = Method(self._sync)

    def _sync(self, name: str, losses: list[Loss], closed: bool, running: int) -> BoardView:
        self.reports.append((name, losses, closed, running))
        for x in losses:
            self.board.lost(x.model, x.index, x.detail)
        return BoardView({k: replace(h) for k, h in self.board.replicas.items()}, self.draining)


def test_adopt_takes_the_supervisors_board_but_keeps_a_loss_not_yet_reported():
    local = HealthBoard()
    local.call_lost("m", 0, "its process died")
    theirs = {("m", 0): ReplicaHealth(state="healthy"), ("m", 1): ReplicaHealth(state="starting", detail="x")}
    local.adopt(theirs)
    assert local.of("m", 0).state == "restarting"  # still unreported: kept
    assert local.of("m", 1).state == "starting" and local.of("m", 1).detail == "x"
    assert local.take_losses() == [Loss("m", 0, "its process died")] and local.take_losses() == []
    local.adopt(theirs)
    assert local.routable("m", 0)  # reported now: the supervisor's view wins


async def test_a_sync_reports_this_replicas_losses_and_brings_back_the_supervisors_board():
    sup, board, gate = FakeSupervisor(), HealthBoard(), Gate()
    sup.board.set("m", 1, "restarting", "probe failed")
    sync = BoardSync(sup, board, gate, "orch-a")
    board.call_lost("m", 0, "its process died")
    assert not board.routable("m", 0)  # at once, before any sync
    await sync.once()
    assert sup.reports == [("orch-a", [Loss("m", 0, "its process died")], False, 0)]
    assert sup.board.of("m", 0).state == "restarting" and sup.board.of("m", 0).restarts == 1
    assert not board.routable("m", 1) and board.of("m", 1).detail == "probe failed"
    sup.board.set("m", 0, "healthy")
    sup.board.answered("m", 0)
    await sync.once()
    assert board.routable("m", 0) and sup.reports[-1][1] == []


async def test_a_failed_sync_keeps_the_losses_for_the_next_one():
    class Down:
        sync = Method(lambda *a: (_ for _ in ()).throw(Draining("supervisor unreachable")))

    board = HealthBoard()
    board.call_lost("m", 0, "gone")
    await BoardSync(Down(), board, Gate(), "orch-a").once()
    assert board.take_losses() == [Loss("m", 0, "gone")]


async def test_draining_closes_the_gate_of_every_replica_that_syncs():
    sup = FakeSupervisor()
    gates = [Gate(), Gate()]
    syncs = [BoardSync(sup, HealthBoard(), g, f"orch-{i}") for i, g in enumerate(gates)]
    sup.draining = True
    for s in syncs:
        await s.once()
    assert all(g.closed for g in gates)
    try:
        with gates[0].admit():
            raise AssertionError("a closed gate admitted a request")
    except Draining:
        pass


async def test_the_supervisor_counts_open_replicas_and_running_requests_for_the_drain():
    config = parse_config(
        {"models": [{"name": "m", "source": "scripted/m"}], "roles": {"r": "m"}}, "test.yaml"
    )
    actor = SupervisorActor(config, "test", {"m": [object()]})
    await actor.sync("a", [Loss("m", 0, "gone")], False, 2)
    await actor.sync("b", [], True, 0)
    state = actor.drain_state()
    assert (state.replicas, state.open, state.running) == (2, 1, 2)
    assert actor.board.of("m", 0).state == "restarting"
    actor.drain()
    assert (await actor.sync("a", [], True, 0)).draining
    assert actor.drain_state().open == 0 and actor.drain_state().running == 0
    await actor.stop()


async def test_settle_probes_at_once_and_waits_until_every_replica_has_taken_the_board():
    """`chorus up` starts the replicas while the engines start; once they are ready, `settle`
    makes the replicas' boards say so before the first request."""
    config = parse_config({"models": [{"name": "m", "source": "scripted/m"}], "roles": {"r": "m"}}, "test.yaml")
    host = ProbedHost("starting")
    actor = SupervisorActor(config, "test", {"m": [host]})
    remote = type("Remote", (), {"sync": AsyncMethod(actor.sync)})()
    boards = [HealthBoard(), HealthBoard()]
    syncs = [BoardSync(remote, b, Gate(), f"orch-{i}") for i, b in enumerate(boards)]
    try:
        await actor.supervisor.tick()
        for s in syncs:
            await s.once()
        assert not any(b.routable("m", 0) for b in boards)  # "starting"
        host.engine = "ready"
        settled = asyncio.create_task(actor.settle(30.0))
        for _ in range(100):  # let settle's probe run (a few turns of the loop)
            if actor.board.of("m", 0).state == "healthy":
                break
            await asyncio.sleep(0)
        assert actor.board.of("m", 0).state == "healthy"
        assert not settled.done()  # neither replica has synced since
        await syncs[0].once()
        await asyncio.sleep(0)
        assert not settled.done()  # one still has the old board
        await syncs[1].once()
        assert await settled is True
        assert all(b.routable("m", 0) for b in boards)
        assert await actor.settle(0.01) is False  # nobody syncs: gives up at its deadline
    finally:
        await actor.stop()
