"""Shared test set-up: where the prepared models live."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / ".cache" / "models"


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    path = MODELS / "tiny-qwen2"
    if not (path / "config.json").exists():
        pytest.fail(f"{path} is missing: run `make models` (make test does it)")
    return path
