"""planner_executor: plan under a closed schema, dependency-ordered parallel steps, one repair."""

from __future__ import annotations

import json

import pytest

from cluster.errors import EngineError, PatternFailed
from orchestrator.patterns import PlannerExecutorDecision
from orchestrator.patterns.kit.task_graph import Plan, PlanError, order, parse_plan, plan_schema
from serving.types import JsonSchema
from tests.unit.pattern_kit import InFlight, ask, build, decision, last

SPEC = {
    "pe": {
        "kind": "planner_executor",
        "planner": "planner",
        "executors": {"research": "generalist", "code": "coder"},
        "max_steps": 4,
    }
}


def plan(*steps):
    return json.dumps({"steps": [{"type": t, "instruction": i, "after": a} for t, i, a in steps]})


GOOD = plan(("research", "find A", []), ("code", "write B", []), ("research", "combine", [1, 2]))


def planner(*plans):
    """Answers plans in turn, then the synthesis (which echoes the numbered results it got)."""
    queue = list(plans)

    def script(req):
        if req.constraint is not None:
            return queue.pop(0)
        return "ANSWER\n" + last(req)

    return script


def setup(*plans, generalist=None, coder=None, probe=None):
    scripts = {
        "planner": planner(*plans),
        "generalist": generalist or (lambda req: "R:" + last(req).split("Your step:\n")[1].split("\n")[0]),
        "coder": coder or (lambda req: "C:" + last(req).split("Your step:\n")[1].split("\n")[0]),
    }
    return build(scripts, SPEC, probe=probe, delay_s=0.05 if probe else 0.0)


async def test_independent_steps_run_together_and_dependents_see_their_results():
    probe = InFlight()
    chorus, engines = setup(GOOD, probe=probe)
    reply = await chorus.chat(ask("build it", "pe"))
    assert probe.peak == 2  # steps 1 and 2 together; step 3 after both
    names = [s.name for s in reply.trace.steps]
    assert names[0] == "plan" and names[-1] == "synthesize"
    assert sorted(names[1:3]) == ["step[1]:research", "step[2]:code"] and names[3] == "step[3]:research"
    step3 = last(engines["generalist"].calls[-1])
    assert "[result 1]\nR:find A" in step3 and "[result 2]\nC:write B" in step3
    assert "step 3 (research): combine\nR:combine" in reply.text
    d = decision(reply, PlannerExecutorDecision)
    assert d.plan_repaired is False
    assert [s.type for s in d.plan] == ["research", "code", "research"]
    # The planner was constrained by the closed plan schema.
    constraint = engines["planner"].calls[0].constraint
    assert isinstance(constraint, JsonSchema)
    assert constraint.json_schema["properties"]["steps"]["prefixItems"][0]["properties"]["type"]["enum"] == [
        "research",
        "code",
    ]


async def test_a_cyclic_plan_gets_one_repair():
    cyclic = plan(("research", "a", [2]), ("code", "b", [1]))
    chorus, engines = setup(cyclic, GOOD)
    reply = await chorus.chat(ask("x", "pe"))
    d = decision(reply, PlannerExecutorDecision)
    assert d.plan_repaired and "cycle" in (d.plan_problem or "")
    repair = engines["planner"].calls[1]
    assert repair.messages[-2].content == cyclic and "cycle" in last(repair)
    assert reply.trace.steps[1].name == "plan_repair" and reply.text.startswith("ANSWER")


async def test_a_second_bad_plan_is_a_clear_error():
    chorus, _ = setup('{"steps": [', plan(("poem", "x", [])))
    with pytest.raises(
        PatternFailed, match=r"invalid \(not valid JSON.*\) and so was its repair \(step 1 has type 'poem'"
    ):
        await chorus.chat(ask("x", "pe"))


async def test_a_failed_step_skips_its_dependents_and_the_planner_answers_from_the_rest():
    chorus, engines = setup(GOOD, coder=lambda req: EngineError("coder down"))
    reply = await chorus.chat(ask("x", "pe"))
    d = decision(reply, PlannerExecutorDecision)
    assert d.skipped_steps == [3]
    assert d.failed_members[0].step == "step[2]:code"
    assert "step 2 (code): write B\n(this step failed)" in reply.text
    assert len(engines["generalist"].calls) == 1  # step 3 never ran


