"""The recorded answers of real models in ../shared/quality (beside the repository), for tests.

Tests that need them skip with a reason when the folder is absent.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUALITY = ROOT.parent / "shared" / "quality"
GSM8K = QUALITY / "gsm8k-dev.jsonl"
MMLU_PRO = QUALITY / "mmlupro-dev.jsonl"

needs_quality = pytest.mark.skipif(
    not GSM8K.exists() or not MMLU_PRO.exists(),
    reason=f"recorded answers not found at {QUALITY} (shared/ beside the repository)",
)


@lru_cache(maxsize=2)
def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
