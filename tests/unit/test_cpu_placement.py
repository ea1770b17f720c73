"""CPU placement: cores per engine, the request tier's share, GPU affinity, and `chorus plan` on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from cluster.errors import PlacementError
from cluster.inventory import Gpu, Inventory, Node, _mask_cpus, format_cpu_list, from_nvml, parse_cpu_list
from cluster.placement.cpus import CpuNode, nodes_of, plan_cpus, render_cpus, with_cpus
from cluster.spec import GpuSlot, PlacementSpec
from orchestrator.cli.plan_command import main as plan_main
from orchestrator.service.config import load_config
from tests.unit.test_inventory import FakeNvml

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CPU = PlacementSpec()  # one CPU replica, num_cpus 1


def test_cpu_lists_round_trip():
    assert parse_cpu_list("0,2-4,9") == (0, 2, 3, 4, 9)
    assert format_cpu_list((9, 0, 2, 3, 4)) == "0,2-4,9"
    assert format_cpu_list(parse_cpu_list("7")) == "7"


def test_three_engines_on_two_cores_are_spread_not_all_on_core_0():
    plan = plan_cpus(["a", "b", "c"], {"a": CPU, "b": CPU, "c": CPU}, [CpuNode(0, (0, 1))])
    assert plan.sets() == {"a": ["0"], "b": ["1"], "c": ["0"]}
    assert plan.request == {0: ()}  # on 2 cores the request tier shares them


def test_spare_cores_go_to_the_engines_but_one_for_their_schedulers_and_the_request_tier():
    assert plan_cpus(["a"], {"a": CPU}, [CpuNode(0, (0, 1))]).sets() == {"a": ["0"]}
    assert plan_cpus(["a"], {"a": CPU}, [CpuNode(0, (0, 1, 2))]).sets() == {"a": ["0-1"]}
    two = plan_cpus(["a", "b"], {"a": CPU, "b": CPU}, [CpuNode(0, (0, 1, 2))])
    assert two.sets() == {"a": ["0"], "b": ["1"]}
    # 4 cores keep one for the request tier already: the engine gets the other three.
    assert plan_cpus(["a"], {"a": CPU}, [CpuNode(0, (0, 1, 2, 3))]).sets() == {"a": ["0-2"]}


def test_big_node_keeps_cores_for_the_request_tier_and_splits_the_rest_in_blocks():
    specs = {"a": CPU, "b": PlacementSpec(num_cpus=2, replicas=2)}
    plan = plan_cpus(["a", "b"], specs, [CpuNode(0, tuple(range(16)))])
    assert plan.request[0] == (14, 15)
    sets = plan.sets()
    cores = [parse_cpu_list(s) for s in sets["a"] + sets["b"]]
    assert sorted(c for cs in cores for c in cs) == list(range(14))  # disjoint, all engine cores used
    assert all(list(cs) == list(range(cs[0], cs[-1] + 1)) for cs in cores)  # contiguous
    assert len(cores[0]) < len(cores[1])  # in proportion to num_cpus


def test_explicit_request_cpus_and_a_bound_that_leaves_none():
    plan = plan_cpus(["a"], {"a": CPU}, [CpuNode(0, (0, 1, 2, 3))], request_cpus=2)
    assert plan.request[0] == (2, 3) and plan.sets() == {"a": ["0-1"]}
    with pytest.raises(PlacementError, match="leaves node 0"):
        plan_cpus(["a"], {"a": CPU}, [CpuNode(0, (0, 1))], request_cpus=2)


def _gpu_inventory() -> Inventory:
    gpus = tuple(Gpu(i, "H100", 80 << 30, 80 << 30, cpus=tuple(range(8)) if i < 2 else tuple(range(8, 16))) for i in range(4))
    return Inventory((Node(0, "n", gpus, cpus=tuple(range(16))),), source="spec:x")


def test_gpu_replicas_follow_their_gpus_numa_cores():
    specs = {
        "a": PlacementSpec(gpu_share=0.5, replicas=2, gpus=[GpuSlot(gpu_ids=[0]), GpuSlot(gpu_ids=[3])]),
        "b": PlacementSpec(gpu_share=0.5, gpus=[GpuSlot(gpu_ids=[1])]),
    }
    plan = plan_cpus(["a", "b"], specs, nodes_of(_gpu_inventory()))
    assert plan.of("a", 0).cpu_list == plan.of("b", 0).cpu_list == "0-7"  # GPUs 0, 1: the first NUMA node
    assert plan.of("a", 1).cpu_list == "8-13"  # GPU 3's cores, minus the request tier's 14-15
    assert "NUMA cores (NVML)" in render_cpus(plan)


def test_cpu_replicas_avoid_the_cores_of_gpu_engines():
    specs = {"g": PlacementSpec(gpu_share=0.5, gpus=[GpuSlot(gpu_ids=[0])]), "c": CPU}
    plan = plan_cpus(["g", "c"], specs, nodes_of(_gpu_inventory()))
    assert plan.of("c", 0).cpu_list == "8-13"


def test_gpu_without_affinity_takes_any_core():
    inv = Inventory((Node(0, "n", (Gpu(0, "X", 1 << 30, 1 << 30),), cpus=(0, 1, 2, 3)),), source="spec:x")
    plan = plan_cpus(["a"], {"a": PlacementSpec(gpu_share=0.5, gpus=[GpuSlot(gpu_ids=[0])])}, nodes_of(inv))
    assert plan.of("a", 0).cpus == (0, 1, 2)  # every core but the request tier's (3)
    assert "NVML gave no affinity" in render_cpus(plan)


def test_nvml_affinity_mask_becomes_cpu_ids():
    assert _mask_cpus([0b1011, 1]) == (0, 1, 3, 64)

    class WithAffinity(FakeNvml):
        def nvmlDeviceGetCpuAffinity(self, h, words):
            assert words >= 1
            if h == 2:
                raise self.NVMLError("Not Supported")
            return [0b1 << h]

    gpus = from_nvml(WithAffinity()).nodes[0].gpus
    assert [g.cpus for g in gpus] == [(0,), (1,), ()]  # within this process's mask (cores 0, 1 here)


def test_placement_cpus_are_checked():
    assert PlacementSpec(replicas=2, cpus=["0", "1-3"]).cpus == ["0", "1-3"]
    for bad, words in [(["0"], "give one per replica"), (["0", "a"], "not a CPU list"), (["0", "3-1"], "backwards")]:
        with pytest.raises(ValidationError, match=words):
            PlacementSpec(replicas=2, cpus=bad)


def test_with_cpus_sets_each_deployments_cores():
    config = load_config(CONFIGS / "cpu-test.yaml")
    placement = {m.name: config.placement_of(m.name) for m in config.models}
    planned = with_cpus(placement, plan_cpus(list(placement), placement, [CpuNode(0, (0, 1))]))
    # One core each, dealt in the config's order: tiny, tiny-embed, tiny-b, smol.
    expected = {"tiny": ["0"], "tiny-embed": ["1"], "tiny-b": ["0"], "smol": ["1"]}
    assert {m: p.cpus for m, p in planned.items()} == expected
    assert planned["tiny"].num_cpus == placement["tiny"].num_cpus  # the rest is kept


def test_chorus_plan_on_a_cpu_machine_writes_cores(tmp_path, capsys):
    inv = from_nvml()
    if inv.nodes:
        pytest.skip("a GPU is visible here")
    out = tmp_path / "planned.yaml"
    assert plan_main(["plan", "-c", str(CONFIGS / "cpu-test.yaml"), "-o", str(out), "--cpus", "2"]) == 0
    printed = capsys.readouterr().out
    assert "VLLM_CPU_OMP_THREADS_BIND" in printed and "tiny-b#0" in printed
    raw = yaml.safe_load(out.read_text())
    assert raw["placement"]["tiny"]["cpus"] == ["0"] and raw["placement"]["tiny-embed"]["cpus"] == ["1"]
    # The written file is a config chorus loads (sources resolve relative to the original).
    (tmp_path / "configs").mkdir()
    moved = tmp_path / "configs" / "p.yaml"
    moved.write_text(out.read_text().replace("../.cache", str(CONFIGS.parent / ".cache")))
    assert load_config(moved).placement_of("smol").cpus == ["1"]


def test_chorus_plan_for_gpus_writes_cores_too(capsys):
    assert plan_main(["plan", "-c", str(CONFIGS / "gpu-8x80.yaml"), "--gpus", "8xH100-80GB", "--cpus", "64", "-o", "-"]) == 0
    text = capsys.readouterr().out
    planned = yaml.safe_load(text[text.index("models:") :])
    cpus = {c for p in planned["placement"].values() for c in p["cpus"]}
    assert cpus == {"0-55"}  # the spec says no NUMA layout: every engine core but the request tier's 8
