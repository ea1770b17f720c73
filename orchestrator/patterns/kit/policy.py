"""The adaptive pattern's learned policy: per request label, which pattern is worth its cost.

A `Policy` holds, per label and pattern, how many requests were scored, the sum of their scores
(1 = right, 0 = wrong; feedback may give anything in between) and the GPU-seconds they cost.
It is learned offline by `chorus eval --policy-out` and updated online from feedback
(`orchestrator.core.outcomes`). `choose` picks, among the patterns the budget affords, those
within `margin` of the best accuracy, and of them the one with the best accuracy per GPU-second
(fewest model calls where GPU-seconds are not known, as on CPU). A label with no data falls back
to the entries of every label together (`*`). Exploration is bounded: with probability
`explore`, another affordable pattern is tried instead, so its estimate keeps improving.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.outcomes import Scored

ALL = "*"


class Stats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(0, ge=0, description="Requests scored.")
    score: float = Field(0.0, ge=0.0, description="Sum of their scores (1 right, 0 wrong).")
    gpu_s: float = Field(0.0, ge=0.0, description="Sum of their GPU-seconds.")
    calls: float = Field(0.0, ge=0.0, description="Sum of their model calls.")

    def __add__(self, other: Stats) -> Stats:
        return Stats(
            n=self.n + other.n, score=self.score + other.score, gpu_s=self.gpu_s + other.gpu_s,
            calls=self.calls + other.calls,
        )

    @property
    def accuracy(self) -> float:
        return self.score / self.n if self.n else 0.0

    def efficiency(self) -> float:
        """Accuracy per GPU-second; per model call when nothing ran on a GPU."""
        cost = self.gpu_s / self.n if self.n and self.gpu_s > 0 else (self.calls / self.n if self.n else 1.0) * 1e-6
        return self.accuracy / max(cost, 1e-12)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: dict[str, dict[str, Stats]] = Field(
        default_factory=dict, description="Label → pattern → what its requests scored and cost."
    )
    margin: float = Field(0.01, ge=0.0, le=1.0, description="Patterns within this of the best accuracy compete on cost.")

    def merged(self, other: Mapping[str, Mapping[str, Scored]]) -> Policy:
        """This policy with online outcomes added to its entries."""
        entries = {label: dict(per) for label, per in self.entries.items()}
        for label, per in other.items():
            for pattern, s in per.items():
                entries.setdefault(label, {})
                online = Stats(n=s.n, score=s.score, gpu_s=s.gpu_s, calls=s.calls)
                entries[label][pattern] = entries[label].get(pattern, Stats()) + online
        return Policy(entries=entries, margin=self.margin)

    def for_label(self, label: str) -> tuple[str, dict[str, Stats]]:
        """(the entry used, its stats): the label's own, else every label's together."""
        if self.entries.get(label):
            return label, self.entries[label]
        total: dict[str, Stats] = {}
        for per in self.entries.values():
            for pattern, stats in per.items():
                total[pattern] = total.get(pattern, Stats()) + stats
        return ALL, total


@dataclass(frozen=True)
class Choice:
    pattern: str
    entry: str  # the label whose entry decided, or '*'
    stats: Stats
    explored: bool


def choose(
    policy: Policy, label: str, affordable: Sequence[str], explore: float, rng: random.Random
) -> Choice | None:
    """The pattern the policy picks for `label` among `affordable` (None: no data for any of them)."""
    entry, per = policy.for_label(label)
    known = [p for p in affordable if p in per and per[p].n > 0]
    if not known:
        return None
    best = max(per[p].accuracy for p in known)
    near = [p for p in known if per[p].accuracy >= best - policy.margin]
    pick = max(near, key=lambda p: (per[p].efficiency(), per[p].accuracy))
    others = [p for p in affordable if p != pick]
    if others and rng.random() < explore:
        tried = rng.choice(others)
        return Choice(tried, entry, per.get(tried, Stats()), explored=True)
    return Choice(pick, entry, per[pick], explored=False)
