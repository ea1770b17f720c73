"""Requests in flight: the summed batch capacity of the healthy replicas of the models a job uses."""

from __future__ import annotations

from orchestrator.core.schema import FleetStatus, ReplicaStatus
from orchestrator.jobs.capacity import in_flight_for, models_of
from orchestrator.jobs.progress import Progress, last_progress
from orchestrator.service.config import parse_config

CONFIG = parse_config(
    {
        "models": [{"name": n, "source": f"x/{n}"} for n in ("a", "b", "c")],
        "roles": {"classifier": "a", "generalist": "a", "coder": "b", "judge": "c"},
        "patterns": {
            "single": {"kind": "single", "role": "generalist"},
            "router": {"kind": "router", "classifier": "classifier", "routes": {"code": {"role": "coder"}}, "fallback": "generalist"},
            "adaptive": {
                "kind": "adaptive",
                "classifier": "classifier",
                "routes": {"hard": {"pattern": "router"}},
                "fallback": "single",
            },
        },
    }
)
STATUS = FleetStatus(
    ok=False,
    hosts=[
        ReplicaStatus(model="a", replica=0, ok=True, capacity=16),
        ReplicaStatus(model="a", replica=1, ok=True, capacity=16),
        ReplicaStatus(model="b", replica=0, ok=True, capacity=8),
        ReplicaStatus(model="c", replica=0, ok=False, capacity=4),
    ],
)


def test_models_of_follow_roles_and_the_patterns_a_pattern_runs():
    assert models_of(CONFIG, "single") == {"a"}
    assert models_of(CONFIG, "router") == {"a", "b"}
    assert models_of(CONFIG, "adaptive") == {"a", "b"}
    assert models_of(CONFIG, "c") == {"c"}  # a hosted model is itself


def test_in_flight_sums_healthy_replicas_of_the_models_used():
    assert in_flight_for(CONFIG, STATUS, ["single"]) == 32
    assert in_flight_for(CONFIG, STATUS, ["single", "router"]) == 40
    assert in_flight_for(CONFIG, STATUS, ["c"]) == 1  # its only replica is down: still one at a time


def test_progress_rates_and_the_last_progress_line_of_a_log():
    p = Progress(total=100, done=60, resumed=20, elapsed_s=8.0, prompt_tokens=5, completion_tokens=7)
    assert p.rows_per_s == 5.0 and p.eta_s == 8.0 and p.tokens == 12
    log = "\n".join(["starting", Progress(total=100, done=10).line(), "noise", p.line(), "tail"])
    assert last_progress(log) == p
