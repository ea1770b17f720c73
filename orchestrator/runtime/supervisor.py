"""The supervisor: probes every ModelHost on an interval and heals the ones that broke.

Ray-free (tested over fakes); `supervisor_actor.py` runs it as one named actor per chorus.

Each tick probes every replica at once (`ModelHost.probe`: engine health, then proof that it
generates — its output count moved since the last probe, else a one-token generation under
`probe_timeout_s`) and moves it on the fleet's `HealthBoard`, with the host's admission load:

- it answered and its engine is ready and generated in time → healthy (routed to again);
- its engine is ready but failed `unhealthy_after` probes in a row → its process is killed and
  Ray restarts it in the same placement bundle (`ModelHost` actors have bounded `max_restarts`);
- it answered with its engine idle (a process Ray just restarted) or failed (a start that did
  not work) → the supervisor starts the engine, wave-aware: never while another engine on the
  same GPU is starting (vLLM sizes its KV cache from the memory free at start), and after a
  failed start only after a back-off that doubles;
- it did not answer (its process is dead or restarting) → restarting, until it answers again
  or `lost_grace_s` passes;
- past `max_restarts` → failed, with the last reason, and left alone.

A call that finds its replica lost marks it on the board at once (`Fleet`); the supervisor
brings it back. Several orchestrators may each supervise the same hosts: `ModelHost.start` is
idempotent, so two supervisors starting one engine share a single start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from cluster.errors import ChorusError
from orchestrator.routing.health import HealthBoard, State
from serving.host.model_host import HostStatus

log = logging.getLogger("chorus.supervisor")

Key = tuple[str, int]


class Supervised(Protocol):
    """What the supervisor needs of a replica (`orchestrator.runtime.ray_replica.RayReplica`)."""

    index: int

    async def probe(self, timeout_s: float, generate_every_s: float = 0.0) -> HostStatus: ...

    async def start(self) -> None: ...

    def restart(self) -> None: ...


def answer_margin_s(probe_timeout_s: float) -> float:
    """Time a busy host process may take to answer a probe call beyond its own probe deadline
    (its event loop is shared with the requests it serves; a Ray call crosses two processes)."""
    return max(2.0, probe_timeout_s / 2)


class Supervisor:
    def __init__(self, replicas: Mapping[str, Sequence[Supervised]], board: HealthBoard) -> None:
        """`replicas` are the fleet's (the same objects); `board` is the fleet's health board."""
        self.replicas = replicas
        self.board = board
        self.spec = board.spec
        self._gpus: dict[Key, tuple[str, frozenset[str]]] = {}  # node and GPU ids, once known
        self._engine: dict[Key, str] = {}  # the engine state each replica last reported
        self._starting: dict[Key, asyncio.Task[None]] = {}
        self._start_t0: dict[Key, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # --- the loop ---------------------------------------------------------------------------

    def ensure_running(self) -> None:
        """Start the probing loop in the running event loop, once."""
        if self._task is None or self._task.done():
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="chorus-supervisor")

    async def stop(self) -> None:
        self._stop.set()
        tasks = [t for t in (self._task, *self._starting.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self.tick()
            try:
                await asyncio.wait_for(self._stop.wait(), self.spec.probe_interval_s)
            except TimeoutError:
                pass  # the interval passed: probe again

    async def tick(self) -> None:
        """Probe every replica once and act on what came back."""
        pairs = [(m, r) for m, rs in self.replicas.items() for r in rs]
        outcomes = await asyncio.gather(*(self._probe(r) for _, r in pairs))
        for (model, replica), outcome in zip(pairs, outcomes, strict=True):
            key = (model, replica.index)
            if isinstance(outcome, HostStatus):
                self._answered(key, replica, outcome)
            else:
                self._engine.pop(key, None)
                self.board.lost(model, replica.index, outcome)

    async def _probe(self, replica: Supervised) -> HostStatus | str:
        """The replica's status, or why it could not give one (one line).

        The host bounds its own probe generation by `probe_timeout_s` and reports a slow one as
        a failed probe of a live engine; the call gets that long plus `answer_margin_s` more, so
        only a process that does not answer at all (dead, or restarting) reads as lost."""
        waited = self.spec.probe_timeout_s + answer_margin_s(self.spec.probe_timeout_s)
        try:
            async with asyncio.timeout(waited):
                return await replica.probe(self.spec.probe_timeout_s, self.spec.probe_generate_every_s)
        except TimeoutError:
            return f"it did not answer a probe within {waited:g} s (its process may be restarting)"
        except ChorusError:
            return "its process died; Ray is restarting it"

    # --- decisions --------------------------------------------------------------------------

    def _answered(self, key: Key, replica: Supervised, s: HostStatus) -> None:
        model, index = key
        self.board.answered(model, index, full=s.full)
        h = self.board.of(model, index)
        if s.gpu_ids:
            self._gpus[key] = (s.node_id, frozenset(s.gpu_ids))
        self._engine[key] = s.engine
        if h.state == "failed":
            return  # given up on: left as it is until chorus is restarted
        if s.engine == "ready":
            if s.ok:
                self._healthy(key, h.state)
                return
            h.failures += 1
            if h.failures < self.spec.unhealthy_after:
                return
            self._kill(key, replica, f"its engine stopped answering: {s.detail}")
        elif s.engine == "starting":
            self.board.set(model, index, "starting" if h.restarts == 0 else "restarting", "its engine is starting")
        elif s.engine == "idle":
            if h.state == "healthy" and s.restarted:
                h.restarts += 1  # it died and came back between two probes, unseen
            self._maybe_start(key, replica, "its process restarted; its engine is starting")
        else:  # the last start failed
            if key not in self._starting and h.next_start_at == 0.0:
                h.restarts += 1
                h.next_start_at = self.board.now() + self.board.backoff_s(h.restarts + 1)
            if h.restarts > self.spec.max_restarts:
                self.board.set(model, index, "failed", f"{s.detail}; gave up after {self.spec.max_restarts} restart(s)")
                return
            self._maybe_start(key, replica, f"its engine failed to start ({s.detail}); trying again")

    def _healthy(self, key: Key, was: str) -> None:
        model, index = key
        h = self.board.of(model, index)
        t0 = self._start_t0.pop(key, None)
        if was != "healthy":
            if t0 is not None:
                h.start_s = time.monotonic() - t0
            log.warning("%s replica %d is healthy again", model, index)
        h.failures, h.next_start_at = 0, 0.0
        self.board.set(model, index, "healthy")

    def _kill(self, key: Key, replica: Supervised, why: str) -> None:
        model, index = key
        h = self.board.of(model, index)
        h.restarts += 1
        h.failures = 0
        h.lost_since = self.board.now()  # the death that follows is this restart, not a new one
        if h.restarts > self.spec.max_restarts:
            self.board.set(model, index, "failed", f"{why}; gave up after {self.spec.max_restarts} restart(s)")
            return
        log.warning("%s replica %d: %s; restarting its process", model, index, why)
        self.board.set(model, index, "restarting", why)
        replica.restart()

    def _neighbour_starting(self, key: Key) -> bool:
        """Another engine on one of this replica's GPUs is starting now."""
        mine = self._gpus.get(key)
        if mine is None:
            return False
        for other, where in self._gpus.items():
            if other == key or where[0] != mine[0] or not (where[1] & mine[1]):
                continue
            if other in self._starting or self._engine.get(other) == "starting":
                return True
        return False

    def _maybe_start(self, key: Key, replica: Supervised, why: str) -> None:
        model, index = key
        h = self.board.of(model, index)
        state: State = "starting" if h.restarts == 0 else "restarting"
        if key in self._starting:
            self.board.set(model, index, state, why)
            return
        if self._neighbour_starting(key):
            self.board.set(model, index, state, "waiting for another engine on its GPU to finish starting")
            return
        if self.board.now() < h.next_start_at:
            self.board.set(model, index, state, why + f" (back-off until {h.next_start_at - self.board.now():.0f} s)")
            return
        h.next_start_at = 0.0
        self.board.set(model, index, state, why)
        self._start_t0.setdefault(key, time.monotonic())
        task = asyncio.create_task(self._start(key, replica), name=f"chorus-start-{model}-{index}")
        self._starting[key] = task
        task.add_done_callback(lambda _: self._starting.pop(key, None))

    async def _start(self, key: Key, replica: Supervised) -> None:
        try:
            await replica.start()
        except ChorusError as exc:  # the next probe reads the failure from the host and backs off
            log.warning("%s replica %d: engine start failed: %s", key[0], key[1], exc)
