"""vote: extractors end to end, weights, ties, label constraint, semantic voting, failures, concurrency."""

from __future__ import annotations

import re

import pytest

from cluster.errors import ConfigError, EngineError, PatternFailed
from orchestrator.patterns import VoteDecision
from orchestrator.service.config import parse_config
from serving.types import Choice
from tests.unit.pattern_kit import InFlight, TopicEmbedder, ask, build, decision

ROLES = ["generalist", "reasoner", "coder"]


def vote(**fields):
    return {"vote": {"kind": "vote", "members": ROLES, **fields}}


def answers(*texts):
    """Each role answers its text (or raises its exception) whatever it is asked."""
    return {role: (lambda req, t=t: t) for role, t in zip(ROLES, texts, strict=True)}


async def test_numeric_majority_returns_a_whole_winning_answer():
    chorus, engines = build(answers("so\n#### 42", "#### 41", "6*7 is 42.0"), vote(extract="numeric"))
    reply = await chorus.chat(ask("6*7?", "vote"))
    assert reply.text == "so\n#### 42"  # the earliest member of the winning group, whole
    tally = decision(reply, VoteDecision).tally
    assert tally.winner == "42" and tally.winner_member == 0
    assert tally.agreement == pytest.approx(2 / 3, abs=1e-4)
    # Numeric voting asks members for the '#### <answer>' format, in a shared system message.
    first = engines["reasoner"].calls[0].messages[0]
    assert first.role == "system" and "####" in first.content


async def test_weights_turn_counting_into_weighted_voting():
    chorus, _ = build(answers("#### 1", "#### 2", "#### 1"), vote(extract="numeric", weights={"reasoner": 3}))
    reply = await chorus.chat(ask("?", "vote"))
    assert reply.text == "#### 2"
    assert decision(reply, VoteDecision).tally.agreement == pytest.approx(0.6)


async def test_a_tie_goes_to_the_earliest_member_and_is_reported():
    chorus, _ = build(
        {"generalist": lambda r: "no", "reasoner": lambda r: "yes", "coder": lambda r: "yes", "judge": lambda r: "no"},
        {"vote": {"kind": "vote", "members": ["generalist", "reasoner", "coder", "judge"]}},
    )
    reply = await chorus.chat(ask("?", "vote"))
    assert reply.text == "no"
    tally = decision(reply, VoteDecision).tally
    assert tally.tie is True
    assert tally.agreement == 0.5


async def test_label_voting_constrains_members_to_the_labels():
    chorus, engines = build(answers("spam", "ham", "spam"), vote(extract="label", labels=["spam", "ham"]))
    reply = await chorus.chat(ask("buy now", "vote"))
    assert reply.text == "spam"
    for role in ROLES:
        assert engines[role].calls[0].constraint == Choice(options=["spam", "ham"])


async def test_semantic_voting_picks_the_largest_clusters_central_answer():
    texts = ("Paris is the capital.", "It is Lyon.", "The capital is Paris, France.")
    embedder = TopicEmbedder(["Paris", "Lyon"])
    chorus, _ = build(answers(*texts), vote(extract="semantic", similarity=0.9), embedder=embedder)
    reply = await chorus.chat(ask("capital of France?", "vote"))
    assert "Paris" in reply.text
    tally = decision(reply, VoteDecision).tally
    members = [[(m.index, m.role) for m in g.members] for g in tally.groups]
    assert members == [[(0, "generalist"), (2, "coder")], [(1, "reasoner")]]
    assert tally.agreement == pytest.approx(2 / 3, abs=1e-4)
    assert embedder.calls == 1


async def test_a_failed_member_is_left_out_and_reported():
    chorus, _ = build(answers("#### 5", EngineError("down"), "#### 5"), vote(extract="numeric"))
    reply = await chorus.chat(ask("?", "vote"))
    assert reply.text == "#### 5"
    d = decision(reply, VoteDecision)
    assert [f.role for f in d.failed_members] == ["reasoner"] and "down" in d.failed_members[0].error
    assert d.tally.agreement == 1.0  # of the members that answered
    assert reply.trace.totals.failed_calls == 1 and reply.trace.totals.model_calls == 3


async def test_every_member_failing_is_a_clear_error():
    boom = EngineError("gone")
    chorus, _ = build(answers(boom, boom, boom), vote())
    with pytest.raises(PatternFailed, match="every member of the vote failed"):
        await chorus.chat(ask("?", "vote"))


async def test_no_extractable_answer_is_a_clear_error():
    chorus, _ = build(answers("no idea", "none", "hmm"), vote(extract="numeric"))
    with pytest.raises(PatternFailed, match="numeric answer to vote on"):
        await chorus.chat(ask("?", "vote"))


async def test_members_run_concurrently():
    probe = InFlight()
    chorus, _ = build(answers("a", "a", "a"), vote(), delay_s=0.05, probe=probe)
    await chorus.chat(ask("?", "vote"))
    assert probe.peak == 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"extract": "label"}, "needs labels"),
        ({"labels": ["a"]}, "only used with extract: label"),
        ({"weights": {"judge": 2}}, "weights name role(s) judge"),
        ({"weights": {"coder": 0}}, "must be > 0"),
        ({"members": ["coder"]}, "at least 2"),
    ],
)
def test_spec_errors_name_the_field_and_the_fix(fields, message):
    data = {
        "models": [{"name": "m", "source": "x"}],
        "roles": dict.fromkeys([*ROLES, "judge"], "m"),
        "patterns": vote(**fields),
    }
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        parse_config(data, "c.yaml")
    assert "patterns.vote" in str(info.value)


async def test_a_budget_smaller_than_the_members_is_a_budget_error():
    from cluster.errors import BudgetExceeded
    from orchestrator.core.budget import Budget
    from orchestrator.core.schema import ChatRequest
    from serving.types import Message

    chorus, _ = build(answers("a", "a", "a"), vote())
    req = ChatRequest(model="vote", messages=[Message(role="user", content="?")], budget=Budget(max_model_calls=2))
    with pytest.raises(BudgetExceeded, match="budget of 2 model calls used up"):
        await chorus.chat(req)
