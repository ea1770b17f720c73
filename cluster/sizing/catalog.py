"""Where a model's architecture facts come from: its own config.json, or the bundled catalog.

`find_config(source)` looks, in order, at
1. a local model folder (`source/config.json`),
2. the Hugging Face cache (`$HF_HOME/hub/models--Org--Name/snapshots/*/config.json`),
3. the catalog bundled with chorus (`cluster/sizing/catalog/*.json`: the Qwen2.5 family as published
   on the hub), so `chorus plan` works offline for those models.

Quantized hub variants (`…-AWQ`, `…-GPTQ-Int4`, `…-GPTQ-Int8`, `…-FP8`) resolve to the base
model's entry plus the quantization their own config.json would declare.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATALOG_DIR = Path(__file__).with_name("catalog")
# Suffix of a quantized hub repository → (quant_method, bits) its config.json declares.
QUANT_SUFFIXES: dict[str, tuple[str, int]] = {
    "-awq": ("awq", 4),
    "-gptq-int4": ("gptq", 4),
    "-gptq-int8": ("gptq", 8),
    "-fp8": ("fp8", 8),
}


@dataclass(frozen=True)
class FoundConfig:
    config: dict[str, Any]
    origin: str  # "local:<path>", "hf-cache:<path>" or "catalog:<entry>"


def catalog_entries() -> dict[str, dict[str, Any]]:
    """Catalog entry name → its config.json-like facts (read fresh each call; a few small files)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(CATALOG_DIR.glob("*.json"))}


def _split_quant(hub_id: str) -> tuple[str, dict[str, Any] | None]:
    lower = hub_id.lower()
    for suffix, (method, bits) in QUANT_SUFFIXES.items():
        if lower.endswith(suffix):
            qc = {"quant_method": method, "bits": bits}
            if method in ("awq", "gptq"):
                qc["group_size"] = 128
            return hub_id[: -len(suffix)], qc
    return hub_id, None


def from_catalog(hub_id: str) -> FoundConfig | None:
    base, quant = _split_quant(hub_id)
    for name, cfg in catalog_entries().items():
        if base.lower() in (h.lower() for h in cfg.get("chorus_hub_ids", [])):
            found = {k: v for k, v in cfg.items() if k != "chorus_hub_ids"}
            if quant:
                found["quantization_config"] = quant
                found["torch_dtype"] = "float16"  # the published AWQ/GPTQ checkpoints are float16
            return FoundConfig(found, f"catalog:{name}")
    return None


def _hf_cache(hub_id: str) -> Path | None:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    repo = home / "hub" / ("models--" + hub_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():  # the snapshot `main` points at, as transformers would load it
        config = repo / "snapshots" / ref.read_text().strip() / "config.json"
        if config.is_file():
            return config
    found = sorted((repo / "snapshots").glob("*/config.json")) if (repo / "snapshots").is_dir() else []
    return found[-1] if found else None


def find_config(source: str) -> FoundConfig | None:
    local = Path(source).expanduser()
    if (local / "config.json").is_file():
        return FoundConfig(json.loads((local / "config.json").read_text()), f"local:{local}")
    if "/" in source and not source.startswith(("/", ".", "~")):
        cached = _hf_cache(source)
        if cached is not None:
            return FoundConfig(json.loads(cached.read_text()), f"hf-cache:{cached}")
        return from_catalog(source)
    return None
