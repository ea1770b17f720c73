"""The GPU presets load, and their placements are what the planner gives and the checker accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.inventory import from_spec
from cluster.placement.demand import model_demands
from cluster.placement.planner import plan_placement
from cluster.placement.validate import check
from orchestrator.service.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = {"gpu-1x80.yaml": "1xH100-80GB", "gpu-8x80.yaml": "8xH100-80GB"}


@pytest.mark.parametrize(("name", "spec"), PRESETS.items())
def test_preset_placement_is_valid_on_its_gpus(name, spec):
    config = load_config(CONFIGS / name)
    problems = check(config.models, config.placement, from_spec(spec))
    assert problems == [], [str(p) for p in problems]
    for m in config.models:
        p = config.placement_of(m.name)
        assert p.on_gpu and p.gpus is not None, f"{m.name} is not pinned"
        assert m.source.startswith("Qwen/Qwen2.5-") and m.dtype in ("bfloat16", "float16")


@pytest.mark.parametrize(("name", "spec"), PRESETS.items())
def test_preset_placement_is_what_chorus_plan_writes(name, spec):
    config = load_config(CONFIGS / name)
    result = plan_placement(model_demands(config.models, config.placement, config.roles), from_spec(spec))
    assert result.placement_specs(config.placement) == {m.name: config.placement_of(m.name) for m in config.models}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_roles_and_patterns(name):
    config = load_config(CONFIGS / name)
    for role in ("classifier", "generalist", "coder", "reasoner", "planner", "judge", "synthesizer"):
        assert role in config.roles
    assert config.patterns["single"].kind == "single"
    router = config.patterns["router"]
    assert router.kind == "router" and router.fallback == "generalist" and router.min_confidence == 0.5
    assert set(router.routes) == {"code", "math", "general"}


def test_one_gpu_preset_runs_the_32b_as_awq():
    config = load_config(CONFIGS / "gpu-1x80.yaml")
    planner = config.model(config.roles["planner"])
    assert planner.source == "Qwen/Qwen2.5-32B-Instruct-AWQ" and planner.quantization == "awq"


def test_eight_gpu_preset_does_not_fit_one_gpu():
    config = load_config(CONFIGS / "gpu-8x80.yaml")
    assert any(p.severity == "error" for p in check(config.models, config.placement, from_spec("1xH100-80GB")))
