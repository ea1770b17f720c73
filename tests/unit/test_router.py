"""Router logic over scripted engines: routing, confidence fallback, unknown and failed classifier."""

from __future__ import annotations

import math

import pytest

from cluster.errors import EngineError, UnknownModelError
from orchestrator.core.schema import ChatRequest
from orchestrator.patterns import RouterDecision
from orchestrator.patterns.router import label_confidence
from serving.types import Message, TokenLogprob
from tests.unit.fixtures import scripted_chorus
from tests.unit.pattern_kit import decision

ROUTER = {
    "kind": "router",
    "classifier": "classifier",
    "routes": {"code": {"role": "coder", "when": "programming"}, "math": {"role": "reasoner"}},
    "fallback": "generalist",
    "min_confidence": 0.6,
}


def ask(text: str, model: str = "router") -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content=text)])


def scripts(label: str | Exception):
    return {
        "classifier": lambda req: label,
        "coder": lambda req: "def f(): pass",
        "reasoner": lambda req: "42",
        "generalist": lambda req: "hello",
    }


async def test_routes_to_the_labels_role():
    chorus, engines = scripted_chorus(scripts("code"), {"router": ROUTER})
    reply = await chorus.chat(ask("write code"))
    assert reply.text == "def f(): pass"
    route = decision(reply, RouterDecision)
    assert route == RouterDecision(label="code", confidence=1.0, role="coder", fallback=None)
    assert [s.role for s in reply.trace.steps] == ["classifier", "coder"]
    # The classifier was constrained to the configured labels.
    constraint = engines["classifier"].calls[0].constraint
    assert constraint is not None and constraint.options == ["code", "math"]


async def test_low_confidence_falls_back():
    chorus, _ = scripted_chorus(scripts("math"), {"router": ROUTER}, confidence=0.55)
    reply = await chorus.chat(ask("what is 6*7"))
    assert reply.text == "hello"
    route = decision(reply, RouterDecision)
    assert route.role == "generalist" and route.label == "math"
    assert route.fallback == "low_confidence" and "below min_confidence" in route.why


async def test_confidence_at_threshold_routes():
    chorus, _ = scripted_chorus(scripts("math"), {"router": ROUTER}, confidence=0.6)
    reply = await chorus.chat(ask("what is 6*7"))
    assert decision(reply, RouterDecision).role == "reasoner"


async def test_failed_classifier_falls_back_and_is_traced():
    chorus, _ = scripted_chorus(scripts(EngineError("boom")), {"router": ROUTER})
    reply = await chorus.chat(ask("anything"))
    assert reply.text == "hello"
    route = decision(reply, RouterDecision)
    assert route.fallback == "classifier_failed" and route.why.startswith("classifier failed")
    assert reply.trace.steps[0].error is not None
    assert reply.trace.totals.failed_calls == 1 and reply.trace.totals.model_calls == 2


async def test_totals_add_up():
    chorus, _ = scripted_chorus(scripts("code"), {"router": ROUTER})
    reply = await chorus.chat(ask("write code"))
    t = reply.trace.totals
    assert t.prompt_tokens == sum(s.prompt_tokens for s in reply.trace.steps) == reply.usage.prompt_tokens
    assert t.completion_tokens == reply.usage.completion_tokens > 0


async def test_unknown_model_lists_what_exists():
    chorus, _ = scripted_chorus(scripts("code"), {"router": ROUTER})
    with pytest.raises(UnknownModelError) as info:
        await chorus.chat(ask("x", model="nope"))
    assert "router" in str(info.value) and "coder" in str(info.value)


async def test_hosted_model_is_addressable_directly():
    chorus, _ = scripted_chorus(scripts("code"), {"router": ROUTER})
    reply = await chorus.chat(ask("hi", model="reasoner"))
    assert reply.text == "42" and reply.trace.kind == "model"


def test_label_confidence_renormalises_over_label_first_tokens():
    lp = [TokenLogprob(token="co", logprob=math.log(0.3), top={"co": math.log(0.3), "ma": math.log(0.1), "x": math.log(0.6)})]
    assert label_confidence(lp, "code", ["code", "math"]) == pytest.approx(0.75)
    assert label_confidence(lp, "math", ["code", "math"]) == pytest.approx(0.25)
    assert label_confidence(None, "code", ["code"]) == 1.0
