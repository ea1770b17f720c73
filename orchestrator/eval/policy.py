"""Learning the adaptive pattern's policy from evaluation results: per item label (the data's
`category`, or `*` without one) and pattern, how often it was right and what it cost."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.eval.data import Item
from orchestrator.eval.runner import PatternRun
from orchestrator.patterns.kit.policy import ALL, Policy, Stats


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
