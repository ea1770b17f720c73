"""The placement planner and the hand-written placement checks."""

from __future__ import annotations

import time
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.errors import PlacementError
from cluster.inventory import GiB, Gpu, Inventory, Node, from_spec
from cluster.placement.demand import ModelDemand, model_demands
from cluster.placement.planner import DEFAULT_CEILING, plan_placement, usable_bytes
from cluster.placement.validate import check
from cluster.sizing.memory import ModelMemory, estimate
from cluster.spec import GpuSlot, ModelSpec, PlacementSpec

SOURCES = {
    "0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
    "1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
    "3b": "Qwen/Qwen2.5-3B-Instruct",
    "7b": "Qwen/Qwen2.5-7B-Instruct",
    "coder-7b": "Qwen/Qwen2.5-Coder-7B-Instruct",
    "14b": "Qwen/Qwen2.5-14B-Instruct",
    "32b": "Qwen/Qwen2.5-32B-Instruct",
    "32b-awq": "Qwen/Qwen2.5-32B-Instruct-AWQ",
    "72b": "Qwen/Qwen2.5-72B-Instruct",
}


@cache
def memory(key: str, max_num_seqs: int = 32, max_model_len: int = 16384) -> ModelMemory:
    return estimate(ModelSpec(name=key.replace(".", "_"), source=SOURCES[key], dtype="bfloat16",
                              max_num_seqs=max_num_seqs, max_model_len=max_model_len))


def demand(name: str, key: str, replicas: int = 1, seqs: int = 8, context: int = 8192, **kw) -> ModelDemand:
    return ModelDemand(name, memory(key), replicas, seqs, context, **kw)


def fleet() -> list[ModelDemand]:
    return [
        demand("classifier", "1.5b", seqs=32, context=2048),
        demand("generalist", "7b", seqs=16),
        demand("coder", "coder-7b", seqs=16),
        demand("reasoner", "14b"),
        demand("planner", "32b"),
    ]


def assert_sound(p, demands: list[ModelDemand]) -> None:
    """The invariants every plan keeps."""
    by_name = {d.name: d for d in demands}
    load: dict[tuple[int, int], float] = {}
    for r in p.replicas:
        d = by_name[r.model]
        node = p.inventory.nodes[r.node]  # the whole group is on this one node
        assert len(set(r.gpu_ids)) == len(r.gpu_ids)
        assert d.memory.arch.heads % r.tensor_parallel_size == 0
        assert d.memory.arch.kv_heads % r.tensor_parallel_size == 0
        for g in r.gpu_ids:
            gpu = node.gpus[g]
            load[(r.node, g)] = load.get((r.node, g), 0.0) + r.gpu_memory_utilization
            assert r.gpu_memory_utilization * gpu.total_bytes >= r.need_bytes - gpu.total_bytes / 1000
        assert r.kv_tokens >= d.min_tokens * 0.99
    for (n, g), share in load.items():
        gpu = p.inventory.nodes[n].gpus[g]
        assert share * gpu.total_bytes <= usable_bytes(gpu, p.ceiling) + 1, f"GPU {n}:{g} over its memory"
        assert share <= p.ceiling + 1e-9
    assert sorted(p.models) == sorted(by_name)
    for d in demands:
        assert len(p.replicas_of(d.name)) >= d.replicas


def test_standard_fleet_on_one_8x80_node_uses_three_gpus():
    demands = fleet()
    p = plan_placement(demands, from_spec("8xH100-80GB"))
    assert_sound(p, demands)
    assert p.gpus_used() == 3  # one engine group per model would take 6
    (planner,) = p.replicas_of("planner")
    assert planner.tensor_parallel_size == 2 and planner.gpu_ids == (0, 1)  # 61 GiB + KV do not fit one GPU
    assert all(r.tensor_parallel_size == 1 for r in p.replicas if r.model != "planner")


def test_tensor_parallel_only_where_one_gpu_cannot_hold_the_model():
    demands = [demand("planner", "32b", seqs=1, context=2048)]
    p = plan_placement(demands, from_spec("8xH100-80GB"))
    assert p.replicas[0].tensor_parallel_size == 1  # 61 GiB + 0.5 GiB KV fit one 80 GB GPU
    p = plan_placement(demands, from_spec("8xA100-40GB"))
    assert p.replicas[0].tensor_parallel_size == 2


