"""Learning the adaptive pattern's policy from evaluation results: per item label (the data's
`category`, or `*` without one) and pattern, how often it was right and what it cost."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.eval.data import Item, split
from orchestrator.eval.runner import PatternRun
from orchestrator.patterns.kit.policy import ALL, Choice, Policy, Stats, choose


def learn_policy(runs: Sequence[PatternRun], items: Sequence[Item], margin: float = 0.01) -> Policy:
    """A policy over the evaluated patterns (single models are not adaptive candidates)."""
    label_of = {i.id: i.category or ALL for i in items}
    entries: dict[str, dict[str, Stats]] = {}
    for run in runs:
        if run.kind == "model" or run.error is not None:
            continue
        for o in run.outcomes:
            per = entries.setdefault(label_of[o.item], {})
            per[run.name] = per.get(run.name, Stats()) + Stats(
                n=1, score=float(o.right), gpu_s=o.gpu_s, calls=o.calls
            )
    return Policy(entries=entries, margin=margin)


@dataclass(frozen=True)
class Cost:
    accuracy: float
    gpu_s: float  # per question


@dataclass(frozen=True)
class HeldOut:
    test_items: int
    policy: Cost
    per_label: dict[str, str]  # label → the pattern the policy picked
    fixed_patterns: dict[str, Cost]

    def best_fixed(self) -> tuple[str, Cost]:
        return max(self.fixed_patterns.items(), key=lambda kv: kv[1].accuracy)


def held_out(runs: Sequence[PatternRun], items: Sequence[Item], margin: float = 0.01) -> HeldOut:
    """The policy learned on the calibration half, followed on the test half (label = category,
    every pattern affordable, no exploration), against each fixed pattern on the same half."""
    cal, test = split(items)
    cal_ids, test_ids = {i.id for i in cal}, {i.id for i in test}
    evaluated = [r for r in runs if r.kind != "model" and r.error is None]
    policy = learn_policy(
        [PatternRun(r.name, r.kind, [o for o in r.outcomes if o.item in cal_ids]) for r in evaluated], cal, margin
    )
    label_of = {i.id: i.category or ALL for i in test}
    by_item = {r.name: {o.item: o for o in r.outcomes if o.item in test_ids} for r in evaluated}
    names = [r.name for r in evaluated]
    chosen: dict[str, str] = {}
    right = gpu = 0.0
    rng = random.Random(0)
    for item_id, label in label_of.items():
        pick = chosen.get(label) or (choose(policy, label, names, 0.0, rng) or Choice(names[0], ALL, Stats(), False)).pattern
        chosen[label] = pick
        outcome = by_item[pick][item_id]
        right += outcome.right
        gpu += outcome.gpu_s
    n = max(len(label_of), 1)
    fixed = {
        name: Cost(sum(o.right for o in per.values()) / n, sum(o.gpu_s for o in per.values()) / n)
        for name, per in by_item.items()
    }
    return HeldOut(len(label_of), Cost(right / n, gpu / n), chosen, fixed)
