"""adaptive: label → pattern, budget-driven downgrade, classifier failure, and how it is built."""

from __future__ import annotations

import pytest

from cluster.errors import BudgetExceeded, ConfigError, EngineError
from orchestrator.core.budget import Budget
from orchestrator.core.schema import ChatRequest
from orchestrator.patterns import AdaptiveDecision, ConsensusDecision, CouncilDecision, SingleDecision, parse_decision
from orchestrator.patterns.kit.assembly import build_patterns
from serving.types import Choice, Message
from tests.unit.pattern_kit import build, decision

PATTERNS = {
    "quick": {"kind": "single", "role": "generalist"},
    "panel": {"kind": "fanout", "members": ["generalist", "reasoner", "coder"]},
    "deep": {"kind": "council", "members": ["generalist", "reasoner", "coder"], "combine": "vote", "extract": "exact"},
    "auto": {
        "kind": "adaptive",
        "classifier": "classifier",
        "routes": {"simple": {"pattern": "quick", "when": "short factual"}, "hard": {"pattern": "deep"}},
        "fallback": "quick",
    },
}


def setup(label, patterns=PATTERNS):
    scripts = {
        "classifier": lambda req: label,
        "generalist": lambda req: "g",
        "reasoner": lambda req: "r",
        "coder": lambda req: "r",
        "synthesizer": lambda req: "s",
    }
    return build(scripts, patterns)


def request(budget=None):
    return ChatRequest(model="auto", messages=[Message(role="user", content="q")], budget=budget)


async def test_a_simple_question_goes_to_the_cheap_pattern():
    chorus, engines = setup("simple")
    reply = await chorus.chat(request())
    assert reply.text == "g" and reply.trace.kind == "adaptive"
    d = decision(reply, AdaptiveDecision)
    assert (d.label, d.preferred, d.chosen, d.fallback, d.over_budget) == ("simple", "quick", "quick", None, False)
    assert d.why == "label 'simple'"
    assert parse_decision(d.chosen_decision) == SingleDecision()  # the chosen pattern's own decision, nested
    assert engines["classifier"].calls[0].constraint == Choice(options=["simple", "hard"])
    assert "- simple: short factual" in engines["classifier"].calls[0].messages[0].content


async def test_a_hard_question_runs_the_council_in_the_same_trace():
    chorus, _ = setup("hard")
    reply = await chorus.chat(request())
    assert reply.text.startswith("r\n\nCouncil agreement: 2 of 3")
    assert [s.name for s in reply.trace.steps] == ["classify", "member[0]", "member[1]", "member[2]"]
    d = decision(reply, AdaptiveDecision)
    assert d.chosen == "deep" and isinstance(parse_decision(d.chosen_decision), CouncilDecision)


async def test_the_chosen_patterns_escalation_shows_in_the_totals():
    strict = {
        "kind": "consensus",
        "members": ["generalist", "reasoner", "coder"],
        "extract": "exact",
        "threshold": 0.9,
        "escalate_to": "synthesizer",
    }
    patterns = {**PATTERNS, "strict": strict}
    patterns["auto"] = {**PATTERNS["auto"], "routes": {"hard": {"pattern": "strict"}}}
    chorus, _ = setup("hard", patterns)
    reply = await chorus.chat(request())
    assert reply.text == "s"  # members agree 2 of 3, below 0.9: the synthesizer answers
    d = decision(reply, AdaptiveDecision)
    inner = parse_decision(d.chosen_decision)
    assert isinstance(inner, ConsensusDecision) and inner.escalated_to == "synthesizer"
    assert d.escalated and reply.trace.totals.escalated and not reply.trace.totals.early_stop


async def test_an_over_budget_choice_takes_the_most_thorough_that_fits():
    patterns = {
        **PATTERNS,
        "auto": {**PATTERNS["auto"], "routes": {**PATTERNS["auto"]["routes"], "panel": {"pattern": "panel"}}},
    }
    patterns["deep"] = {
        **PATTERNS["deep"],
        "combine": "merge",
        "members": ["generalist", "reasoner", "coder", "generalist"],
    }
    scripts_budget = Budget(max_model_calls=4)  # classify + 3: deep (5 calls) is too much, panel (3) fits
    chorus, _ = setup("hard", patterns)
    reply = await chorus.chat(request(scripts_budget))
    d = decision(reply, AdaptiveDecision)
    assert d.preferred == "deep" and d.chosen == "panel" and d.over_budget
    assert "deep needs up to 5 calls, over budget (3 calls / None tokens left): took panel" in d.why
    assert reply.trace.totals.model_calls == 4


async def test_a_token_budget_counts_calls_at_the_sampling_limit():
    chorus, _ = setup("hard")
    # 3 council calls × 256 max_tokens > what is left; the single call fits.
    reply = await chorus.chat(request(Budget(max_tokens=400)))
    assert decision(reply, AdaptiveDecision).chosen == "quick"


async def test_nothing_affordable_is_a_budget_error():
    chorus, _ = setup("hard")
    with pytest.raises(BudgetExceeded, match="no configured pattern fits"):
        await chorus.chat(request(Budget(max_model_calls=1)))


async def test_a_failed_classifier_takes_the_fallback():
    chorus, _ = setup(EngineError("down"))
    reply = await chorus.chat(request())
    d = decision(reply, AdaptiveDecision)
    assert d.chosen == "quick" and d.fallback == "classifier_failed" and d.why.startswith("classifier failed")


def spec_map(patterns):
    from orchestrator.service.config import parse_config

    data = {
        "models": [{"name": "m", "source": "x"}],
        "roles": dict.fromkeys(["classifier", "generalist", "reasoner", "coder", "synthesizer"], "m"),
        "patterns": patterns,
    }
    return parse_config(data, "c.yaml").patterns


def test_naming_an_unknown_pattern_is_a_config_error():
    # The config loader checks the names already, before anything is built.
    with pytest.raises(ConfigError, match=r"patterns\.auto: names pattern 'nope', which is not under patterns:"):
        build_patterns(spec_map({**PATTERNS, "auto": {**PATTERNS["auto"], "fallback": "nope"}}))


def test_adaptive_cannot_name_another_adaptive():
    with pytest.raises(ConfigError, match="'auto', which itself runs other patterns"):
        build_patterns(spec_map({**PATTERNS, "auto2": {**PATTERNS["auto"], "fallback": "auto"}}))


def test_patterns_share_one_embedder():
    from tests.unit.pattern_kit import TopicEmbedder

    embedder = TopicEmbedder([])
    specs = spec_map(
        {
            "a": {"kind": "vote", "members": ["generalist", "coder"], "extract": "semantic"},
            "b": {"kind": "pyramid", "layers": [["generalist", "coder"], ["reasoner"]]},
            "c": {"kind": "vote", "members": ["generalist", "coder"]},
        }
    )
    built = build_patterns(specs, embedder)
    assert built["a"].embedder is embedder and built["b"].embedder is embedder
    assert built["c"].embedder is None  # exact voting needs none