def test_small_models_share_one_gpu_within_the_ceiling():
    demands = [demand("a", "0.5b", seqs=4, context=2048), demand("b", "1.5b", seqs=4, context=2048), demand("c", "3b", seqs=4, context=2048)]
    p = plan_placement(demands, from_spec("2xRTX4090-24GB"))
    assert p.gpus_used() == 1
    assert sum(r.gpu_memory_utilization for r in p.replicas) == pytest.approx(DEFAULT_CEILING, abs=0.0015)
    assert_sound(p, demands)


def test_spare_room_goes_to_kv_in_proportion_to_the_targets():
    demands = [demand("a", "7b", seqs=4, context=4096), demand("b", "coder-7b", seqs=8, context=4096)]
    p = plan_placement(demands, from_spec("1xH100-80GB"))
    a, b = p.replicas_of("a")[0], p.replicas_of("b")[0]
    assert b.kv_tokens / a.kv_tokens == pytest.approx(2.0, rel=0.02)


def test_tensor_parallel_prefers_nvlink_linked_gpus():
    def gpu(i, peers):
        return Gpu(i, "X-80GB", 80 * GiB, 80 * GiB, (9, 0), frozenset(peers))

    node = Node(0, "n", (gpu(0, []), gpu(1, [2]), gpu(2, [1]), gpu(3, [])))
    p = plan_placement([demand("planner", "32b")], Inventory((node,), "test"))
    assert p.replicas[0].gpu_ids == (1, 2)


def test_multi_node_groups_stay_on_one_node():
    demands = [demand("planner", "32b", replicas=2, seqs=16)]
    p = plan_placement(demands, from_spec("2x4xA100-40GB"))
    assert_sound(p, demands)
    assert [r.tensor_parallel_size for r in p.replicas] == [4, 4]
    assert {r.node for r in p.replicas} == {0, 1}


def test_fill_gives_spare_gpus_to_the_busiest_first():
    demands = [demand("generalist", "7b", fill=True, weight=1), demand("reasoner", "14b", fill=True, weight=3),
            demand("classifier", "1.5b", seqs=8, context=2048)]
    p = plan_placement(demands, from_spec("4xH100-80GB"))
    assert_sound(p, demands)
    assert p.gpus_used() == 4
    extra = [r.model for r in p.replicas if r.extra]
    assert extra.count("reasoner") >= extra.count("generalist") >= 1
    first_extra = min((r for r in p.replicas if r.extra), key=lambda r: r.gpu_ids)
    assert first_extra.model == "reasoner"


def test_a_model_that_fits_nowhere_says_what_it_needs_and_how_to_fit():
    with pytest.raises(PlacementError) as info:
        plan_placement([demand("big", "72b")], from_spec("1xRTX4090-24GB"))
    err = info.value
    assert err.model == "big" and err.needed_bytes > 140 * GiB and 21 * GiB < err.largest_bytes < 22 * GiB
    text = str(err)
    assert "model 'big'" in text and "needs 1" in text and "largest GPU offers 21.6 GiB" in text
    assert "a GPU with more memory" in err.fixes


def test_fixes_name_quantization_tensor_parallel_and_smaller_targets():
    with pytest.raises(PlacementError) as info:
        plan_placement([demand("planner", "32b", seqs=8, context=8192)], from_spec("1xH100-80GB"))
    fixes = " ".join(info.value.fixes)
    assert "tensor parallel over 2 GPUs" in fixes and "fp8" in fixes
    assert "min_concurrency ≤ 3 at context 8192" in fixes and "context ≤" in fixes


def test_a_full_fleet_names_the_replica_that_did_not_fit():
    with pytest.raises(PlacementError, match=r"model 'reasoner': replica 0 needs .* fill the 2 GPU"):
        plan_placement(fleet(), from_spec("2xH100-80GB"))


def test_plans_are_deterministic_and_ignore_input_order():
    demands = fleet()
    a = plan_placement(demands, from_spec("8xH100-80GB"))
    b = plan_placement(list(reversed(demands)), from_spec("8xH100-80GB"))
    assert a == plan_placement(demands, from_spec("8xH100-80GB"))
    assert sorted(a.replicas, key=lambda r: r.model) == sorted(b.replicas, key=lambda r: r.model)


def test_planning_64_gpus_and_30_deployments_takes_under_a_second():
    keys = list(SOURCES)
    demands = [demand(f"d{i}", keys[i % 7], replicas=1 + i % 3, seqs=4, context=4096) for i in range(30)]
    start = time.perf_counter()
    p = plan_placement(demands, from_spec("8x8xH100-80GB"))
    assert time.perf_counter() - start < 1.0
    assert_sound(p, demands)


