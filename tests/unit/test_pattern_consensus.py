"""consensus: accept the vote at or above the threshold, escalate below it, budget and failures."""

from __future__ import annotations

from cluster.errors import EngineError
from orchestrator.core.budget import Budget
from orchestrator.core.schema import ChatRequest
from orchestrator.patterns import ConsensusDecision
from serving.types import Message
from tests.unit.pattern_kit import ask, build, decision, last

MEMBERS = ["generalist", "coder", "judge"]


def setup(texts, threshold=0.6, **fields):
    scripts = {role: (lambda req, t=t: t) for role, t in zip(MEMBERS, texts, strict=True)}
    scripts["reasoner"] = lambda req: "#### 99"
    spec = {
        "kind": "consensus",
        "members": MEMBERS,
        "extract": "numeric",
        "threshold": threshold,
        "escalate_to": "reasoner",
        **fields,
    }
    return build(scripts, {"consensus": spec})


async def test_agreement_at_the_threshold_accepts_the_vote():
    chorus, engines = setup(["#### 3", "#### 3", "#### 4"], threshold=2 / 3)
    reply = await chorus.chat(ask("?", "consensus"))
    assert reply.text == "#### 3"
    assert decision(reply, ConsensusDecision).escalated is False and reply.trace.totals.escalated is False
    assert engines["reasoner"].calls == []


async def test_agreement_below_the_threshold_escalates_with_the_answers_as_references():
    chorus, engines = setup(["#### 1", "#### 2", "#### 3"], threshold=0.5)
    reply = await chorus.chat(ask("what is it?", "consensus"))
    assert reply.text == "#### 99"
    d = decision(reply, ConsensusDecision)
    assert d.escalated and d.escalated_to == "reasoner" and "0.33 below threshold 0.50" in d.why
    assert reply.trace.totals.escalated is True and reply.trace.totals.early_stop is False
    prompt = last(engines["reasoner"].calls[0])
    assert prompt.index("what is it?") < prompt.index("#### 1") < prompt.index("#### 3")
    assert [s.name for s in reply.trace.steps][-1] == "escalate"


async def test_escalation_can_get_the_plain_conversation():
    chorus, engines = setup(["#### 1", "#### 2", "#### 3"], show_answers=False)
    await chorus.chat(ask("plain?", "consensus"))
    assert last(engines["reasoner"].calls[0]) == "plain?"


async def test_failed_members_weigh_nothing_and_are_reported():
    chorus, _ = setup(["#### 8", EngineError("x"), "#### 8"], threshold=1.0)
    reply = await chorus.chat(ask("?", "consensus"))
    d = decision(reply, ConsensusDecision)
    assert reply.text == "#### 8" and d.escalated is False
    assert d.failed_members[0].role == "coder"


async def test_no_budget_for_escalation_returns_the_plurality_and_says_so():
    chorus, engines = setup(["#### 1", "#### 1", "#### 2"], threshold=0.9)
    req = ChatRequest(model="consensus", messages=[Message(role="user", content="?")], budget=Budget(max_model_calls=3))
    reply = await chorus.chat(req)
    assert reply.text == "#### 1"
    d = decision(reply, ConsensusDecision)
    assert d.escalated is False and reply.trace.totals.escalated is False
    assert d.escalation_skipped and d.escalated_to is None and "below threshold" in d.why
    assert engines["reasoner"].calls == []
