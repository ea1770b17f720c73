"""NVML on a real NVIDIA GPU: the inventory reads sane figures and plans against them."""

from __future__ import annotations

import pytest

from cluster.inventory import GiB, from_nvml
from cluster.placement.demand import ModelDemand
from cluster.placement.planner import plan_placement
from cluster.placement.validate import check
from cluster.sizing.memory import estimate
from cluster.spec import ModelSpec

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def inventory():
    inv = from_nvml()
    if not inv.nodes:
        pytest.skip(f"no NVIDIA GPU: {inv.reason}")
    return inv


def test_nvml_reports_every_gpu_with_memory_and_capability(inventory):
    gpus = inventory.nodes[0].gpus
    assert [g.index for g in gpus] == list(range(len(gpus)))
    for g in gpus:
        assert g.name and g.total_bytes > 1 * GiB
        assert 0 < g.free_bytes <= g.total_bytes
        assert g.compute_capability is None or g.compute_capability >= (3, 0)
        assert g.index not in g.nvlink and all(0 <= p < len(gpus) for p in g.nvlink)
        for p in g.nvlink:  # links are symmetric
            assert g.index in gpus[p].nvlink


def test_a_small_model_plans_on_this_machine(inventory):
    model = ModelSpec(name="small", source="Qwen/Qwen2.5-0.5B-Instruct", dtype="bfloat16", max_model_len=2048)
    p = plan_placement([ModelDemand("small", estimate(model), seqs=1, context=2048)], inventory)
    assert p.replicas[0].gpu_memory_utilization > 0
    # Free memory, not just total, bounds the shares: what other processes hold is respected.
    g = inventory.nodes[0].gpus[p.replicas[0].gpu_ids[0]]
    assert p.replicas[0].gpu_memory_utilization * g.total_bytes <= g.free_bytes
    assert [x for x in check([model], p.placement_specs(), inventory) if x.severity == "error"] == []
