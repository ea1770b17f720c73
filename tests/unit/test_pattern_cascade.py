"""cascade: stop at the first accepted answer, escalate on rejection, score thresholds, failures."""

from __future__ import annotations

import pytest

from cluster.errors import ConfigError, EngineError, PatternFailed
from orchestrator.core.budget import Budget
from orchestrator.core.schema import ChatRequest
from orchestrator.patterns import CascadeDecision
from orchestrator.service.config import parse_config
from serving.types import Choice, Message
from tests.unit.pattern_kit import ask, build, decision, last

TIERS = ["generalist", "reasoner", "coder"]


def setup(verdicts, check="yes_no", answers=None, **fields):
    """Tier i answers `t<i>`; the verifier says verdicts['t<i>'] for it."""
    answers = answers or {r: f"t{i}" for i, r in enumerate(TIERS)}
    scripts = {r: (lambda req, a=a: a) for r, a in answers.items()}

    def verifier(req):
        text = last(req)
        for key, verdict in verdicts.items():
            if text.endswith(f"\n{key}"):
                return verdict
        return "no" if check == "yes_no" else "1"

    scripts["verifier"] = verifier
    spec = {"kind": "cascade", "tiers": TIERS, "verifier": "verifier", "check": check, **fields}
    return build(scripts, {"cascade": spec})


async def test_the_first_accepted_answer_stops_the_cascade():
    chorus, engines = setup({"t0": "yes"})
    reply = await chorus.chat(ask("?", "cascade"))
    assert reply.text == "t0"
    d = decision(reply, CascadeDecision)
    assert d.escalated is False and reply.trace.totals.escalated is False
    assert (d.accepted_tier, d.accepted_because) == (0, "verified")
    assert engines["reasoner"].calls == [] and reply.trace.totals.model_calls == 2
    assert engines["verifier"].calls[0].constraint == Choice(options=["yes", "no"])


async def test_a_rejected_answer_escalates_to_the_next_tier():
    chorus, _ = setup({"t0": "no", "t1": "yes"})
    reply = await chorus.chat(ask("?", "cascade"))
    d = decision(reply, CascadeDecision)
    assert reply.text == "t1" and d.escalated is True and reply.trace.totals.escalated
    assert [t.accepted for t in d.tiers] == [False, True]
    assert [s.name for s in reply.trace.steps] == ["tier[0]", "verify[0]", "tier[1]", "verify[1]"]


async def test_the_last_tier_is_returned_unverified():
    chorus, engines = setup({})
    reply = await chorus.chat(ask("?", "cascade"))
    assert reply.text == "t2"
    d = decision(reply, CascadeDecision)
    assert (d.accepted_tier, d.accepted_because) == (2, "last_tier")
    assert len(engines["verifier"].calls) == 2


@pytest.mark.parametrize(("score", "accepted"), [("6", False), ("7", True), ("10", True)])
async def test_score_check_accepts_at_min_score(score, accepted):
    chorus, _ = setup({"t0": score}, check="score", min_score=7)
    reply = await chorus.chat(ask("?", "cascade"))
    assert (reply.text == "t0") is accepted
    assert decision(reply, CascadeDecision).tiers[0].score == int(score)


async def test_a_failed_tier_or_verifier_escalates():
    answers = {"generalist": EngineError("down"), "reasoner": "t1", "coder": "t2"}
    chorus, _ = setup({"t1": EngineError("verifier down")}, answers=answers)
    reply = await chorus.chat(ask("?", "cascade"))
    tiers = decision(reply, CascadeDecision).tiers
    assert tiers[0].error is not None and "down" in tiers[0].error
    assert tiers[1].verify_error is not None and "verifier down" in tiers[1].verify_error
    assert reply.text == "t2"


async def test_when_stronger_tiers_fail_the_last_answer_is_returned_and_flagged():
    answers = {"generalist": "t0", "reasoner": EngineError("x"), "coder": EngineError("y")}
    chorus, _ = setup({}, answers=answers)
    reply = await chorus.chat(ask("?", "cascade"))
    assert reply.text == "t0"
    d = decision(reply, CascadeDecision)
    assert (d.accepted_tier, d.accepted_because) == (0, "stronger_tiers_failed")


async def test_every_tier_failing_is_an_error():
    chorus, _ = setup({}, answers={r: EngineError("x") for r in TIERS})
    with pytest.raises(PatternFailed, match="every cascade tier failed"):
        await chorus.chat(ask("?", "cascade"))


async def test_budget_stops_escalation():
    chorus, engines = setup({"t0": "no"})
    req = ChatRequest(model="cascade", messages=[Message(role="user", content="?")], budget=Budget(max_model_calls=3))
    reply = await chorus.chat(req)
    assert reply.text == "t0" and engines["reasoner"].calls == []
    assert decision(reply, CascadeDecision).accepted_because == "budget"


def test_repeated_tiers_are_rejected():
    data = {
        "models": [{"name": "m", "source": "x"}],
        "roles": {"a": "m", "verifier": "m"},
        "patterns": {"c": {"kind": "cascade", "tiers": ["a", "a"]}},
    }
    with pytest.raises(ConfigError, match="escalating to the same role cannot help"):
        parse_config(data, "c.yaml")
