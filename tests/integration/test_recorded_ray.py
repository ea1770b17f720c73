"""Recorded answers deployed for real: ModelHost actors replay them under Ray, a pattern over them
answers through the orchestrator's Serve application, and a step they cannot play fails with
`NotRecorded` across the handle."""

from __future__ import annotations

import json

import pytest

from cluster.errors import NotRecorded
from orchestrator.core.schema import ChatRequest
from orchestrator.patterns import ConsensusDecision, decision_of
from orchestrator.runtime.deploy import deploy, find_orchestrator
from orchestrator.service.config import parse_config
from serving.types import Message

pytestmark = pytest.mark.integration
NAMESPACE = "chorus-recorded-test"

RECORDS = [
    {"question": "Tom has 3 apples and buys 4 more. How many?", "answers": {"a": "3 + 4 = 7\n#### 7", "b": "#### 7", "c": "#### 8", "strong": "#### 7"}},
]


@pytest.fixture(scope="module")
def recorded(ray_cluster, tmp_path_factory):
    path = tmp_path_factory.mktemp("records") / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    models = [{"name": m, "source": str(path), "engine": "recorded", "recorded": {"gpus": 0}} for m in ("a", "b", "c", "strong")]
    config = parse_config(
        {
            "models": models,
            "roles": {m: m for m in ("a", "b", "c", "strong")},
            "placement": {m: {"num_cpus": 0.1} for m in ("a", "b", "c", "strong")},
            "patterns": {
                "agree": {"kind": "consensus", "members": ["a", "b", "c"], "extract": "numeric", "escalate_to": "strong"},
                "verified": {"kind": "cascade", "tiers": ["a", "strong"], "verifier": "b"},
            },
        },
        "recorded-test.yaml",
    )
    dep = deploy(config, http=False, namespace=NAMESPACE, timeout_s=120)
    yield dep
    dep.shutdown()


def ask(model: str, text: str) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content=text)])


def test_a_pattern_over_recorded_models_answers_through_ray(recorded):
    orch = find_orchestrator(NAMESPACE)
    reply = orch.chat.remote(ask("agree", "Tom has 3 apples and buys 4 more. How many?")).result(timeout_s=60)
    assert reply.text == "3 + 4 = 7\n#### 7"
    d = decision_of(reply.trace)
    assert isinstance(d, ConsensusDecision) and not d.escalated
    assert d.tally is not None and d.tally.winner == "7" and d.tally.basis == "numeric"
    assert reply.trace.totals.model_calls == 3 and reply.trace.totals.completion_tokens > 0


def test_what_recorded_answers_cannot_play_fails_clearly_across_ray(recorded):
    orch = find_orchestrator(NAMESPACE)
    with pytest.raises(NotRecorded, match="constrained"):
        orch.chat.remote(ask("verified", "Tom has 3 apples and buys 4 more. How many?")).result(timeout_s=60)
    with pytest.raises(NotRecorded, match="no recorded answer"):
        orch.chat.remote(ask("a", "An unrecorded question")).result(timeout_s=60)
