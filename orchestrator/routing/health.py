"""Replica health as the fleet routes by it: states, the settings of healing, and the board.

A replica is in one of four states:

    healthy     routed to: its last probe generated a token in time
    starting    its engine is starting (first start or a start after a failed one)
    restarting  its process died or its engine stopped answering; Ray restarts the process and
                the supervisor restarts the engine
    failed      restarts are used up (or the process never came back); `detail` says why

Only healthy replicas get calls. The board changes on two kinds of evidence: the supervisor's
probes (`orchestrator.runtime.supervisor`) and, at once, a call that found its replica lost.

On Ray there is one supervisor (a named actor) owning the authoritative board; each
orchestrator replica keeps a copy that it refreshes from it (`adopt`) every few hundred ms. A
loss an orchestrator replica sees itself marks its copy at once and is queued (`take_losses`) to
be reported with the next refresh; until then, the refresh leaves that replica's entry alone.
`detail` is always one line (never a traceback, never an actor id, pid or address): it reaches
`/health`, `chorus status` and 503 bodies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import Field

from cluster.spec import Strict

State = Literal["healthy", "starting", "restarting", "failed"]


class HealingSpec(Strict):
    """How chorus watches and heals its model replicas."""

    probe_interval_s: float = Field(1.0, gt=0.0, le=60.0, description="Seconds between two probes of a replica.")
    probe_timeout_s: float = Field(
        10.0, gt=0.0, le=300.0, description="A probe (health + a one-token generation) slower than this fails."
    )
    probe_generate_every_s: float = Field(
        30.0,
        ge=0.0,
        le=3600.0,
        description=(
            "An idle engine (no output since the last probe) generates a probe token at most this "
            "often while its probes pass; between, its health alone is checked. vLLM's workers "
            "busy-poll for a second after every step: a token every probe would keep them spinning."
        ),
    )
    unhealthy_after: int = Field(
        2, ge=1, le=20, description="Consecutive failed probes of a live engine before its replica is restarted."
    )
    max_restarts: int = Field(
        3, ge=0, le=100, description="Restarts of a replica (process or engine) before it is marked failed."
    )
    backoff_s: float = Field(2.0, ge=0.0, le=600.0, description="Wait before retrying a failed engine start; doubles.")
    backoff_max_s: float = Field(60.0, ge=0.0, le=3600.0, description="The longest back-off between start attempts.")
    lost_grace_s: float = Field(
        300.0, gt=0.0, le=3600.0, description="A process that stays unreachable this long is marked failed."
    )
    drain_timeout_s: float = Field(
        30.0, ge=0.0, le=3600.0, description="On shutdown, how long running requests may take to finish."
    )


@dataclass
class ReplicaHealth:
    state: State = "healthy"
    detail: str = ""
    since: float = 0.0  # monotonic time of the last state change
    failures: int = 0  # consecutive failed probes of a live engine
    restarts: int = 0  # restarts the supervisor has seen or made
    next_start_at: float = 0.0  # earliest time of the next engine start attempt (back-off)
    lost_since: float | None = None  # unreachable since (None: it answers)
    start_s: float | None = None  # how long its last successful engine start took
    full: bool | None = None  # its admission was full at its last probe (None: not probed yet)


Now = Callable[[], float]


@dataclass(frozen=True)
class Loss:
    """A call found replica `index` of `model` lost (reported to the supervisor)."""

    model: str
    index: int
    detail: str


@dataclass
class HealthBoard:
    """The health of every replica of every model, keyed by (model, replica index)."""

    spec: HealingSpec = field(default_factory=HealingSpec)
    now: Now = time.monotonic
    replicas: dict[tuple[str, int], ReplicaHealth] = field(default_factory=dict)
    losses: list[Loss] = field(default_factory=list)  # seen here, not yet reported

    def take_losses(self) -> list[Loss]:
        """The losses seen since the last call, to report to the supervisor."""
        taken, self.losses = self.losses, []
        return taken

    def adopt(self, replicas: dict[tuple[str, int], ReplicaHealth], unreported: Iterable[Loss] = ()) -> None:
        """Take the supervisor's board as this one; a replica with a loss not yet reported to it
        (in `self.losses` or `unreported`) keeps its local entry."""
        keep = {(x.model, x.index) for x in (*self.losses, *unreported)}
        for key, h in replicas.items():
            if key not in keep:
                self.replicas[key] = replace(h)

    def of(self, model: str, index: int) -> ReplicaHealth:
        key = (model, index)
        if key not in self.replicas:
            self.replicas[key] = ReplicaHealth(since=self.now())
        return self.replicas[key]

    def routable(self, model: str, index: int) -> bool:
        return self.of(model, index).state == "healthy"

    def set(self, model: str, index: int, state: State, detail: str = "") -> None:
        h = self.of(model, index)
        if h.state != state:
            h.since = self.now()
        h.state, h.detail = state, detail

    def lost(self, model: str, index: int, detail: str) -> None:
        """A call or a probe found the replica's process gone: stop routing to it now."""
        h = self.of(model, index)
        if h.state == "failed":
            return
        now = self.now()
        if h.lost_since is None:
            h.lost_since = now
            if h.state == "healthy":
                h.restarts += 1  # a new death, not the same one seen again
        if now - h.lost_since >= self.spec.lost_grace_s:
            self.set(model, index, "failed", f"its process did not come back within {self.spec.lost_grace_s:g} s")
        elif h.restarts > self.spec.max_restarts:
            self.set(model, index, "failed", f"{detail}; gave up after {self.spec.max_restarts} restart(s)")
        else:
            self.set(model, index, "restarting", detail)

    def call_lost(self, model: str, index: int, detail: str) -> None:
        """A call of this process found the replica lost: mark it, and queue the report for the
        supervisor (`take_losses`)."""
        self.losses.append(Loss(model, index, detail))
        self.lost(model, index, detail)

    def answered(self, model: str, index: int, full: bool | None = None) -> None:
        h = self.of(model, index)
        h.lost_since, h.full = None, full

    def summary(self, model: str, indices: Iterable[int]) -> str:
        """'replica 0 restarting: …; replica 1 failed: …' for a 503 body."""
        parts = []
        for i in indices:
            h = self.of(model, i)
            parts.append(f"replica {i} {h.state}" + (f": {h.detail}" if h.detail else ""))
        return "; ".join(parts)

    def retry_after_s(self, model: str, indices: Iterable[int]) -> float:
        """When a replica of `model` may be healthy again: its last start time, else a probe or two."""
        waits = []
        for i in indices:
            h = self.of(model, i)
            if h.state in ("starting", "restarting"):
                waits.append(max(1.0, h.start_s or 2 * self.spec.probe_interval_s))
        return min(waits) if waits else max(5.0, self.spec.backoff_max_s)

    def backoff_s(self, attempt: int) -> float:
        """The wait before start attempt `attempt` (1-based) after failed ones."""
        if attempt <= 1:
            return 0.0
        return min(self.spec.backoff_max_s, self.spec.backoff_s * 2.0 ** (attempt - 2))
