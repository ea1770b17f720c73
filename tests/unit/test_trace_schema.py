"""The trace's public schema: versioned, documented in docs/trace.md (kept in sync), its decision
serialized whole and read back typed through the decision union, totals from typed fields."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from pydantic import ValidationError

from orchestrator.core.decisions import FailedMember
from orchestrator.core.schema import Reply
from orchestrator.core.trace import Trace
from orchestrator.patterns import (
    AdaptiveDecision,
    ConsensusDecision,
    PatternDecision,
    PatternSpec,
    PyramidDecision,
    VoteDecision,
    decision_of,
    parse_decision,
)
from orchestrator.patterns.kit.ballot import GroupRecord, TallyRecord
from orchestrator.patterns.kit.members import MemberRef
from scripts.trace_doc import DOC, current, documented_models, own_fields, render
from tests.unit.pattern_kit import ask, build


def vote_decision() -> VoteDecision:
    group = GroupRecord(key="42", members=[MemberRef(index=0, role="a"), MemberRef(index=2, role="c")], weight=2.0)
    tally = TallyRecord(winner="42", winner_member=0, agreement=0.6667, tie=False, groups=[group])
    return VoteDecision(tally=tally, failed_members=[FailedMember(step="member[1]", role="b", error="down")])


def test_the_doc_is_generated_from_the_current_models():
    _, generated = current(DOC.read_text())
    assert generated == render(), "docs/trace.md is out of date: run python scripts/trace_doc.py"


def test_every_documented_field_has_a_description():
    missing = [
        f"{model.__name__}.{name}"
        for model in documented_models()
        for name, field in own_fields(model).items()
        if name != "kind" and not (field.description or "").strip()
    ]
    assert missing == []


def test_every_pattern_kind_has_exactly_one_decision_model():
    def kinds(union: object) -> list[str]:
        return sorted(m.model_fields["kind"].annotation.__args__[0] for m in get_args(get_args(union)[0]))

    assert kinds(PatternDecision) == kinds(PatternSpec)


def test_a_trace_is_version_2_and_older_shapes_are_refused():
    trace = Trace(pattern="p", kind="vote")
    assert json.loads(trace.model_dump_json())["schema_version"] == 2
    with pytest.raises(ValidationError):
        Trace.model_validate({"schema_version": 1, "pattern": "p", "kind": "vote"})


def test_the_decision_is_serialized_whole_and_read_back_typed():
    trace = Trace(pattern="v", kind="vote", decision=vote_decision())
    body = json.loads(trace.model_dump_json())
    assert body["decision"]["kind"] == "vote" and body["decision"]["tally"]["groups"][0]["members"][1]["role"] == "c"
    # From the HTTP body's JSON data, and from a Trace validated from that JSON: the same typed model.
    assert parse_decision(body["decision"]) == vote_decision()
    assert decision_of(Trace.model_validate(body)) == vote_decision()


def test_a_nested_decision_survives_the_round_trip():
    outer = AdaptiveDecision(label="hard", preferred="c", chosen="c", why="label 'hard'")
    outer.nest(ConsensusDecision(tally=vote_decision().tally, threshold=0.9, escalated=True, escalated_to="r"))
    trace = Trace(pattern="auto", kind="adaptive", decision=outer)
    back = decision_of(Trace.model_validate_json(trace.model_dump_json()))
    assert isinstance(back, AdaptiveDecision) and back.escalated
    inner = parse_decision(back.chosen_decision)
    assert isinstance(inner, ConsensusDecision) and inner.escalated_to == "r" and inner.tally.winner == "42"


def test_an_unknown_decision_kind_is_refused():
    with pytest.raises(ValidationError):
        parse_decision({"kind": "nope"})
    with pytest.raises(ValidationError):  # a pattern's model forbids fields it does not have
        parse_decision({**vote_decision().model_dump(), "agreement": 1.0})


def test_totals_come_from_the_typed_decision():
    trace = Trace(pattern="p", kind="pyramid", decision=PyramidDecision())
    trace.decision.stop(1, "budget")  # type: ignore[union-attr]
    trace.close(1.0)
    assert trace.totals.early_stop is True and trace.totals.escalated is False
    undecided = Trace(pattern="m", kind="model")
    undecided.close(1.0)
    assert undecided.totals.early_stop is False and undecided.totals.escalated is False


async def test_a_hosted_model_has_no_decision_and_a_pattern_always_has_one():
    chorus, _ = build({"generalist": lambda req: "hi"}, {"one": {"kind": "single", "role": "generalist"}})
    hosted = await chorus.chat(ask("?", "generalist"))
    assert hosted.trace.kind == "model" and hosted.trace.decision is None
    assert json.loads(hosted.model_dump_json())["trace"]["decision"] is None
    single = await chorus.chat(ask("?", "one"))
    body = json.loads(single.model_dump_json())
    assert body["trace"]["decision"]["kind"] == "single"
    assert decision_of(Reply.model_validate(body).trace) is not None
