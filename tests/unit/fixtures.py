"""Build a `Chorus` over scripted engines: one model per role so each role answers its own way."""

from __future__ import annotations

from typing import Any

from cluster.spec import ModelSpec
from orchestrator.routing.fleet import Fleet
from orchestrator.routing.replicas import LocalReplica
from orchestrator.service.chorus import Chorus
from orchestrator.service.config import parse_config
from tests.fakes.scripted_engine import Script, ScriptedEngine


def scripted_chorus(
    scripts: dict[str, Script],
    patterns: dict[str, Any],
    *,
    delay_s: float = 0.0,
    confidence: float = 1.0,
    extra: dict[str, Any] | None = None,
) -> tuple[Chorus, dict[str, ScriptedEngine]]:
    """`scripts` maps role → script; each role gets a model named after it."""
    data = {
        "models": [{"name": role, "source": f"scripted/{role}"} for role in scripts],
        "roles": {role: role for role in scripts},
        "patterns": patterns,
        **(extra or {}),
    }
    config = parse_config(data, "test.yaml")
    engines = {
        role: ScriptedEngine(ModelSpec(name=role, source="scripted"), script, delay_s=delay_s, confidence=confidence)
        for role, script in scripts.items()
    }
    for engine in engines.values():
        engine.started = True
    fleet = Fleet({role: [LocalReplica(engine)] for role, engine in engines.items()})
    return Chorus(config, fleet), engines