async def test_every_step_failing_is_an_error():
    chorus, _ = setup(GOOD, generalist=lambda req: EngineError("down"), coder=lambda req: EngineError("down"))
    with pytest.raises(PatternFailed, match="every step of the 3-step plan failed or was skipped"):
        await chorus.chat(ask("x", "pe"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("nope", "not valid JSON"),
        ('{"steps": []}', "the plan has 0 steps"),
        (plan(("research", "a", [3])), "not other steps of the plan"),
        (plan(("research", "a", [1])), "not other steps of the plan"),
        (plan(("research", " ", [])), "empty instruction"),
        ('{"steps": [{"type": "research"}]}', "not a plan: steps.0.instruction"),
        (plan(*[("research", "a", [])] * 5), "the plan has 5 steps; it needs 1 to 4"),
    ],
)
def test_plan_problems_are_named(text, problem):
    with pytest.raises(PlanError, match=problem):
        parse_plan(text, ["research", "code"], 4)


def test_raw_control_characters_in_strings_are_accepted():
    # A grammar-constrained model may put a literal newline inside a JSON string.
    text = '{"steps": [{"type": "code", "instruction": "line one\nline two", "after": []}]}'
    assert parse_plan(text, ["code"], 2).steps[0].instruction == "line one\nline two"


def test_order_respects_dependencies_in_any_direction():
    p = Plan.model_validate(json.loads(plan(("research", "a", [2]), ("code", "b", []), ("code", "c", [1]))))
    assert order(p) == [2, 1, 3]


def test_plan_schema_is_closed_and_only_lets_steps_follow_earlier_ones():
    schema = plan_schema(["a"], 3, 50)
    steps = schema["properties"]["steps"]
    assert schema["additionalProperties"] is False and steps["items"] is False and steps["maxItems"] == 3
    first, second, third = steps["prefixItems"]
    assert all(s["additionalProperties"] is False for s in (first, second, third))
    assert first["properties"]["instruction"]["maxLength"] == 50
    assert first["properties"]["after"] == {"type": "array", "maxItems": 0}
    assert second["properties"]["after"]["items"]["maximum"] == 1
    assert third["properties"]["after"]["items"]["maximum"] == 2 and third["properties"]["after"]["maxItems"] == 2


def test_the_plan_grammar_admits_only_acyclic_plans():
    xgrammar = pytest.importorskip("xgrammar")
    accepts = getattr(xgrammar.testing, "_is_grammar_accept_string", None)
    if accepts is None:
        pytest.skip("this xgrammar has no string acceptance helper")
    # The engine compiles schemas without free whitespace, as vLLM's xgrammar backend does here.
    grammar = xgrammar.Grammar.from_json_schema(
        json.dumps(plan_schema(["research", "code"], 3, 20)), any_whitespace=False
    )

    def admitted(*steps):
        return accepts(grammar, json.dumps({"steps": [{"type": t, "instruction": i, "after": a} for t, i, a in steps]}))

    assert admitted(("research", "a", []), ("code", "b", [1]), ("code", "c", [1, 2]))
    assert not admitted(("research", "a", [1]))  # after itself
    assert not admitted(("research", "a", []), ("code", "b", [2]))  # after itself
    assert not admitted(("research", "a", [2]), ("code", "b", []))  # after a later step
    assert not admitted(*[("code", "b", [])] * 4)  # more than max_steps
    assert not admitted(("poem", "a", []))  # not a step type


async def test_running_out_of_budget_mid_plan_ends_the_request_without_hanging():
    from cluster.errors import BudgetExceeded
    from orchestrator.core.budget import Budget
    from orchestrator.core.schema import ChatRequest
    from serving.types import Message

    chorus, engines = setup(GOOD)
    req = ChatRequest(model="pe", messages=[Message(role="user", content="x")], budget=Budget(max_model_calls=2))
    with pytest.raises(BudgetExceeded):
        await chorus.chat(req)
    # Step 3 waits on steps 1 and 2; it was skipped rather than left waiting for a step that never ran.
    assert len(engines["generalist"].calls) + len(engines["coder"].calls) == 1


async def test_a_bad_plan_without_budget_for_a_repair_is_a_clear_error():
    from orchestrator.core.budget import Budget
    from orchestrator.core.schema import ChatRequest
    from serving.types import Message

    chorus, engines = setup("not json", GOOD)
    req = ChatRequest(model="pe", messages=[Message(role="user", content="x")], budget=Budget(max_model_calls=3))
    with pytest.raises(PatternFailed, match="no room to repair it"):
        await chorus.chat(req)
    assert len(engines["planner"].calls) == 1
