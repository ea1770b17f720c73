"""Config loading: the presets load; every kind of mistake names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster.errors import ConfigError
from orchestrator.service.config import load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "models": [{"name": "m", "source": "./m"}, {"name": "n", "source": "Qwen/Qwen2.5-7B-Instruct"}],
    "roles": {"generalist": "m", "classifier": "n"},
    "patterns": {"router": {"kind": "router", "routes": {"a": {"role": "generalist"}}}},
}


@pytest.mark.parametrize("name", ["cpu-test.yaml", "cpu-demo.yaml"])
def test_cpu_presets_load(name):
    config = load_config(ROOT / "configs" / name)
    assert "router" in config.patterns and config.models
    for m in config.models:
        assert Path(m.source).is_absolute() and m.source.endswith(("tiny-qwen2", "smollm2-135m"))
        assert m.kv_cache_memory_bytes is not None  # required on CPU


def test_sources_resolve_relative_to_the_file_and_hub_ids_stay(tmp_path):
    config = parse_config(BASE, str(tmp_path / "c.yaml"), tmp_path)
    assert config.model("m").source == str(tmp_path / "m")
    assert config.model("n").source == "Qwen/Qwen2.5-7B-Instruct"


def with_(**changes):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (with_(models__0__max_model_len=1), "models.0.max_model_len", "greater than or equal to 16"),
        (with_(models__0__dtpye="float32"), "models.0.dtpye", "unknown field"),
        (with_(models__0__dtype="fp64"), "models.0.dtype", "float32"),
        (with_(roles={"generalist": "ghost", "classifier": "n"}), "", "roles.generalist names model 'ghost'"),
        (with_(roles={"classifier": "n"}), "", "role(s) generalist that roles: does not bind"),
        (with_(patterns__router__kind="routr"), "patterns.router", "does not match any of the expected tags"),
        (with_(patterns__router__min_confidence=2), "patterns.router.min_confidence", "less than or equal to 1"),
        (with_(patterns__router__routes={}), "patterns.router.routes", "at least 1 item"),
        (with_(placement={"ghost": {"replicas": 1}}), "", "placement.ghost names no model"),
        (with_(placement={"m": {"tensor_parallel_size": 2}}), "placement.m", "needs GPUs"),
        (with_(placement={"m": {"replicas": 0}}), "placement.m.replicas", "greater than or equal to 1"),
        (with_(patterns={"m": {"kind": "single"}}), "", "has the name of a hosted model"),
        (with_(server={"port": 70000}), "server.port", "less than or equal to 65535"),
    ],
)
def test_bad_configs_name_the_field(data, field, words):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "fleet.yaml")
    err = info.value
    assert err.file == "fleet.yaml" and err.field == field
    assert words in str(err), str(err)
    assert str(err).startswith(f"fleet.yaml: {field}" if field else "fleet.yaml: ")


def test_duplicate_model_names(tmp_path):
    data = with_(models=[{"name": "m", "source": "./a"}, {"name": "m", "source": "./b"}], roles={})
    data["patterns"] = {}
    with pytest.raises(ConfigError, match="model names must be unique; repeated: m"):
        parse_config(data, "f.yaml")


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a YAML mapping"):
        load_config(bad)


def test_adaptive_naming_a_missing_pattern_fails_at_load():
    data = with_()
    data["roles"]["classifier"] = "n"
    data["patterns"]["pick"] = {
        "kind": "adaptive",
        "classifier": "classifier",
        "routes": {"easy": {"pattern": "ghost"}},
        "fallback": "router",
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, "f.yaml")
    assert info.value.field == "patterns.pick" and "names pattern 'ghost'" in str(info.value)
