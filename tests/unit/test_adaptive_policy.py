"""adaptive from results: a learned policy, bounded exploration, online feedback through HTTP."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from orchestrator.api.app import build_app
from orchestrator.core.outcomes import OutcomeStore
from orchestrator.core.schema import ChatRequest
from orchestrator.patterns import AdaptiveDecision, parse_decision
from orchestrator.patterns.adaptive import PolicyPick
from orchestrator.patterns.kit.policy import Policy, Stats, choose
from serving.types import Message
from tests.unit.pattern_kit import build, decision


def policy(**entries: dict[str, Stats]) -> Policy:
    return Policy(entries=entries, margin=0.02)


def test_policy_picks_the_cheapest_of_the_nearly_best():
    p = policy(maths={
        "single": Stats(n=100, score=80, gpu_s=100),  # 80 %, 1 GPU-s
        "consensus": Stats(n=100, score=93, gpu_s=300),  # 93 %, 3 GPU-s
        "vote5": Stats(n=100, score=94, gpu_s=1000),  # 94 %, 10 GPU-s
    })
    rng = random.Random(0)
    pick = choose(p, "maths", ["single", "consensus", "vote5"], 0.0, rng)
    assert pick is not None and pick.pattern == "consensus" and pick.entry == "maths" and not pick.explored
    # Over budget for consensus: the best of what is affordable.
    assert choose(p, "maths", ["single"], 0.0, rng).pattern == "single"
    # A label with no entry uses every label's entries together.
    assert choose(p, "law", ["single", "consensus"], 0.0, rng).entry == "*"
    assert choose(Policy(), "maths", ["single"], 0.0, rng) is None


def test_exploration_is_bounded_by_its_rate():
    p = policy(x={"a": Stats(n=10, score=9, gpu_s=10), "b": Stats(n=10, score=5, gpu_s=10)})
    rng = random.Random(1)
    picks = [choose(p, "x", ["a", "b"], 0.1, rng) for _ in range(2000)]
    explored = sum(c.explored for c in picks) / len(picks)
    assert 0.07 < explored < 0.13 and all(c.pattern == "b" for c in picks if c.explored)


SCRIPTS = {
    "classifier": lambda req: "maths",
    "generalist": lambda req: "g",
    "reasoner": lambda req: "r",
    "coder": lambda req: "r",
}


def patterns(policy_path: str, **extra: object) -> dict[str, object]:
    return {
        "quick": {"kind": "single", "role": "generalist"},
        "deep": {"kind": "vote", "members": ["generalist", "reasoner", "coder"]},
        "auto": {
            "kind": "adaptive",
            "routes": {"maths": {"pattern": "deep"}, "chat": {"pattern": "quick"}},
            "fallback": "quick",
            "policy": policy_path,
            **extra,
        },
    }


def policy_pick(body: dict[str, object]) -> PolicyPick:
    """The learned policy's pick in an HTTP reply's trace."""
    d = parse_decision(body["chorus"]["trace"]["decision"])  # type: ignore[index]
    assert isinstance(d, AdaptiveDecision) and d.policy is not None
    return d.policy


def ask_auto() -> ChatRequest:
    return ChatRequest(model="auto", messages=[Message(role="user", content="2+2?")])


async def test_adaptive_follows_the_policy_and_the_trace_names_the_entry(tmp_path):
    path = tmp_path / "policy.json"
    learned = policy(maths={"quick": Stats(n=50, score=49, gpu_s=5), "deep": Stats(n=50, score=49.5, gpu_s=15)})
    path.write_text(json.dumps(learned.model_dump()))
    chorus, engines = build(SCRIPTS, patterns(str(path)))
    reply = await chorus.chat(ask_auto())
    # The route says deep; the policy says quick is as right (within 2 points) for a third of the cost.
    d = decision(reply, AdaptiveDecision)
    assert (d.label, d.preferred, d.chosen) == ("maths", "quick", "quick")
    assert d.policy == PolicyPick(entry="maths", pattern="quick", n=50, accuracy=0.98, gpu_s=0.1, explored=False)
    assert engines["reasoner"].calls == []


async def test_feedback_is_stored_durably_and_updates_the_policy_online(tmp_path, monkeypatch):
    monkeypatch.setenv("CHORUS_HOME", str(tmp_path))  # where the server and the pattern keep outcomes
    store_path = tmp_path / "outcomes.sqlite"
    policy_path = tmp_path / "policy.json"
    start = policy(maths={"quick": Stats(n=2, score=2, gpu_s=0, calls=2), "deep": Stats(n=2, score=2, gpu_s=0, calls=6)})
    policy_path.write_text(json.dumps(start.model_dump()))
    chorus, _ = build(SCRIPTS, patterns(str(policy_path), learn=True))
    app = build_app(chorus)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chorus")
    body = {"model": "auto", "messages": [{"role": "user", "content": "2+2?"}]}
    reply = (await http.post("/v1/chat/completions", json=body)).json()
    assert policy_pick(reply).pattern == "quick"  # as right, fewer calls
    ok = await http.post("/v1/chorus/feedback", json={"response_id": reply["id"], "score": 0.0})
    assert ok.status_code == 200  # the caller says it was wrong
    # Durable: a new store on the same file sees the score; the policy now prefers deep (2/3 vs 2/2).
    assert OutcomeStore(store_path).stats()["maths"]["quick"].n == 1
    reply = (await http.post("/v1/chat/completions", json=body)).json()
    assert policy_pick(reply).pattern == "deep"
    missing = await http.post("/v1/chorus/feedback", json={"response_id": "chatcmpl-nope", "score": 1.0})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    bad = await http.post("/v1/chorus/feedback", json={"response_id": reply["id"], "score": 3})
    assert bad.status_code == 400


def test_explore_without_a_policy_is_refused(tmp_path):
    from orchestrator.patterns.adaptive import AdaptiveSpec

    with pytest.raises(ValueError, match="explore needs a policy"):
        AdaptiveSpec(kind="adaptive", routes={"a": {"pattern": "x"}}, fallback="x", explore=0.1)
