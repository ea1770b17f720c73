"""pyramid: layers see the previous layer as references, early stop on agreement, budget, failures."""

from __future__ import annotations

import pytest

from cluster.errors import ConfigError, EngineError, PatternFailed
from orchestrator.core.budget import Budget
from orchestrator.core.schema import ChatRequest
from orchestrator.patterns import PyramidDecision
from orchestrator.service.config import parse_config
from serving.types import Message
from tests.unit.pattern_kit import InFlight, TopicEmbedder, ask, build, decision, last

LAYERS = [["generalist", "coder", "reasoner"], ["judge", "planner"], ["synthesizer"]]


def setup(first, second=("sky", "sky"), probe=None, **fields):
    """Layer 1 answers `first`, layer 2 `second`, the aggregator 'final'."""
    roles = ["generalist", "coder", "reasoner", "judge", "planner"]
    texts = [*first, *second]
    scripts = {r: (lambda req, t=t: t) for r, t in zip(roles, texts, strict=True)}
    scripts["synthesizer"] = lambda req: "final"
    spec = {"kind": "pyramid", "layers": LAYERS, "early_stop": 0.9, **fields}
    return build(
        scripts,
        {"pyramid": spec},
        embedder=TopicEmbedder(["sky", "sea", "sand"]),
        probe=probe,
        delay_s=0.05 if probe else 0.0,
    )


async def test_layers_run_in_parallel_and_the_last_aggregates():
    probe = InFlight()
    chorus, engines = setup(["sky", "sea", "sand"], second=("sky", "sea"), probe=probe)
    reply = await chorus.chat(ask("the question", "pyramid"))
    assert reply.text == "final"
    assert probe.peak == 3
    assert [s.name for s in reply.trace.steps] == [
        "layer1[0]",
        "layer1[1]",
        "layer1[2]",
        "layer2[0]",
        "layer2[1]",
        "layer3[0]",
    ]
    d = decision(reply, PyramidDecision)
    assert d.early_stop is False and reply.trace.totals.early_stop is False
    assert [h.layer for h in d.layers] == [1, 2, 3]
    # Layer 2 sees layer 1's answers as numbered references after the question.
    prompt = last(engines["judge"].calls[0])
    assert prompt.startswith("References:")
    assert "[reference 1]\nsky" in prompt and "[reference 3]\nsand" in prompt
    # Every layer opens with layer 1's prompt byte for byte, so the engine's prefix cache serves it.
    first = engines["generalist"].calls[0].messages
    for role in ("judge", "synthesizer"):
        assert engines[role].calls[0].messages[: len(first)] == first
    # The aggregator sees layer 2's answers, not layer 1's.
    final_prompt = last(engines["synthesizer"].calls[0])
    assert "[reference 2]\nsea" in final_prompt and "sand" not in final_prompt


async def test_every_member_of_a_layer_gets_the_same_prompt():
    chorus, engines = setup(["sky", "sea", "sand"], second=("sky", "sea"))
    await chorus.chat(ask("q", "pyramid"))
    assert engines["judge"].calls[0].messages == engines["planner"].calls[0].messages


async def test_agreement_at_the_threshold_stops_early():
    chorus, engines = setup(["sky blue", "sky", "sky!"], early_stop=1.0)
    reply = await chorus.chat(ask("?", "pyramid"))
    assert reply.text in {"sky blue", "sky", "sky!"}
    d = decision(reply, PyramidDecision)
    assert (d.early_stop, d.stopped_after_layer, d.stop_reason, d.agreement) == (True, 1, "agreement", 1.0)
    assert reply.trace.totals.early_stop is True
    assert reply.trace.totals.model_calls == 3 and engines["synthesizer"].calls == []


async def test_agreement_below_the_threshold_goes_on():
    chorus, _ = setup(["sky", "sky", "sea"], early_stop=0.7)  # 0.67 < 0.7
    reply = await chorus.chat(ask("?", "pyramid"))
    d = decision(reply, PyramidDecision)
    assert d.layers[0].agreement == pytest.approx(2 / 3, abs=1e-4)
    assert (d.stopped_after_layer, d.stop_reason, d.agreement) == (2, "agreement", 1.0)  # layer 2 agrees


