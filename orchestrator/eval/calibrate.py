"""`chorus eval --calibrate`: fit a config's vote weights, tie order and consensus thresholds on
one half of the data, and report what they do on the other half.

- Weights: each member's log-odds of being right on the calibration half, log(p / (1 − p)),
  the optimal weights of a weighted majority of independent voters (clipped to [0.05, 5]).
- Tie order: the most accurate member becomes `tie_breaker`.
- Semantic votes: the `similarity` at which answers agree, the most accurate on the calibration half.
- Consensus: every threshold on a grid and every `min_votes`, with and without the weights, is
  tried on the calibration half; the setting kept is the one that reaches `target` × the
  escalation model's accuracy with the fewest escalations (the most accurate one if none does).
The test half never informs a choice; it only reports. The patch (`calibrated.yaml`) holds only
the fields that changed, to copy into the config by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.eval.data import Item, split
from orchestrator.eval.runner import Evaluator, PatternRun
from orchestrator.eval.scorers import ScorerName
from orchestrator.service.config import ChorusConfig

THRESHOLDS = (0.34, 0.4, 0.5, 0.6, 0.67, 0.75, 0.8, 0.9, 1.0)
SIMILARITIES = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class Measured:
    accuracy: float
    escalated: float  # share of questions escalated
    strongest_share: float  # share of questions the escalation model answered a step of


@dataclass(frozen=True)
class Fit:
    pattern: str
    kind: str
    patch: dict[str, Any]  # the fields calibration sets
    calibration: Measured
    test: Measured
    test_before: Measured  # the pattern as configured, on the test half
    strong_model: str | None = None
    strong_test_accuracy: float | None = None  # the escalation model alone, on the test half
    target_met: bool | None = None  # on the calibration half
    sweep: list[dict[str, Any]] = field(default_factory=list)  # every setting tried, on the calibration half


@dataclass
class Calibration:
    target: float
    n_calibration: int
    n_test: int
    model_accuracy: dict[str, float]  # on the calibration half
    weights: dict[str, float]  # role → weight
    fits: list[Fit] = field(default_factory=list)

    def patch(self) -> dict[str, Any]:
        return {"patterns": {f.pattern: f.patch for f in self.fits if f.patch}}

    def markdown(self) -> str:
        lines = [
            (
                f"Calibration on {self.n_calibration} items, reported on {self.n_test} held-out items "
                f"(target: {self.target:.0%} of the escalation model's accuracy)."
            ),
            "",
            (
                "| pattern | calibrated fields | test accuracy before → after | escalated (test) "
                "| strong model asked (test) | strong model alone (test) | ratio |"
            ),
            "|---|---|---|---|---|---|---|",
        ]
        for f in self.fits:
            ratio = (
                f"{f.test.accuracy / f.strong_test_accuracy:.1%}" if f.strong_test_accuracy else "–"
            )
            strong = f"{f.strong_test_accuracy:.1%}" if f.strong_test_accuracy is not None else "–"
            fields = ", ".join(f"{k}: {v}" for k, v in f.patch.items() if k != "weights")
            if "weights" in f.patch:
                fields = "weighted" + (", " + fields if fields else "")
            escalated, asked = (
                (f"{f.test.escalated:.0%}", f"{f.test.strongest_share:.0%}") if f.kind == "consensus" else ("–", "–")
            )
            lines.append(
                f"| {f.pattern} | {fields or '(unchanged)'} | {f.test_before.accuracy:.1%} → {f.test.accuracy:.1%} | "
                f"{escalated} | {asked} | {strong} | {ratio} |"
            )
        return "\n".join(lines) + "\n"


def _measure(run: PatternRun, strong: str | None) -> Measured:
    n = max(len(run.outcomes), 1)
    return Measured(
        accuracy=run.accuracy(),
        escalated=sum(o.escalated for o in run.outcomes) / n,
        strongest_share=sum(strong is not None and strong in o.models for o in run.outcomes) / n,
    )


def _with(config: ChorusConfig, name: str, update: dict[str, Any]) -> ChorusConfig:
    spec = config.patterns[name]
    patched = type(spec).model_validate({**spec.model_dump(), **update})
    return config.model_copy(update={"patterns": {**config.patterns, name: patched}})


def log_odds(p: float) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)
    return round(min(max(math.log(p / (1 - p)), 0.05), 5.0), 2)


async def _run(ev: Evaluator, config: ChorusConfig, name: str, items: Sequence[Item], scorer: ScorerName) -> PatternRun:
    return (await ev.with_config(config).run([name], items, scorer))[0]


async def calibrate(
    ev: Evaluator, items: Sequence[Item], scorer: ScorerName, names: Sequence[str], target: float = 0.95
) -> Calibration:
    config = ev.config
    cal, test = split(items)
    singles = await ev.run(ev.models(), cal, scorer)
    accuracy = {r.name: r.accuracy() for r in singles}
    test_singles = {r.name: r.accuracy() for r in await ev.run(ev.models(), test, scorer)}
    weights = {role: log_odds(accuracy[model]) for role, model in config.roles.items() if model in accuracy}
    result = Calibration(target, len(cal), len(test), accuracy, weights)
    for name in names:
        spec = config.patterns[name]
        if spec.kind not in ("vote", "consensus"):
            continue
        fit = await _fit(ev, name, spec, weights, cal, test, scorer, target, test_singles)
        if fit is not None:
            result.fits.append(fit)
    return result


async def _fit(
    ev: Evaluator,
    name: str,
    spec: Any,
    weights: dict[str, float],
    cal: Sequence[Item],
    test: Sequence[Item],
    scorer: ScorerName,
    target: float,
    test_singles: dict[str, float],
) -> Fit | None:
    config = ev.config
    members: list[str] = list(spec.members)
    member_weights = {r: weights[r] for r in dict.fromkeys(members) if r in weights}
    strongest = max(member_weights, key=lambda r: member_weights[r]) if member_weights else None
    weighted = {"weights": member_weights, "tie_breaker": strongest} if member_weights else {}
    strong_role = getattr(spec, "escalate_to", None)
    strong = config.roles.get(strong_role) if strong_role else None
    before = await _run(ev, config, name, test, scorer)
    if before.error is not None:
        return None
    if spec.kind == "vote":
        update: dict[str, Any] = dict(weighted)
        if spec.extract == "semantic":
            # The similarity at which answers agree, fitted like a threshold: best accuracy on calibration.
            tried = []
            for similarity in SIMILARITIES:
                run = await _run(ev, _with(config, name, {**update, "similarity": similarity}), name, cal, scorer)
                tried.append((run.accuracy(), -abs(similarity - 0.8), similarity))
            update["similarity"] = max(tried)[2]
        after = await _run(ev, _with(config, name, update), name, test, scorer)
        calibrated = await _run(ev, _with(config, name, update), name, cal, scorer)
        return Fit(name, "vote", update, _measure(calibrated, None), _measure(after, None), _measure(before, None))
    # consensus: every threshold and min_votes, with and without weights, on the calibration half
    candidates: list[dict[str, Any]] = []
    for extra in ({}, weighted):
        candidates += [{**extra, "threshold": t, "min_votes": None} for t in THRESHOLDS]
        candidates += [{**extra, "min_votes": k} for k in range(1, len(members) + 1)]
    strong_cal = (await _run(ev, config, strong, cal, scorer)).accuracy() if strong else 0.0
    goal = target * strong_cal
    scored = []
    for update in candidates:
        run = await _run(ev, _with(config, name, update), name, cal, scorer)
        scored.append((update, _measure(run, strong)))
    meeting = [(u, m) for u, m in scored if m.accuracy >= goal]
    if meeting:
        update, measured = min(meeting, key=lambda um: (um[1].escalated, -um[1].accuracy))
    else:
        update, measured = max(scored, key=lambda um: (um[1].accuracy, -um[1].escalated))
    after = await _run(ev, _with(config, name, update), name, test, scorer)
    patch = {k: v for k, v in update.items() if not (k == "min_votes" and v is None)}
    return Fit(
        name, "consensus", patch, measured, _measure(after, strong), _measure(before, strong),
        strong_model=strong, strong_test_accuracy=test_singles.get(strong) if strong else None,
        target_met=bool(meeting),
        sweep=[{"setting": u, **asdict(m)} for u, m in scored],
    )


def write_calibration(result: Calibration, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    (out / "calibration.md").write_text(result.markdown())
    header = "# chorus eval --calibrate: copy these fields into your config's patterns.\n"
    (out / "calibrated.yaml").write_text(header + yaml.safe_dump(result.patch(), sort_keys=False))
