"""One supervisor per chorus on Ray, and each orchestrator replica's copy of its health board.

The Serve application runs N stateless orchestrator replicas; engines must still be probed and
restarted by ONE party. `SupervisorActor` is that party: a named actor (`chorus.supervisor` in
the chorus namespace, detached when the hosts are) started with the ModelHosts
(`orchestrator.runtime.deploy`, or the `FleetKeeper` of a `serve deploy`). It runs the `Supervisor` loop over the hosts and owns
the authoritative `HealthBoard`.

Each orchestrator replica runs a `BoardSync`: every `SYNC_PERIOD_S` one call to the supervisor
reports the losses the replica's own calls found (a dead replica leaves that replica's routable
set at once, without waiting for the call) and how many requests it holds, and brings back the
board and whether chorus is draining. Draining closes the replica's gate: new requests get 503
(`Draining`) while the running ones finish; `drain_all` waits for every replica to be empty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import ray

from cluster.errors import ChorusError, UnavailableError
from orchestrator.routing.health import HealthBoard, Loss, ReplicaHealth
from orchestrator.runtime.handles import call
from orchestrator.runtime.ray_replica import CALLER_ENV, named_hosts, replicas_of
from orchestrator.runtime.supervisor import Supervisor
from orchestrator.service.config import ChorusConfig
from orchestrator.service.drain import Gate

SUPERVISOR = "chorus.supervisor"
SYNC_PERIOD_S = 0.25  # how stale an orchestrator replica's board may be (its own losses: none)
REPORT_STALE_S = 5.0  # a replica silent this long is gone (Serve stopped or replaced it)
DRAIN_POLL_S = 0.1

log = logging.getLogger("chorus.supervisor")


@dataclass(frozen=True)
class BoardView:
    """What an orchestrator replica gets back from a sync."""

    replicas: dict[tuple[str, int], ReplicaHealth]
    draining: bool


@dataclass(frozen=True)
class DrainState:
    """The orchestrator replicas as the supervisor last heard from them."""

    replicas: int  # replicas heard from within REPORT_STALE_S
    open: int  # of them, those that still admit new requests
    running: int  # requests they hold


class SupervisorActor:
    """The Ray actor around `Supervisor` (one per chorus)."""

    def __init__(self, config: ChorusConfig, namespace: str, hosts: Mapping[str, Sequence[Any]] | None = None) -> None:
        """On Ray the hosts are found by name (`hosts` is for tests): a restarted supervisor then
        needs nothing from its creator, who may be long gone (`chorus up` exits)."""
        if hosts is None:
            hosts = named_hosts(config, namespace)
        self.board = HealthBoard(config.healing)
        self.supervisor = Supervisor(replicas_of(config, hosts), self.board)
        self.draining = False
        self._reports: dict[str, tuple[float, bool, int]] = {}  # replica → (when, gate closed, running)
        self._synced = asyncio.Event()  # a replica synced (settle waits on it)

    async def start(self) -> None:
        """Start probing (in the actor's event loop)."""
        self.supervisor.ensure_running()

    async def sync(self, orchestrator: str, losses: list[Loss], closed: bool, running: int) -> BoardView:
        self.supervisor.ensure_running()
        for x in losses:
            self.board.lost(x.model, x.index, x.detail)
        self._reports[orchestrator] = (time.monotonic(), closed, running)
        self._synced.set()
        return BoardView({k: replace(h) for k, h in self.board.replicas.items()}, self.draining)

    async def settle(self, timeout_s: float) -> bool:
        """Probe every host now, then wait until every orchestrator replica has taken the board
        that results. `chorus up` starts its replicas while the engines start (they read
        "starting" then) and calls this once the engines are ready, so that the first request
        finds them routable. False if a replica did not sync within `timeout_s`."""
        await self.supervisor.tick()
        probed = time.monotonic()
        deadline = probed + timeout_s
        waiting = {name for name, r in self._reports.items() if probed - r[0] < REPORT_STALE_S}
        while True:
            waiting = {name for name in waiting if self._reports[name][0] <= probed}
            if not waiting:
                return True
            self._synced.clear()
            try:
                await asyncio.wait_for(self._synced.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return False

    def drain(self) -> None:
        self.draining = True

    def drain_state(self) -> DrainState:
        now = time.monotonic()
        fresh = [r for r in self._reports.values() if now - r[0] < REPORT_STALE_S]
        return DrainState(len(fresh), sum(1 for r in fresh if not r[1]), sum(r[2] for r in fresh))

    async def stop(self) -> None:
        await self.supervisor.stop()


def start_supervisor(config: ChorusConfig, namespace: str, *, detached: bool) -> Any:
    """Start the named supervisor over the config's (named, running) ModelHosts."""
    lifetime = {"lifetime": "detached"} if detached else {}
    actor_cls: Any = ray.remote(SupervisorActor)
    handle = actor_cls.options(
        name=SUPERVISOR,
        namespace=namespace,
        num_cpus=0,
        max_concurrency=1000,
        # A restarted supervisor rebuilds its board from its first probes (one tick) and finds
        # the hosts by name; its arguments are small enough to travel inline with the task.
        max_restarts=-1,
        runtime_env={"env_vars": CALLER_ENV},  # notice a dead ModelHost fast
        **lifetime,
    ).remote(config, namespace)
    ray.get(handle.start.remote(), timeout=60)
    return handle


def stop_supervisor(handle: Any) -> None:
    """Stop probing first (so no engine is restarted while the hosts shut down), then kill it."""
    try:
        ray.get(handle.stop.remote(), timeout=30)
    except Exception:
        log.warning("the supervisor did not stop cleanly", exc_info=True)
    ray.kill(handle)


def drain_all(namespace: str, timeout_s: float) -> int:
    """Have every orchestrator replica refuse new requests (503) and wait, up to `timeout_s`, for
    the running ones to finish. Returns how many were still running (0: all finished)."""
    try:
        supervisor = ray.get_actor(SUPERVISOR, namespace=namespace)
    except ValueError:
        return 0  # no chorus here: nothing to drain
    ray.get(supervisor.drain.remote(), timeout=30)
    deadline = time.monotonic() + timeout_s
    while True:
        state: DrainState = ray.get(supervisor.drain_state.remote(), timeout=30)
        if state.open == 0 and state.running == 0:
            return 0
        if time.monotonic() >= deadline:
            return state.running
        time.sleep(DRAIN_POLL_S)  # readiness polling under the drain deadline


class BoardSync:
    """An orchestrator replica's side: keeps `board` a copy of the supervisor's, reports its own
    losses and load, and closes `gate` once chorus drains."""

    def __init__(self, supervisor: Any, board: HealthBoard, gate: Gate, name: str) -> None:
        self.supervisor, self.board, self.gate, self.name = supervisor, board, gate, name
        self._stop = asyncio.Event()

    async def once(self) -> None:
        losses = self.board.take_losses()
        try:
            view: BoardView = await call(
                self.supervisor.sync,
                self.name,
                losses,
                self.gate.closed,
                self.gate.inside,
                what="the chorus supervisor",
                lost=UnavailableError,
            )
        except ChorusError as exc:
            self.board.losses[:0] = losses  # report them with the next sync
            log.warning("could not reach the supervisor: %s", exc)
            return
        self.board.adopt(view.replicas)
        if view.draining:
            self.gate.close()

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.once()
            try:
                await asyncio.wait_for(self._stop.wait(), SYNC_PERIOD_S)
            except TimeoutError:
                pass  # the period passed: sync again

    def stop(self) -> None:
        self._stop.set()
