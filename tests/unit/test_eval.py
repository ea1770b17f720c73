"""`chorus eval`: statistics, the report, single-model accuracies, calibration on a held-out half."""

from __future__ import annotations

import json

import pytest

from orchestrator.cli.main import main
from orchestrator.eval.calibrate import calibrate, log_odds
from orchestrator.eval.data import Item, load_items, split
from orchestrator.eval.report import Summary, recommend, summarize
from orchestrator.eval.runner import Outcome, PatternRun
from orchestrator.eval.scorers import default_scorer, right
from orchestrator.eval.stats import Interval, bootstrap_accuracy, mcnemar_p, paired_difference
from orchestrator.patterns.kit.extract import extract_choice, extract_number, normalize_number
from tests.unit.quality_data import GSM8K, MMLU_PRO, QUALITY, ROOT, needs_quality, rows
from tests.unit.recorded_kit import evaluator


def test_bootstrap_interval_brackets_the_accuracy():
    x = [True] * 70 + [False] * 30
    ci = bootstrap_accuracy(x)
    assert ci.value == pytest.approx(0.7) and 0.6 < ci.low < 0.7 < ci.high < 0.8


def test_mcnemar_is_exact_on_discordant_pairs():
    a = [True] * 10 + [False] * 2
    b = [False] * 10 + [True] * 2
    # 10 vs 2 discordant: two-sided binomial p = 2 * P(X ≤ 2 | n=12, 1/2) = 2 * 79 / 4096
    assert mcnemar_p(a, b) == pytest.approx(2 * 79 / 4096)
    assert mcnemar_p(a, a) == 1.0
    assert paired_difference(a, b).value == pytest.approx(8 / 12)


def test_recommendation_is_the_cheapest_within_the_margin():
    def s(name: str, acc: float, gpu: float) -> Summary:
        return Summary(name, "vote", 100, Interval(acc, acc, acc), None, None, 1, 1, gpu, 0, 0, 0)

    name, why = recommend([s("big", 0.80, 10.0), s("mid", 0.795, 2.0), s("small", 0.70, 0.5)], margin=0.01)
    assert name == "mid" and "5.0x less than big" in why


def test_split_is_disjoint_and_stable():
    items = [Item(id=str(i), question="q", gold="1") for i in range(200)]
    cal, test = split(items)
    assert {i.id for i in cal}.isdisjoint({i.id for i in test}) and len(cal) + len(test) == 200
    assert split(items) == (cal, test) and 70 < len(cal) < 130


def test_scorers():
    item = Item(id="1", question="q", options=("a", "b", "c"), gold="B")
    assert right("choice", item, "... The answer is (B).") and not right("choice", item, "The answer is (C).")
    assert right("numeric", Item(id="2", question="q", gold="1,200"), "#### $1200.00")
    assert right("exact", Item(id="3", question="q", gold="Paris"), " paris ")
    assert default_scorer([item]) == "choice" and log_odds(0.5) == 0.05 and log_odds(0.9) == 2.2


@needs_quality
async def test_eval_reproduces_the_single_model_accuracies_of_the_data():
    """Done-when: each model alone scores exactly what its recorded answers score."""
    for path, models, extract in (
        (GSM8K, ["gpt-4-1106-preview", "gpt-4o-mini", "text-davinci-003"], "numeric"),
        (MMLU_PRO, ["gemini-1.5-pro-002", "gemma-7b"], "choice"),
    ):
        ev = await evaluator(path, {m.replace(".", "_"): m for m in models}, {})
        items = load_items(path)
        for run in await ev.run(models, items, extract):
            expected = [
                (extract_number(r["answers"][run.name] or "") == normalize_number(r["gold"]))
                if extract == "numeric"
                else extract_choice(r["answers"][run.name] or "", "ABCDEFGHIJ"[: len(r["options"])]) == r["gold"]
                for r in rows(path)
            ]
            assert run.accuracy() == pytest.approx(sum(expected) / len(expected))


@needs_quality
async def test_calibrated_consensus_reaches_the_strong_model_at_half_its_calls():
    """Done-when: on a split it was not calibrated on, ≥ 95 % of the strongest model's accuracy
    while sending it ≤ 50 % of the questions."""
    roles = {"mini": "gpt-4o-mini", "turbo": "gpt-3.5-turbo-0613", "mixtral": "Mixtral-8x7B-Instruct",
             "strong": "gpt-4-1106-preview"}
    consensus = {"kind": "consensus", "members": ["mini", "turbo", "mixtral"], "extract": "numeric",
                 "escalate_to": "strong", "threshold": 0.67}
    ev = await evaluator(GSM8K, roles, {"consensus": consensus}, gpus={"gpt-4-1106-preview": 8})
    items = load_items(GSM8K)
    result = await calibrate(ev, items, "numeric", ["consensus"], target=0.95)
    (fit,) = result.fits
    assert fit.target_met
    assert fit.test.accuracy >= 0.95 * fit.strong_test_accuracy
    assert fit.test.strongest_share <= 0.5
    assert result.n_calibration + result.n_test == len(items)
    assert set(result.patch()["patterns"]["consensus"]) <= {"threshold", "min_votes", "weights", "tie_breaker"}


@needs_quality
def test_chorus_eval_command_writes_the_report(tmp_path, capsys):
    out = tmp_path / "out"
    code = main([
        "eval", "-c", str(ROOT / "configs" / "eval-gsm8k.yaml"), "--data", str(GSM8K), "--out", str(out),
        "--patterns", "vote3,consensus,cascade", "--limit", "120", "--policy-out", str(tmp_path / "policy.json"),
    ])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    by_name = {s["name"]: s for s in results["summaries"]}
    assert by_name["gpt-4-1106-preview"]["n"] == 120 and by_name["consensus"]["gpu_s"] > 0
    assert "NotRecorded" in by_name["cascade"]["error"]  # a verifier cannot be replayed: said, not hidden
    assert results["recommendation"] in by_name
    assert (out / "accuracy_vs_cost.png").stat().st_size > 10_000
    assert "| consensus | consensus | 120 |" in (out / "report.md").read_text()
    policy = json.loads((tmp_path / "policy.json").read_text())
    assert set(policy["entries"]["*"]) == {"vote3", "consensus"}


def test_quality_folder_is_beside_the_repository():
    assert ROOT.parent / "shared" / "quality" == QUALITY


def test_summaries_of_unevaluable_patterns_carry_the_reason():
    runs = [PatternRun("m", "model", [Outcome("1", True, 1, 10, 1.0, 1.0, False, frozenset({"m"}))]),
            PatternRun("c", "cascade", error="NotRecorded: verifier")]
    report = summarize(runs, "d", "numeric")
    assert report.summaries[1].error == "NotRecorded: verifier" and report.recommendation == "m"
