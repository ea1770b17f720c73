"""fanout: every member's answer side by side, failures shown in place, concurrency."""

from __future__ import annotations

import pytest

from cluster.errors import EngineError, PatternFailed
from orchestrator.patterns import FanoutDecision
from tests.unit.pattern_kit import InFlight, ask, build, decision

SPEC = {"fanout": {"kind": "fanout", "members": ["generalist", "coder", "reasoner"]}}


async def test_all_answers_come_back_in_member_order():
    probe = InFlight()
    chorus, _ = build(
        {"generalist": lambda r: "alpha", "coder": lambda r: "beta", "reasoner": lambda r: "gamma"},
        SPEC,
        delay_s=0.05,
        probe=probe,
    )
    reply = await chorus.chat(ask("?", "fanout"))
    assert (
        reply.text.index("1. generalist\nalpha")
        < reply.text.index("2. coder\nbeta")
        < reply.text.index("3. reasoner\ngamma")
    )
    assert probe.peak == 3
    assert reply.trace.totals.model_calls == 3 and decision(reply, FanoutDecision).answered == 3


async def test_a_failed_member_is_shown_as_failed():
    chorus, _ = build(
        {"generalist": lambda r: "alpha", "coder": lambda r: EngineError("no"), "reasoner": lambda r: "gamma"}, SPEC
    )
    reply = await chorus.chat(ask("?", "fanout"))
    assert "2. coder\n(no answer: this member failed)" in reply.text
    d = decision(reply, FanoutDecision)
    assert (d.answered, d.asked) == (2, 3)
    assert d.failed_members[0].step == "member[1]"


async def test_all_failing_is_an_error():
    chorus, _ = build({r: (lambda req: EngineError("no")) for r in ["generalist", "coder", "reasoner"]}, SPEC)
    with pytest.raises(PatternFailed):
        await chorus.chat(ask("?", "fanout"))
