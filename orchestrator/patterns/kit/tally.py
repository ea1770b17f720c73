"""How far N answers agree, and which one wins: extractors, tallies, semantic clusters.

Pure functions (no model calls), shared by vote, consensus, council and pyramid.

Extractors turn an answer into the key that is voted on (`None`: nothing to vote for):
- `exact`: the whole answer, whitespace collapsed and case folded.
- `label`: the first configured label the answer starts with (members are constrained to the
  labels anyway; this also accepts "Positive." for `positive`).
- `numeric`: GSM8K style: the number after the last `####`, else the last number in the text;
  commas, a leading `$`/`+` and trailing zeros are dropped, so `#### 1,200.50` == `1200.5`.
- `semantic`: answers are not keyed but clustered by the cosine similarity of their embeddings.

Tie-breaking (deterministic, documented here once): among groups with equal weight, the group
whose first supporter comes earliest in member order wins. Within the winning group the
representative answer is the earliest member for keyed voting, and for a semantic cluster the
most central member (highest mean similarity to the rest of the cluster), earliest on ties.

Agreement = the winning group's weight / the weight of every member that answered, so answers
with no extractable key count against agreement but never win. Failed members are not counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Extract = Literal["exact", "label", "numeric", "semantic"]

_NUMBER = re.compile(r"[-+]?\$?\d[\d,]*(?:\.\d+)?")
_FINAL = re.compile(r"####\s*([^\n]*)")


def normalize_number(token: str) -> str | None:
    """'$1,200.50' → '1200.5'; '-0.0' → '0'; text with no number → None."""
    cleaned = token.replace(",", "").replace("$", "").lstrip("+").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    if value == int(value):
        return str(int(value))
    return f"{value:.10f}".rstrip("0").rstrip(".")


def extract_numeric(text: str) -> str | None:
    """The final answer of a GSM8K-style solution: after the last '####', else the last number."""
    finals = _FINAL.findall(text)
    if finals:
        numbers = _NUMBER.findall(finals[-1])
        if numbers:
            return normalize_number(numbers[0])
    numbers = _NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def extract_label(text: str, labels: Sequence[str]) -> str | None:
    """The configured label the answer starts with (case-insensitive), longest label first."""
    head = text.strip().lower()
    for label in sorted(labels, key=len, reverse=True):
        if head.startswith(label.lower()):
            return label
    return None


def extract_exact(text: str) -> str | None:
    key = " ".join(text.split()).casefold()
    return key or None


def extract(kind: Extract, text: str, labels: Sequence[str] = ()) -> str | None:
    """The key `text` votes for under `kind` (not for `semantic`, which clusters instead)."""
    if kind == "numeric":
        return extract_numeric(text)
    if kind == "label":
        return extract_label(text, labels)
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
    groups: tuple[Group, ...]  # heaviest first, ties in member order
    winner: int | None  # position of the representative answer; None when no answer had a key
    agreement: float
    tie: bool  # the winner tied on weight with another group and won on member order

    @property
    def key(self) -> str | None:
        return self.groups[0].key if self.groups else None


def _rank(groups: list[Group], total: float, pick: dict[str, int]) -> Tally:
    ordered = sorted(groups, key=lambda g: (-g.weight, g.members[0]))
    if not ordered:
        return Tally(groups=(), winner=None, agreement=0.0, tie=False)
    top = ordered[0]
    tie = len(ordered) > 1 and math.isclose(ordered[1].weight, top.weight)
    agreement = top.weight / total if total > 0 else 0.0
    return Tally(groups=tuple(ordered), winner=pick[top.key], agreement=agreement, tie=tie)


def tally_keys(keys: Sequence[str | None], weights: Sequence[float]) -> Tally:
    """Weighted vote over extracted keys; `None` keys weigh in the total but form no group."""
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            members.setdefault(key, []).append(i)
    groups = [Group(key, tuple(ix), sum(weights[i] for i in ix)) for key, ix in members.items()]
    return _rank(groups, sum(weights), {key: ix[0] for key, ix in members.items()})


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


def central(cluster: Sequence[int], vectors: Sequence[Sequence[float]]) -> int:
    """The member with the highest mean similarity to the rest of its cluster; earliest on ties."""
    if len(cluster) == 1:
        return cluster[0]

    def mean_similarity(i: int) -> float:
        return sum(cosine(vectors[i], vectors[j]) for j in cluster if j != i) / (len(cluster) - 1)

    best = cluster[0]
    best_score = mean_similarity(best)
    for i in cluster[1:]:
        score = mean_similarity(i)
        if score > best_score + 1e-12:
            best, best_score = i, score
    return best


def tally_semantic(vectors: Sequence[Sequence[float]], weights: Sequence[float], threshold: float) -> Tally:
    """Weighted vote over similarity clusters; a cluster's key is 'cluster@<position of its first answer>'."""
    groups, pick = [], {}
    for component in clusters(vectors, threshold):
        key = f"cluster@{component[0]}"
        groups.append(Group(key, tuple(component), sum(weights[i] for i in component)))
        pick[key] = central(component, vectors)
    return _rank(groups, sum(weights), pick)
