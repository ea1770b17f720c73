"""The memory model against published facts of the Qwen2.5 family."""

from __future__ import annotations

import json

import pytest

from cluster.errors import SizingError
from cluster.sizing.catalog import catalog_entries, find_config
from cluster.sizing.memory import CUDA_GRAPH_BYTES, GiB, estimate, kv_target
from cluster.spec import ModelSpec, PlacementSpec

KiB = 1024


def mem(source: str, **kw):
    return estimate(ModelSpec(name="m", source=source, **kw))


@pytest.mark.parametrize(
    ("source", "kib"),
    [
        ("Qwen/Qwen2.5-1.5B-Instruct", 28),
        ("Qwen/Qwen2.5-7B-Instruct", 56),
        ("Qwen/Qwen2.5-14B-Instruct", 192),
        ("Qwen/Qwen2.5-32B-Instruct", 256),
    ],
)
def test_kv_bytes_per_token_bf16(source, kib):
    # 2 × layers × KV heads × head dim × 2 bytes
    assert mem(source, dtype="bfloat16").kv_bytes_per_token == kib * KiB


@pytest.mark.parametrize(
    ("source", "billions"),
    [  # parameter counts the hub's safetensors metadata reports
        ("Qwen/Qwen2.5-0.5B-Instruct", 0.494),
        ("Qwen/Qwen2.5-1.5B-Instruct", 1.544),
        ("Qwen/Qwen2.5-3B-Instruct", 3.086),
        ("Qwen/Qwen2.5-7B-Instruct", 7.616),
        ("Qwen/Qwen2.5-Coder-7B-Instruct", 7.616),
        ("Qwen/Qwen2.5-14B-Instruct", 14.770),
        ("Qwen/Qwen2.5-32B-Instruct", 32.764),
        ("Qwen/Qwen2.5-72B-Instruct", 72.706),
    ],
)
def test_parameter_counts(source, billions):
    assert mem(source).params / 1e9 == pytest.approx(billions, rel=0.005)


def test_32b_bf16_weights_match_the_published_size():
    m = mem("Qwen/Qwen2.5-32B-Instruct", dtype="bfloat16")
    assert m.weight_bytes / GiB == pytest.approx(61.6, rel=0.02)
    assert m.weight_format == "bfloat16"


def test_awq_int4_weights_are_about_a_third_and_match_the_awq_checkpoint():
    awq = mem("Qwen/Qwen2.5-32B-Instruct-AWQ")
    assert awq.weight_format == "awq-int4"
    assert awq.weight_bytes / 1e9 == pytest.approx(19.3, rel=0.05)  # the hub repository's size
    assert awq.kv_bytes_per_token == 256 * KiB  # quantized weights, float16 KV


def test_fp8_halves_linear_weights_but_keeps_embeddings():
    bf16 = mem("Qwen/Qwen2.5-7B-Instruct", dtype="bfloat16")
    fp8 = mem("Qwen/Qwen2.5-7B-Instruct", dtype="bfloat16", quantization="fp8")
    lin, other = bf16.arch.linear_params(), bf16.arch.other_params()
    assert fp8.weight_bytes == lin + 2 * other
    assert 0.5 < fp8.weight_bytes / bf16.weight_bytes < 0.6


def test_float32_doubles_weights_and_kv():
    bf16 = mem("Qwen/Qwen2.5-1.5B-Instruct", dtype="bfloat16")
    f32 = mem("Qwen/Qwen2.5-1.5B-Instruct", dtype="float32")
    assert f32.weight_bytes == 2 * bf16.weight_bytes
    assert f32.kv_bytes_per_token == 2 * bf16.kv_bytes_per_token


def test_tensor_parallel_sizes_divide_attention_and_kv_heads():
    assert mem("Qwen/Qwen2.5-1.5B-Instruct").tp_sizes(8) == [1, 2]  # 12 heads, 2 KV heads
    assert mem("Qwen/Qwen2.5-7B-Instruct").tp_sizes(8) == [1, 2, 4]  # 28, 4
    assert mem("Qwen/Qwen2.5-32B-Instruct").tp_sizes(8) == [1, 2, 4, 8]  # 40, 8


def test_need_is_weights_plus_kv_plus_overhead_and_kv_tokens_inverts_it():
    m = mem("Qwen/Qwen2.5-14B-Instruct")
    tokens = 8 * 8192
    need = m.need_bytes(tokens)
    assert need == m.weight_bytes + tokens * m.kv_bytes_per_token + m.overhead_bytes()
    assert m.kv_tokens(need) == tokens
    assert m.kv_tokens(m.fixed_bytes() - 1) == 0
    # Tensor parallel splits weights and KV across ranks, each rank pays its own overhead.
    assert m.need_bytes(tokens, 2) < need / 2 + m.overhead_bytes(2)
    assert m.kv_tokens(m.need_bytes(tokens, 2), 2) == pytest.approx(tokens, abs=2)


def test_overhead_is_stated_and_eager_mode_skips_cuda_graphs():
    graphs = mem("Qwen/Qwen2.5-7B-Instruct")
    eager = mem("Qwen/Qwen2.5-7B-Instruct", enforce_eager=True)
    assert graphs.overhead_bytes() - eager.overhead_bytes() == CUDA_GRAPH_BYTES
    assert 1 * GiB < graphs.overhead_bytes() < 4 * GiB


def test_local_config_json_is_read(tmp_path):
    cfg = {
        "model_type": "qwen2", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = mem(str(tmp_path))
    assert m.origin.startswith("local:")
    assert m.kv_bytes_per_token == 2 * 2 * 2 * 32 * 4
    assert m.act_bytes == 4  # dtype auto follows torch_dtype


def test_catalog_covers_the_qwen25_family_and_quantized_variants():
    assert {"qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-coder-7b", "qwen2.5-14b",
            "qwen2.5-32b", "qwen2.5-72b"} <= set(catalog_entries())
    found = find_config("Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4")
    assert found is not None and found.config["quantization_config"]["quant_method"] == "gptq"


def test_unknown_model_is_a_sizing_error_naming_it():
    with pytest.raises(SizingError, match=r"'mystery'.*cannot size 'nobody/nothing'"):
        estimate(ModelSpec(name="mystery", source="nobody/nothing"))


def test_kv_target_defaults_to_the_engine_limits_and_caps_context():
    model = ModelSpec(name="m", source="x", max_model_len=4096, max_num_seqs=32)
    assert kv_target(model, PlacementSpec()) == (32, 4096)
    assert kv_target(model, PlacementSpec(min_concurrency=4, context=100_000)) == (4, 4096)


def test_hugging_face_cache_is_read_before_the_catalog(tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--Qwen--Qwen2.5-7B-Instruct"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc\n")
    (repo / "snapshots" / "abc").mkdir(parents=True)
    cfg = dict(find_config("Qwen/Qwen2.5-7B-Instruct").config, num_hidden_layers=2)
    (repo / "snapshots" / "abc" / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    m = mem("Qwen/Qwen2.5-7B-Instruct", dtype="bfloat16")
    assert m.origin.startswith("hf-cache:") and m.kv_bytes_per_token == 2 * 2 * 4 * 128 * 2
