"""best_of_n: the judge's highest score wins, ties to the earliest, judge failures, concurrency."""

from __future__ import annotations

from cluster.errors import EngineError
from orchestrator.patterns import BestOfNDecision
from orchestrator.patterns.kit.judging import SCORE, parse_score
from tests.unit.pattern_kit import InFlight, ask, build, decision, last

MEMBERS = ["generalist", "coder", "reasoner"]


def judge_by(scores):
    """A judge that scores each candidate by a keyword in it ('fail' raises)."""

    def judge(req):
        text = last(req)
        for key, score in scores.items():
            if f"Answer to rate:\n{key}" in text:
                return score if isinstance(score, Exception) else str(score)
        return "1"

    return judge


def setup(scores, probe=None, delay_s=0.0):
    scripts = {role: (lambda req, r=role: f"ans-{r}") for role in MEMBERS}
    scripts["judge"] = judge_by(scores)
    spec = {"best_of_n": {"kind": "best_of_n", "members": MEMBERS, "judge": "judge"}}
    return build(scripts, spec, probe=probe, delay_s=delay_s)


async def test_the_highest_score_wins():
    chorus, engines = setup({"ans-generalist": 4, "ans-coder": 9, "ans-reasoner": 7})
    reply = await chorus.chat(ask("?", "best_of_n"))
    assert reply.text == "ans-coder"
    d = decision(reply, BestOfNDecision)
    assert [s.score for s in d.scores] == [4, 9, 7]
    assert (d.best, d.judged) == (1, True)
    assert all(c.constraint == SCORE for c in engines["judge"].calls)


async def test_a_tie_goes_to_the_earliest_member():
    chorus, _ = setup({"ans-generalist": 5, "ans-coder": 8, "ans-reasoner": 8})
    reply = await chorus.chat(ask("?", "best_of_n"))
    assert reply.text == "ans-coder"


async def test_a_failed_judgement_leaves_that_answer_unscored():
    chorus, _ = setup({"ans-generalist": 6, "ans-coder": EngineError("judge down"), "ans-reasoner": 2})
    reply = await chorus.chat(ask("?", "best_of_n"))
    assert reply.text == "ans-generalist"
    assert [s.score for s in decision(reply, BestOfNDecision).scores] == [6, None, 2]


async def test_no_judgement_at_all_returns_the_first_answer_unjudged():
    boom = EngineError("x")
    chorus, _ = setup({"ans-generalist": boom, "ans-coder": boom, "ans-reasoner": boom})
    reply = await chorus.chat(ask("?", "best_of_n"))
    assert reply.text == "ans-generalist" and decision(reply, BestOfNDecision).judged is False


async def test_answers_and_judgements_each_run_concurrently():
    probe = InFlight()
    chorus, _ = setup({"ans-coder": 9}, probe=probe, delay_s=0.05)
    reply = await chorus.chat(ask("?", "best_of_n"))
    assert probe.peak == 3
    # All three answers finished before the first judgement started (the layers are ordered).
    names = [s.name for s in reply.trace.steps]
    assert names[:3] == ["member[0]", "member[1]", "member[2]"] and sorted(names[3:]) == [
        "judge[0]",
        "judge[1]",
        "judge[2]",
    ]


async def test_judge_prompts_share_the_question_prefix():
    chorus, engines = setup({})
    await chorus.chat(ask("the question", "best_of_n"))
    prompts = [last(c) for c in engines["judge"].calls]
    prefix = "Question:\nthe question\n\nAnswer to rate:\n"
    assert all(p.startswith(prefix) for p in prompts)
    assert len({c.messages[0].content for c in engines["judge"].calls}) == 1


def test_parse_score():
    assert parse_score("10") == 10 and parse_score(" 7 ") == 7
    assert parse_score("0") is None and parse_score("eleven") is None and parse_score("11") is None
