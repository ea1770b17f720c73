"""Build an evaluator over the recorded answers of ../shared/quality from a few lines of config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.eval.runner import Evaluator
from orchestrator.service.config import parse_config


async def evaluator(path: Path, roles: dict[str, str], patterns: dict[str, Any], gpus: dict[str, float] | None = None) -> Evaluator:
    """Roles bound to recorded models of `path` (role → the model's name in the records)."""
    models = [
        {"name": m, "source": str(path), "engine": "recorded", "recorded": {"gpus": (gpus or {}).get(m, 1.0)}}
        for m in dict.fromkeys(roles.values())
    ]
    config = parse_config({"models": models, "roles": roles, "patterns": patterns}, "test.yaml")
    return await Evaluator.create(config)
