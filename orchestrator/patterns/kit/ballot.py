"""The agreement settings vote, consensus, council and pyramid share, and `decide()`, which turns
member answers into a `Tally` under those settings (see `agreement` for the rules)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

from pydantic import BaseModel, Field, model_validator

from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.base import BuildEnv
from orchestrator.patterns.kit.embedding import Embedder, MiniLMEmbedder
from orchestrator.patterns.kit.members import MemberAnswer
from orchestrator.patterns.kit.tally import Extract, Tally, extract, tally_keys, tally_semantic
from serving.types import Choice, Message


class AgreementFields(BaseModel):
    """How answers are compared. Mixed into specs (flat YAML fields, not a nested block)."""

    extract: Extract = Field(
        "exact",
        description="exact: whole answers; label: one of `labels` (members are constrained to them); "
        "numeric: the final number (GSM8K '#### 42'); semantic: cluster free text by meaning.",
    )
    labels: list[str] = Field(default_factory=list, max_length=32, description="The choices for extract: label.")
    similarity: float = Field(
        0.8, ge=0.0, le=1.0, description="extract: semantic: cosine similarity at which two answers agree."
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="Role → vote weight (default 1); turns counting into weighted voting."
    )

    @model_validator(mode="after")
    def _agreement_fields(self) -> AgreementFields:
        if self.extract == "label" and not self.labels:
            raise ValueError("extract: label needs labels: [...] (the answers members choose from)")
        if self.labels and self.extract != "label":
            raise ValueError(f"labels are only used with extract: label, not extract: {self.extract}; remove labels:")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct: {self.labels}")
        negative = {r: w for r, w in self.weights.items() if w <= 0}
        if negative:
            raise ValueError(f"weights must be > 0 (got {negative}); leave a role out for the default weight 1")
        return self

    def check_weighted_roles(self, roles: Iterable[str]) -> None:
        """Weights may only name roles that vote; call from the spec's own validator."""
        unknown = sorted(set(self.weights) - set(roles))
        if unknown:
            raise ValueError(
                f"weights name role(s) {', '.join(unknown)} that are not members ({', '.join(sorted(set(roles)))})"
            )

    def member_constraint(self) -> Choice | None:
        return Choice(options=self.labels) if self.extract == "label" else None

    def member_messages(self, messages: list[Message]) -> list[Message]:
        """The conversation as members see it: numeric voting asks for a '#### <answer>' line."""
        return prompts.with_answer_format(messages) if self.extract == "numeric" else messages


def embedder_for(fields: AgreementFields, env: BuildEnv | None) -> Embedder | None:
    """The shared embedder when semantic voting needs one (a lazily loading default otherwise)."""
    if fields.extract != "semantic":
        return None
    return (env.embedder if env else None) or MiniLMEmbedder()


async def decide(fields: AgreementFields, answers: Sequence[MemberAnswer], embedder: Embedder | None) -> Tally:
    """The tally of `answers` (positions in the tally index `answers`)."""
    weights = [fields.weights.get(a.role, 1.0) for a in answers]
    if fields.extract == "semantic":
        if embedder is None:
            raise ValueError("semantic voting needs an embedder")
        # Embedding is blocking CPU work (and the first call loads the model): keep it off the loop.
        vectors = await asyncio.to_thread(embedder.embed, [a.text for a in answers])
        return tally_semantic(vectors, weights, fields.similarity)
    keys = [extract(fields.extract, a.text, fields.labels) for a in answers]
    return tally_keys(keys, weights)


def decided(fields: AgreementFields, members: Sequence[str], threshold: float) -> Callable[[Sequence[MemberAnswer]], bool]:
    """Whether the answers so far already carry the vote at `threshold` whatever the members
    still out answer: one key's weight reaches `threshold` × the weight of all members (so its
    agreement stays at or above it). Semantic voting clusters whole sets, so it never settles early."""
    total = sum(fields.weights.get(r, 1.0) for r in members)

    def settled(answers: Sequence[MemberAnswer]) -> bool:
        if fields.extract == "semantic" or not answers:
            return False
        weight: dict[str, float] = {}
        for a in answers:
            key = extract(fields.extract, a.text, fields.labels)
            if key is not None:
                weight[key] = weight.get(key, 0.0) + fields.weights.get(a.role, 1.0)
        return bool(weight) and max(weight.values()) >= threshold * total - 1e-9

    return settled


def tally_note(tally: Tally, answers: Sequence[MemberAnswer]) -> dict[str, object]:
    """The tally for the trace; members appear as '<member index>:<role>'."""

    def who(position: int) -> str:
        return f"{answers[position].index}:{answers[position].role}"

    return {
        "winner": tally.key,
        "winner_member": None if tally.winner is None else answers[tally.winner].index,
        "agreement": round(tally.agreement, 4),
        "tie": tally.tie,
        "groups": [
            {"key": g.key, "members": [who(i) for i in g.members], "weight": round(g.weight, 4)} for g in tally.groups
        ],
    }
