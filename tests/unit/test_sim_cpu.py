"""CpuLanes: per-call CPU charged on the simulation's clock queues calls when a process is saturated."""

from __future__ import annotations

import asyncio

import pytest

from serving.sim.clock import VirtualClockLoop
from serving.sim.cpu import CpuLanes


def _finish_times(lanes: int, charges: list[float]) -> tuple[list[float], CpuLanes]:
    cpu = CpuLanes(lanes)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def one(s: float) -> float:
            await cpu.charge(s)
            return loop.time() - t0

        return list(await asyncio.gather(*(one(s) for s in charges)))

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(main()), cpu


def test_one_lane_serves_calls_one_after_another():
    times, cpu = _finish_times(1, [1.0, 1.0, 1.0])
    assert times == pytest.approx([1.0, 2.0, 3.0])
    assert cpu.busy_seconds == pytest.approx(3.0) and cpu.calls == 3
    assert cpu.utilization(3.0) == pytest.approx(1.0)


def test_two_lanes_halve_the_queue_and_zero_costs_nothing():
    times, cpu = _finish_times(2, [1.0, 1.0, 1.0, 0.0])
    assert sorted(times) == pytest.approx([0.0, 1.0, 1.0, 2.0])
    assert cpu.calls == 3 and cpu.utilization(2.0) == pytest.approx(0.75)


def test_a_process_needs_a_lane():
    with pytest.raises(ValueError, match="at least one"):
        CpuLanes(0)