# --- properties ------------------------------------------------------------------------------

CARDS = ["H100-80GB", "A100-40GB", "L40S-48GB", "RTX4090-24GB"]


@st.composite
def cases(draw):
    nodes = draw(st.integers(1, 3))
    per = draw(st.integers(1, 8))
    card = draw(st.sampled_from(CARDS))
    inv = from_spec(f"{nodes}x{per}x{card}")
    n = draw(st.integers(1, 6))
    demands = [
        demand(
            f"m{i}",
            draw(st.sampled_from(list(SOURCES))),
            replicas=draw(st.integers(1, 3)),
            seqs=draw(st.sampled_from([1, 4, 16])),
            context=draw(st.sampled_from([1024, 4096, 16384])),
            fill=draw(st.booleans()),
            weight=draw(st.integers(1, 3)),
        )
        for i in range(n)
    ]
    return inv, demands


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_plan_keeps_gpus_within_memory_groups_on_one_node_and_is_deterministic(case):
    inv, demands = case
    try:
        p = plan_placement(demands, inv)
    except PlacementError as exc:
        assert exc.model == "" or exc.model in {d.name for d in demands}
        assert exc.fixes
        return
    assert_sound(p, demands)
    assert plan_placement(demands, inv) == p
    assert plan_placement(list(reversed(demands)), inv).replicas == tuple(
        sorted(p.replicas, key=lambda r: ([d.name for d in reversed(demands)].index(r.model), r.replica))
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_the_checker_accepts_every_plan(case):
    inv, demands = case
    try:
        p = plan_placement(demands, inv)
    except PlacementError:
        return
    models = [ModelSpec(name=d.name, source="unused", max_num_seqs=d.seqs, max_model_len=d.context) for d in demands]
    base = {d.name: PlacementSpec(min_concurrency=d.seqs, context=d.context) for d in demands}
    problems = check(models, p.placement_specs(base), inv, memory={d.name: d.memory for d in demands})
    assert [x for x in problems if x.severity == "error"] == []


# --- hand-written placements -----------------------------------------------------------------


def specs_and_models():
    models = [ModelSpec(name="coder", source=SOURCES["7b"], dtype="bfloat16", max_model_len=8192, max_num_seqs=8),
              ModelSpec(name="tiny", source=SOURCES["1.5b"], dtype="bfloat16", max_model_len=4096, max_num_seqs=8)]
    return models


def errors(placement, spec="2xH100-80GB"):
    return [p for p in check(specs_and_models(), placement, from_spec(spec)) if p.severity == "error"]


def test_check_accepts_a_sound_hand_written_placement():
    ok = {"coder": PlacementSpec(gpu_share=0.5, gpus=[GpuSlot(gpu_ids=[0])]),
          "tiny": PlacementSpec(gpu_share=0.3, gpus=[GpuSlot(gpu_ids=[0])])}
    assert errors(ok) == []


def test_check_finds_an_over_subscribed_gpu():
    bad = {"coder": PlacementSpec(gpu_share=0.7, gpus=[GpuSlot(gpu_ids=[1])]),
           "tiny": PlacementSpec(gpu_share=0.3, gpus=[GpuSlot(gpu_ids=[1])])}
    (e,) = errors(bad)
    assert e.field == "node 0 GPU 1" and "over-subscribed: shares sum to 1.000" in e.message and "coder#0 0.7" in e.message


def test_check_finds_gpus_and_nodes_that_do_not_exist_and_repeated_ids():
    bad = {"coder": PlacementSpec(replicas=2, tensor_parallel_size=2, gpu_share=0.5,
                                  gpus=[GpuSlot(node=0, gpu_ids=[1, 2]), GpuSlot(node=3, gpu_ids=[0, 1])]),
           "tiny": PlacementSpec(tensor_parallel_size=2, gpu_share=0.3, gpus=[GpuSlot(gpu_ids=[0, 0])])}
    fields = {e.field: e.message for e in errors(bad)}
    assert "GPU 2 does not exist on node 0, which has 2" in fields["placement.coder.gpus[0].gpu_ids"]
    assert "node 3 does not exist" in fields["placement.coder.gpus[1].node"]
    assert "lists a GPU twice" in fields["placement.tiny.gpus[0].gpu_ids"]


def test_check_finds_tensor_parallel_sizes_that_do_not_divide_the_heads():
    bad = {"coder": PlacementSpec(tensor_parallel_size=3, gpu_share=0.5, gpus=[GpuSlot(gpu_ids=[0, 1, 2])])}
    msgs = [e.message for e in errors(bad, "4xH100-80GB") if e.field.endswith("tensor_parallel_size")]
    assert msgs and "3 does not divide the 28 attention heads and 4 KV heads; use one of 1, 2, 4" in msgs[0]


def test_check_finds_a_share_too_small_for_the_weights():
    bad = {"coder": PlacementSpec(gpu_share=0.1, gpus=[GpuSlot(gpu_ids=[0])])}
    (e,) = errors(bad)
    assert e.field == "placement.coder.gpus[0].gpu_share" and "cannot start" in e.message and "raise gpu_share" in e.message


def test_check_warns_when_kv_falls_short_of_the_target_and_when_gpus_are_not_pinned():
    placement = {"coder": PlacementSpec(gpu_share=0.22, gpus=[GpuSlot(gpu_ids=[0])]), "tiny": PlacementSpec(gpu_share=0.2)}
    problems = check(specs_and_models(), placement, from_spec("1xH100-80GB"))
    assert {p.severity for p in problems} == {"warning"}
    assert any("fewer than the 8 × 8192" in p.message for p in problems)
    assert any("Ray picks the GPUs" in p.message for p in problems)


def test_check_without_gpus_says_to_pass_a_spec():
    (p,) = check(specs_and_models(), {}, Inventory((), "nvml", reason="no NVIDIA GPU visible"))
    assert "pass --gpus SPEC" in p.message


def test_deployments_from_a_config_use_targets_roles_and_restart_fill_from_one():
    models = specs_and_models()
    placement = {"coder": PlacementSpec(replicas=3, fill=True, min_concurrency=2, context=1024)}
    demands = model_demands(models, placement, {"coder": "coder", "judge": "coder", "x": "tiny"})
    coder, tiny = demands
    assert (coder.replicas, coder.seqs, coder.context, coder.weight, coder.fill) == (1, 2, 1024, 2, True)
    assert (tiny.replicas, tiny.seqs, tiny.context, tiny.weight) == (1, 8, 4096, 1)


# --- chorus plan ---------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    from orchestrator.cli.plan_command import main

    return main(["plan", *argv])


def test_chorus_plan_writes_yaml_that_check_accepts(tmp_path, capsys):
    from pathlib import Path

    from orchestrator.service.config import load_config

    preset = Path(__file__).resolve().parents[2] / "configs" / "gpu-8x80.yaml"
    out = tmp_path / "planned.yaml"
    assert cli("-c", str(preset), "--gpus", "8xH100-80GB", "-o", str(out)) == 0
    table = capsys.readouterr().out
    assert "n0:g0" in table and "planner#0" in table and "KV tokens" in table
    planned = load_config(out)
    assert planned.placement_of("planner").tensor_parallel_size == 2
    assert cli("--check", str(out), "--gpus", "8xH100-80GB") == 0
    assert "placement fits" in capsys.readouterr().out
    assert cli("--check", str(out), "--gpus", "2xH100-80GB") == 1
    assert "does not exist on node 0" in capsys.readouterr().out


def test_chorus_plan_reports_what_does_not_fit_and_missing_gpus(capsys):
    from pathlib import Path

    preset = Path(__file__).resolve().parents[2] / "configs" / "gpu-8x80.yaml"
    assert cli("-c", str(preset), "--gpus", "1xRTX4090-24GB", "-o", "-") == 1
    assert "to make it fit" in capsys.readouterr().err
    assert cli("-c", str(preset), "--gpus", "8xH100") == 2
    assert "e.g. 8xH100-80GB" in capsys.readouterr().err
    assert cli() == 2
    from cluster.inventory import from_nvml

    if not from_nvml().nodes:  # no GPU here: auto says so and how to plan ahead
        assert cli("-c", str(preset)) == 2
        assert "plan ahead with --gpus SPEC" in capsys.readouterr().err


def test_replicas_fill_is_shorthand_for_fill_true():
    p = PlacementSpec.model_validate({"replicas": "fill", "min_concurrency": 4})
    assert (p.replicas, p.fill, p.min_concurrency) == (1, True, 4)
    assert PlacementSpec.model_validate({"replicas": 3}).fill is False
