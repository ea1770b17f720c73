"""How far N answers agree, and which one wins: extractors, tallies, semantic clusters.

Pure functions (no model calls), shared by vote, consensus, council and pyramid.

Extractors turn an answer into the key that is voted on (`None`: nothing to vote for); the
number and choice readers live in `kit.extract`:
- `exact`: the whole answer, whitespace collapsed and case folded.
- `label`: the configured label the answer starts with (members are constrained to the labels),
  else the label it states ("The answer is (C)").
- `choice`: the label (A–J by default) a free-text answer states after reasoning.
- `numeric`: the final number (`####`, `\\boxed{}`, "the answer is", else the concluding sentence).
- `semantic`: answers are not keyed but clustered by the cosine similarity of their embeddings.

Tie-breaking (deterministic, documented here once): groups are ranked by weight; among groups of
equal weight the one holding the strongest member wins. Strength is a per-member rank the caller
gives (`strength`, lower = stronger: the tie-breaker role first, then the heaviest weight, then
member order); without it, member order. `Tally.tie_break` says what decided. Within the winning
group the representative answer is its strongest member for keyed voting, and for a semantic
cluster the most central member (highest mean similarity to the rest), strongest on ties.

Agreement = the winning group's weight / the weight of every member that answered, so answers
with no extractable key count against agreement but never win. Failed members are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from orchestrator.patterns.kit.extract import LETTERS, extract_choice, extract_number, normalize_number

__all__ = ["Basis", "Extract", "Group", "Tally", "TieBreak", "extract", "extract_label", "extract_numeric", "normalize_number"]

Extract = Literal["exact", "label", "choice", "numeric", "semantic"]
# What a tally compared: an extractor's keys, the values semantic answers state, or their meaning.
Basis = Literal["exact", "label", "choice", "numeric", "stated values", "meaning"]
# What broke a tie on weight: the strongest member's group (the strength the caller gave ranks
# them), or plain member order (no tie-breaker role and equal weights).
TieBreak = Literal["strongest member", "member order"]

# The number reader, under the name the patterns have always used.
extract_numeric = extract_number


def extract_label(text: str, labels: Sequence[str]) -> str | None:
    """The configured label the answer starts with (case-insensitive), longest label first;
    else the label it states after reasoning ("... The answer is (C).")."""
    head = text.strip().lower()
    for label in sorted(labels, key=len, reverse=True):
        if head.startswith(label.lower()):
            return label
    return extract_choice(text, labels)


def extract_exact(text: str) -> str | None:
    key = " ".join(text.split()).casefold()
    return key or None


def extract(kind: Extract, text: str, labels: Sequence[str] = ()) -> str | None:
    """The key `text` votes for under `kind` (not for `semantic`, which clusters instead)."""
    if kind == "numeric":
        return extract_numeric(text)
    if kind == "label":
        return extract_label(text, labels)
    if kind == "choice":
        return extract_choice(text, labels or LETTERS)
    if kind == "exact":
        return extract_exact(text)
    raise ValueError(f"extractor {kind!r} does not produce keys; semantic answers are clustered")


@dataclass(frozen=True)
class Group:
    """Members that agree: a shared key, or one semantic cluster."""

    key: str
    members: tuple[int, ...]  # positions in the answers list, in member order
    weight: float


@dataclass(frozen=True)
class Tally:
    groups: tuple[Group, ...]  # heaviest first, ties strongest first
    winner: int | None  # position of the representative answer; None when no answer had a key
    agreement: float
    tie: bool  # the winner tied on weight with another group
    tie_break: TieBreak | None = None  # what decided the tie (None without one)
    tie_member: int | None = None  # position of the strongest member of the winning group, on a tie
    basis: Basis | None = None  # what was compared (decide() fills it)

    @property
    def key(self) -> str | None:
        return self.groups[0].key if self.groups else None


def _strength(strength: Sequence[int] | None, n: int) -> Sequence[int]:
    return strength if strength is not None else range(n)


def _rank(groups: list[Group], total: float, pick: dict[str, int], strength: Sequence[int]) -> Tally:
    # Weights compare with a tolerance: 0.1 + 0.2 and 0.3 are the same weight.
    def order(g: Group) -> tuple[float, int]:
        return (-round(g.weight, 9), min(strength[i] for i in g.members))

    ordered = sorted(groups, key=order)
    if not ordered:
        return Tally(groups=(), winner=None, agreement=0.0, tie=False)
    top = ordered[0]
    tie = len(ordered) > 1 and math.isclose(ordered[1].weight, top.weight)
    tie_break: TieBreak | None = None
    tie_member = None
    if tie:
        tie_member = min(top.members, key=lambda i: strength[i])
        by_order = list(strength) == list(range(len(strength)))
        tie_break = "member order" if by_order else "strongest member"
    agreement = top.weight / total if total > 0 else 0.0
    return Tally(
        groups=tuple(ordered),
        winner=pick[top.key],
        agreement=agreement,
        tie=tie,
        tie_break=tie_break,
        tie_member=tie_member,
    )


def tally_keys(
    keys: Sequence[str | None], weights: Sequence[float], strength: Sequence[int] | None = None
) -> Tally:
    """Weighted vote over extracted keys; `None` keys weigh in the total but form no group.

    `strength[i]`: member i's rank for tie-breaks and representatives (lower = stronger)."""
    rank = _strength(strength, len(keys))
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            members.setdefault(key, []).append(i)
    groups = [Group(key, tuple(ix), sum(weights[i] for i in ix)) for key, ix in members.items()]
    pick = {key: min(ix, key=lambda i: rank[i]) for key, ix in members.items()}
    return _rank(groups, sum(weights), pick, rank)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def clusters(vectors: Sequence[Sequence[float]], threshold: float) -> list[list[int]]:
    """Connected components of the graph 'cosine ≥ threshold' (single linkage).

    Independent of the order answers arrive in; fine for the handful of answers a vote has.
    """
    n = len(vectors)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if cosine(vectors[i], vectors[j]) >= threshold:
                parent[root(j)] = root(i)
    components: dict[int, list[int]] = {}
    for i in range(n):
        components.setdefault(root(i), []).append(i)
    return sorted(components.values(), key=lambda c: c[0])


def central(cluster: Sequence[int], vectors: Sequence[Sequence[float]], strength: Sequence[int] | None = None) -> int:
    """The member with the highest mean similarity to the rest of its cluster; strongest on ties."""
    if len(cluster) == 1:
        return cluster[0]
    rank = _strength(strength, len(vectors))

    def mean_similarity(i: int) -> float:
        return sum(cosine(vectors[i], vectors[j]) for j in cluster if j != i) / (len(cluster) - 1)

    ordered = sorted(cluster, key=lambda i: rank[i])
    best = ordered[0]
    best_score = mean_similarity(best)
    for i in ordered[1:]:
        score = mean_similarity(i)
        if score > best_score + 1e-12:
            best, best_score = i, score
    return best


def tally_semantic(
    vectors: Sequence[Sequence[float]],
    weights: Sequence[float],
    threshold: float,
    strength: Sequence[int] | None = None,
) -> Tally:
    """Weighted vote over similarity clusters; a cluster's key is 'cluster@<position of its first answer>'."""
    rank = _strength(strength, len(vectors))
    groups, pick = [], {}
    for component in clusters(vectors, threshold):
        key = f"cluster@{component[0]}"
        groups.append(Group(key, tuple(component), sum(weights[i] for i in component)))
        pick[key] = central(component, vectors, rank)
    return _rank(groups, sum(weights), pick, rank)
