"""Fixes 2-7 of the voting logic, on real models' recorded answers (../shared/quality)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from cluster.errors import EngineError
from orchestrator.eval.data import load_items
from orchestrator.patterns import ConsensusDecision, VoteDecision
from orchestrator.patterns.kit.extract import extract_choice
from orchestrator.patterns.kit.members import MemberRef
from orchestrator.patterns.kit.prompts import ANSWER_FORMAT_CHOICE, ANSWER_FORMAT_NUMERIC
from orchestrator.patterns.kit.tally import tally_keys
from tests.unit.pattern_kit import ask, build, decision
from tests.unit.quality_data import GSM8K, MMLU_PRO, needs_quality
from tests.unit.recorded_kit import evaluator

GSM_ROLES = {"mini": "gpt-4o-mini", "turbo": "gpt-3.5-turbo-0613", "mixtral": "Mixtral-8x7B-Instruct", "strong": "gpt-4-1106-preview"}
MMLU_ROLES = {"llama70": "Meta-Llama-3_1-70B-Instruct", "flash": "gemini-1.5-flash-002", "pro": "gemini-1.5-pro-002"}
MMLU_N = 800  # enough items for stable rates, few enough for a quick test


def consensus(**fields: object) -> dict[str, object]:
    return {"kind": "consensus", "members": ["mini", "turbo", "mixtral"], "extract": "numeric", "escalate_to": "strong", **fields}


def escalation_rate(run) -> float:
    return sum(o.escalated for o in run.outcomes) / len(run.outcomes)


@needs_quality
async def test_fix2_choice_voting_reads_reasoned_answers_where_exact_text_ties():
    items = load_items(MMLU_PRO, MMLU_N)
    members = ["llama70", "flash", "pro"]
    ev = await evaluator(
        MMLU_PRO,
        MMLU_ROLES,
        {"exact": {"kind": "vote", "members": members, "extract": "exact"},
         "choice": {"kind": "vote", "members": members, "extract": "choice"}},
    )
    exact, choice = await ev.run(["exact", "choice"], items, "choice")
    assert exact.error is None and choice.error is None  # no constraint was sent: recorded engines refuse those
    ties = {}
    for name in ("exact", "choice"):
        replies = [await ev.chorus.chat(ask(i.prompt(), name)) for i in items[:200]]
        ties[name] = sum(decision(r, VoteDecision).tally.tie for r in replies) / len(replies)
    assert ties["exact"] > 0.85  # free-text answers never match word for word
    assert ties["choice"] < 0.35
    assert choice.accuracy() > exact.accuracy() + 0.03


async def test_fix2_members_are_asked_to_reason_then_state_the_letter():
    chorus, engines = build(
        {r: (lambda req: "Because ... The answer is (B).") for r in ("a", "b")},
        {"v": {"kind": "vote", "members": ["a", "b"], "extract": "choice"}},
    )
    reply = await chorus.chat(ask("Which? (A) x (B) y", "v"))
    call = engines["a"].calls[0]
    assert call.constraint is None
    assert call.messages[0].role == "system" and ANSWER_FORMAT_CHOICE in call.messages[0].content
    tally = decision(reply, VoteDecision).tally
    assert tally.winner == "B" and tally.basis == "choice"


@needs_quality
async def test_fix3_thresholds_mean_what_they_say():
    items = load_items(GSM8K)
    patterns = {
        "t50": consensus(threshold=0.5), "t60": consensus(threshold=0.6), "t67": consensus(threshold=0.67),
        "t80": consensus(threshold=0.8), "t100": consensus(threshold=1.0), "two": consensus(min_votes=2),
    }
    ev = await evaluator(GSM8K, GSM_ROLES, patterns)
    runs = {r.name: r for r in await ev.run(list(patterns), items, "numeric")}
    rate = {name: escalation_rate(run) for name, run in runs.items()}
    # With 3 members agreement is 1/3, 2/3 or 1: 0.5, 0.6 and 0.67 all accept 2 of 3 ...
    assert rate["t50"] == rate["t60"] == rate["t67"] == rate["two"]
    # ... and only 0.8 and 1.0 ask for unanimity, which escalates far more often.
    assert rate["t80"] == rate["t100"] > rate["t67"] + 0.2
    assert rate["t67"] < 0.25


@needs_quality
async def test_fix4_ties_go_to_the_tie_breaker_and_the_trace_says_so():
    items = load_items(MMLU_PRO, MMLU_N)
    members = ["llama70", "flash", "pro"]  # the strongest listed last: member order would favour llama70
    ev = await evaluator(
        MMLU_PRO,
        MMLU_ROLES,
        {"order": {"kind": "vote", "members": members, "extract": "choice"},
         "strongest": {"kind": "vote", "members": members, "extract": "choice", "tie_breaker": "pro"},
         "weighted": {"kind": "vote", "members": members, "extract": "choice",
                      "weights": {"pro": 1.0, "flash": 0.9, "llama70": 0.8}}},
    )
    tied, right = Counter(), Counter()
    for item in items:
        for name in ("order", "strongest", "weighted"):
            reply = await ev.chorus.chat(ask(item.prompt(), name))
            vote = decision(reply, VoteDecision).tally
            if name == "strongest" and vote.tie:
                top = vote.groups[0].weight
                pro = MemberRef(index=2, role="pro")
                if any(pro in g.members for g in vote.groups if g.weight == top):
                    assert vote.tie_break == "strongest member" and vote.tie_member == pro
                    assert vote.winner_member == 2
                tied["strongest"] += 1
                right["strongest"] += extract_choice(reply.text) == item.gold
                order = await ev.chorus.chat(ask(item.prompt(), "order"))
                right["order"] += extract_choice(order.text) == item.gold
                assert decision(order, VoteDecision).tally.tie_break == "member order"
            if name == "weighted" and vote.tie:
                tied["weighted"] += 1
    assert tied["strongest"] > 0.05 * len(items)  # even the three strongest split three ways on 7 %
    assert tied["weighted"] == 0  # distinct weights, no two summing to a third: ties cannot happen
    assert right["strongest"] > right["order"]  # the strongest model wins more of its ties


def _texts_with(role_texts: dict[str, object]):
    return {r: (lambda req, t=t: t) for r, t in role_texts.items()}


async def test_fix5_escalated_answers_keep_the_members_format():
    chorus, engines = build(
        _texts_with({"a": "x = 3\n#### 3", "b": "#### 4", "c": "#### 5", "strong": "so 6\n#### 6"}),
        {"esc": {"kind": "consensus", "members": ["a", "b", "c"], "extract": "numeric", "escalate_to": "strong"}},
    )
    reply = await chorus.chat(ask("How many?", "esc"))
    escalation = engines["strong"].calls[0]
    assert ANSWER_FORMAT_NUMERIC in escalation.messages[0].content  # same instruction as the members
    assert reply.text.endswith("#### 6")
    labels = {"kind": "consensus", "members": ["a", "b"], "extract": "label", "labels": ["yes", "no"], "escalate_to": "strong"}
    chorus, engines = build(_texts_with({"a": "yes", "b": "no", "strong": "no"}), {"l": labels})
    await chorus.chat(ask("Is it?", "l"))
    assert engines["strong"].calls[0].constraint is not None  # the label constraint holds for escalation too


@needs_quality
async def test_fix6_semantic_voting_votes_on_stated_values_of_maths_answers():
    """An embedder that rates maths answers alike (as MiniLM does, ~0.97) no longer merges them."""

    class AllAlike:
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            return [[1.0, 0.0] for _ in texts]

    items = load_items(GSM8K)
    members = ["mini", "turbo", "mixtral"]
    patterns = {"numeric": {"kind": "vote", "members": members, "extract": "numeric"},
                "semantic": {"kind": "vote", "members": members, "extract": "semantic"}}
    ev = await evaluator(GSM8K, GSM_ROLES, patterns)
    ev = type(ev)(ev.config, ev.chorus.fleet, AllAlike())
    numeric, semantic = await ev.run(["numeric", "semantic"], items, "numeric")
    assert abs(semantic.accuracy() - numeric.accuracy()) <= 0.02
    # Clustering by that embedder alone would put every answer in one cluster: the first member wins.
    first_member_alone = (await ev.run(["gpt-4o-mini"], items, "numeric"))[0]
    assert numeric.accuracy() != first_member_alone.accuracy() or numeric.accuracy() > 0.9


async def test_fix7_consensus_escalates_when_every_member_fails():
    chorus, engines = build(
        _texts_with({"a": EngineError("down"), "b": EngineError("down"), "strong": "#### 8"}),
        {"c": {"kind": "consensus", "members": ["a", "b"], "extract": "numeric", "escalate_to": "strong"}},
    )
    reply = await chorus.chat(ask("How many?", "c"))
    assert reply.text == "#### 8"
    d = decision(reply, ConsensusDecision)
    assert d.escalated and d.escalated_to == "strong" and d.tally is None and "no member answered" in d.why
    assert [f.role for f in d.failed_members] == ["a", "b"]
    assert ANSWER_FORMAT_NUMERIC in engines["strong"].calls[0].messages[0].content


def test_ties_rank_by_strength_then_member_order():
    assert tally_keys(["a", "b"], [1, 1]).key == "a"
    t = tally_keys(["a", "b"], [1, 1], strength=[1, 0])
    assert t.key == "b" and t.tie and (t.tie_break, t.tie_member) == ("strongest member", 1)
    t = tally_keys(["a", "b", "b", "a"], [1, 1, 1, 1], strength=[3, 2, 0, 1])
    assert t.key == "b" and t.winner == 2  # the strongest member of the winning group represents it
