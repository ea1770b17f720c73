"""`SimulatedGpu`: one GPU that several simulated engines may share (processor sharing)."""

from __future__ import annotations

from typing import Protocol


class GpuTenant(Protocol):
    """An engine on a simulated GPU: told when its speed changes."""

    def poke(self) -> None:
        """Re-plan at the next step boundary: the GPU's sharing changed."""


class SimulatedGpu:
    """One GPU that several simulated engines may share.

    While n engines on it are stepping, each advances at 1/n of its own speed (processor
    sharing: the GPU's time is split, its total work conserved). `work_seconds` sums the GPU
    time the engines' steps needed, so work / elapsed is the GPU's utilization.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.work_seconds = 0.0
        self._tenants: list[GpuTenant] = []
        self._busy: set[int] = set()

    def attach(self, tenant: GpuTenant) -> None:
        self._tenants.append(tenant)

    @property
    def sharing(self) -> int:
        """Engines stepping on this GPU right now (at least 1 from the asking engine's view)."""
        return max(1, len(self._busy))

    def set_busy(self, tenant: GpuTenant, busy: bool) -> None:
        before = len(self._busy)
        if busy:
            self._busy.add(id(tenant))
        else:
            self._busy.discard(id(tenant))
        if len(self._busy) != before:
            for other in self._tenants:  # their speed changed: replan at the next step boundary
                if other is not tenant:
                    other.poke()