async def test_early_stop_can_be_turned_off():
    chorus, _ = setup(["sky", "sky", "sky"], early_stop=None)
    reply = await chorus.chat(ask("?", "pyramid"))
    assert reply.text == "final" and reply.trace.totals.model_calls == 6


async def test_budget_ends_the_pyramid_with_the_layer_so_far():
    chorus, engines = setup(["sky", "sea", "sea"])
    req = ChatRequest(model="pyramid", messages=[Message(role="user", content="?")], budget=Budget(max_model_calls=5))
    reply = await chorus.chat(req)
    assert reply.text == "sea"  # layer 1's representative: layer 2 + the aggregator would need 3 more calls
    d = decision(reply, PyramidDecision)
    assert (d.early_stop, d.stopped_after_layer, d.stop_reason) == (True, 1, "budget")
    assert engines["synthesizer"].calls == []


async def test_a_failed_member_is_left_out_of_the_references():
    chorus, engines = setup(["sky", EngineError("down"), "sand"], second=("sky", "sea"))
    reply = await chorus.chat(ask("?", "pyramid"))
    assert reply.text == "final"
    prompt = last(engines["judge"].calls[0])
    assert "[reference 2]\nsand" in prompt and "[reference 3]" not in prompt
    assert decision(reply, PyramidDecision).failed_members[0].step == "layer1[1]"


async def test_a_layer_that_fails_entirely_ends_the_request():
    boom = EngineError("x")
    chorus, _ = setup(["sky", "sea", "sand"], second=(boom, boom))
    with pytest.raises(PatternFailed, match="pyramid layer 2"):
        await chorus.chat(ask("?", "pyramid"))


def test_the_last_layer_must_be_one_aggregator():
    data = {
        "models": [{"name": "m", "source": "x"}],
        "roles": {"a": "m", "b": "m"},
        "patterns": {"p": {"kind": "pyramid", "layers": [["a", "b"], ["a", "b"]]}},
    }
    with pytest.raises(ConfigError, match=r"patterns\.p: the last layer aggregates and must have exactly one role"):
        parse_config(data, "c.yaml")


async def test_label_pyramids_constrain_every_layer_and_numeric_ones_ask_the_format_throughout():
    from serving.types import Choice

    roles = ["generalist", "coder", "reasoner", "judge", "planner", "synthesizer"]
    chorus, engines = build(
        {r: (lambda req: "yes") for r in roles},
        {"p": {"kind": "pyramid", "layers": LAYERS, "extract": "label", "labels": ["yes", "no"], "early_stop": None}},
    )
    reply = await chorus.chat(ask("?", "p"))
    assert reply.text == "yes" and reply.trace.totals.model_calls == 6
    assert all(e.calls[0].constraint == Choice(options=["yes", "no"]) for e in engines.values())
    scripts = {r: (lambda req: "#### 3") for r in roles}
    chorus, engines = build(
        scripts, {"p": {"kind": "pyramid", "layers": LAYERS, "extract": "numeric", "early_stop": None}}
    )
    await chorus.chat(ask("?", "p"))
    for role in ["generalist", "judge", "synthesizer"]:
        assert "####" in engines[role].calls[0].messages[0].content


async def test_a_failed_aggregator_leaves_the_layer_belows_answer():
    roles = ["generalist", "coder", "reasoner", "judge", "planner"]
    scripts = {r: (lambda req, r=r: "sea" if r == "planner" else "sky") for r in roles}
    scripts["synthesizer"] = lambda req: EngineError("agg down")
    chorus, _ = build(
        scripts,
        {"p": {"kind": "pyramid", "layers": LAYERS, "early_stop": None}},
        embedder=TopicEmbedder(["sky", "sea"]),
    )
    reply = await chorus.chat(ask("?", "p"))
    assert reply.text == "sky"  # layer 2's representative (judge said sky, planner sea: tie to the earliest)
    d = decision(reply, PyramidDecision)
    assert d.failed_members[0].step == "layer3[0]"
    assert (d.layers[-1].layer, d.layers[-1].answered, d.layers[-1].agreement) == (3, 0, None)
