"""supervisor_worker: structured assignment, parallel workers, bounded review rounds, fallbacks."""

from __future__ import annotations

import json

import pytest

from cluster.errors import EngineError, PatternFailed
from orchestrator.patterns import SupervisorWorkerDecision
from serving.types import JsonSchema
from tests.unit.pattern_kit import InFlight, ask, build, decision, last

ASSIGN = json.dumps({"assignments": [{"worker": "researcher", "task": "facts"}, {"worker": "coder", "task": "code"}]})
ACCEPT = json.dumps({"verdict": "accept", "feedback": []})


def revise(*tasks):
    return json.dumps({"verdict": "revise", "feedback": [{"task": t, "note": f"fix {t}"} for t in tasks]})


def supervisor(*reviews, assign=ASSIGN):
    """Assigns, then gives the reviews in turn, then writes an answer echoing what it saw."""
    queue = list(reviews)

    def script(req):
        if req.messages[0].content.startswith("You supervise a team of workers"):
            return assign
        if req.constraint is not None:
            return queue.pop(0)
        return "WRITTEN\n" + last(req)

    return script


def worker(tag):
    """Answers '<tag>:<task>', '<tag>:<task>+<feedback>' on a redo."""

    def script(req):
        text = last(req)
        task = text.split("Your task:\n")[1].split("\n")[0]
        if "Supervisor's feedback:\n" in text:
            return f"{tag}:{task}+" + text.split("Supervisor's feedback:\n")[1].split("\n")[0]
        return f"{tag}:{task}"

    return script


def setup(*reviews, max_rounds=3, assign=ASSIGN, coder=None, probe=None):
    spec = {
        "sw": {
            "kind": "supervisor_worker",
            "supervisor": "planner",
            "workers": {"researcher": {"role": "generalist", "about": "finds facts"}, "coder": {"role": "coder"}},
            "max_rounds": max_rounds,
        }
    }
    scripts = {"planner": supervisor(*reviews, assign=assign), "generalist": worker("G"), "coder": coder or worker("C")}
    return build(scripts, spec, probe=probe, delay_s=0.05 if probe else 0.0)


async def test_assign_work_in_parallel_accept_and_write():
    probe = InFlight()
    chorus, engines = setup(ACCEPT, probe=probe)
    reply = await chorus.chat(ask("do it", "sw"))
    assert probe.peak == 2
    assert reply.trace.steps[0].name == "assign"
    assert sorted(s.name for s in reply.trace.steps[1:3]) == ["round1:coder[2]", "round1:researcher[1]"]
    assert [s.name for s in reply.trace.steps][3:] == ["review1", "write"]
    assert "researcher (task: facts):\nG:facts" in reply.text and "coder (task: code):\nC:code" in reply.text
    d = decision(reply, SupervisorWorkerDecision)
    assert [(r.round, r.verdict, r.outcome) for r in d.reviews] == [(1, "accept", "accepted")]
    assert d.rounds == 1
    schema = engines["planner"].calls[0].constraint
    assert isinstance(schema, JsonSchema)
    assert schema.json_schema["properties"]["assignments"]["items"]["properties"]["worker"]["enum"] == [
        "researcher",
        "coder",
    ]
    assert "- researcher: finds facts" in engines["planner"].calls[0].messages[0].content


async def test_revise_redoes_only_the_named_tasks_with_feedback():
    chorus, engines = setup(revise(2), ACCEPT)
    reply = await chorus.chat(ask("do it", "sw"))
    assert "C:code+fix 2" in reply.text and "G:facts" in reply.text
    assert len(engines["generalist"].calls) == 1 and len(engines["coder"].calls) == 2
    redo = last(engines["coder"].calls[1])
    assert "Your previous result:\nC:code" in redo
    assert [(r.round, r.verdict, r.revise, r.outcome) for r in decision(reply, SupervisorWorkerDecision).reviews] == [
        (1, "revise", [2], "revising"),
        (2, "accept", [], "accepted"),
    ]


async def test_rounds_are_bounded_and_the_last_round_is_not_reviewed():
    chorus, _ = setup(revise(1, 2), revise(1, 2), revise(1, 2), max_rounds=2)
    reply = await chorus.chat(ask("do it", "sw"))
    assert decision(reply, SupervisorWorkerDecision).rounds == 2
    reviews = [s for s in reply.trace.steps if s.name.startswith("review")]
    assert len(reviews) == 1 and reply.text.startswith("WRITTEN")
    assert reply.trace.totals.model_calls == 1 + 2 + 1 + 2 + 1


async def test_an_unusable_assignment_gives_every_worker_the_request():
    chorus, _ = setup(ACCEPT, assign='{"assignments": [')
    reply = await chorus.chat(ask("the request", "sw"))
    d = decision(reply, SupervisorWorkerDecision)
    assert d.unusable_assignment == '{"assignments": ['
    assert [(a.worker, a.task) for a in d.assignments] == [("researcher", "the request"), ("coder", "the request")]


async def test_an_unusable_review_accepts_what_there_is():
    chorus, _ = setup("not json")
    reply = await chorus.chat(ask("x", "sw"))
    reviews = decision(reply, SupervisorWorkerDecision).reviews
    assert [(r.round, r.verdict, r.outcome) for r in reviews] == [(1, None, "review_unusable")]


async def test_a_failed_worker_is_retried_next_round_and_reported():
    calls = {"n": 0}

    def flaky(req):
        calls["n"] += 1
        return EngineError("flaky") if calls["n"] == 1 else "C:ok"

    chorus, _ = setup(revise(), ACCEPT, coder=flaky)
    reply = await chorus.chat(ask("x", "sw"))
    d = decision(reply, SupervisorWorkerDecision)
    assert (d.failed_members[0].step, d.failed_members[0].role) == ("round1:coder[2]", "coder")
    assert (d.reviews[0].round, d.reviews[0].verdict, d.reviews[0].revise) == (1, "revise", [2])
    assert "C:ok" in reply.text


async def test_every_task_failing_is_an_error():
    chorus, _ = build(
        {"planner": supervisor(ACCEPT), "generalist": lambda r: EngineError("x"), "coder": lambda r: EngineError("y")},
        {
            "sw": {
                "kind": "supervisor_worker",
                "supervisor": "planner",
                "max_rounds": 1,
                "workers": {"researcher": {"role": "generalist"}, "coder": {"role": "coder"}},
            }
        },
    )
    with pytest.raises(PatternFailed, match="every worker's task failed"):
        await chorus.chat(ask("x", "sw"))


async def test_revisions_the_budget_cannot_pay_for_are_skipped():
    from orchestrator.core.budget import Budget
    from orchestrator.core.schema import ChatRequest
    from serving.types import Message

    chorus, _ = setup(revise(1, 2))
    # assign + 2 workers + review = 4; redoing both and writing would need 3 more.
    req = ChatRequest(model="sw", messages=[Message(role="user", content="x")], budget=Budget(max_model_calls=6))
    reply = await chorus.chat(req)
    assert [(r.round, r.verdict, r.revise, r.outcome) for r in decision(reply, SupervisorWorkerDecision).reviews] == [
        (1, "revise", [1, 2], "no_budget_for_revision")
    ]
    assert reply.trace.totals.model_calls == 5 and reply.text.startswith("WRITTEN")
