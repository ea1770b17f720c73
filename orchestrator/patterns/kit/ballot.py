"""The agreement settings vote, consensus, council and pyramid share, and `decide()`, which turns
member answers into a `Tally` under those settings (see `tally` for the rules).

Members may reason before they answer: `numeric` and `choice` ask for a final line ('#### 42',
'The answer is (C)') and read it back, so nothing constrains the reasoning. `semantic` votes on
the values answers state when most of them state one (clustering maths answers by meaning rates
them ~0.97 alike whatever their result), and clusters by meaning only otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import replace

from pydantic import BaseModel, Field, model_validator

from serving.types import Choice, Message

from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.tally import Extract, Tally, extract, tally_keys, tally_semantic
from orchestrator.patterns.kit.base import BuildEnv
from orchestrator.patterns.kit.embedding import Embedder, MiniLMEmbedder
from orchestrator.patterns.kit.members import MemberAnswer
from orchestrator.patterns.kit.extract import choice_with_source, number_with_source


class AgreementFields(BaseModel):
    """How answers are compared. Mixed into specs (flat YAML fields, not a nested block)."""

    extract: Extract = Field(
        "exact",
        description="exact: whole answers; label: one of `labels` (members are constrained to them, no "
        "reasoning); choice: members reason, then state an option letter ('The answer is (C)'); "
        "numeric: members reason, then state the final number ('#### 42'); semantic: the value answers "
        "state when most state one, else clusters of free text by meaning.",
    )
    labels: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="The choices for extract: label (required) or extract: choice (default: letters A-J).",
    )
    similarity: float = Field(
        0.8, ge=0.0, le=1.0, description="extract: semantic: cosine similarity at which two answers agree."
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="Role → vote weight (default 1); turns counting into weighted voting."
    )
    tie_breaker: str | None = Field(
        None,
        description="Role whose answer wins a tie on weight; unset: the group holding the heaviest-weighted "
        "member wins, then member order. The trace records what broke the tie.",
    )

    @model_validator(mode="after")
    def _agreement_fields(self) -> AgreementFields:
        if self.extract == "label" and not self.labels:
            raise ValueError("extract: label needs labels: [...] (the answers members choose from)")
        if self.labels and self.extract not in ("label", "choice"):
            raise ValueError(
                f"labels are only used with extract: label or choice, not extract: {self.extract}; remove labels:"
            )
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct: {self.labels}")
        negative = {r: w for r, w in self.weights.items() if w <= 0}
        if negative:
            raise ValueError(f"weights must be > 0 (got {negative}); leave a role out for the default weight 1")
        return self

    def check_weighted_roles(self, roles: Iterable[str]) -> None:
        """Weights and the tie-breaker may only name roles that vote; call from the spec's own validator."""
        unknown = sorted(set(self.weights) - set(roles))
        if unknown:
            raise ValueError(
                f"weights name role(s) {', '.join(unknown)} that are not members ({', '.join(sorted(set(roles)))})"
            )
        if self.tie_breaker is not None and self.tie_breaker not in set(roles):
            raise ValueError(
                f"tie_breaker names role {self.tie_breaker!r}, which is not a member ({', '.join(sorted(set(roles)))})"
            )

    def member_constraint(self) -> Choice | None:
        return Choice(options=self.labels) if self.extract == "label" else None

    def answer_format(self) -> str | None:
        """The final-line instruction members (and an escalation) get, if the extractor needs one."""
        if self.extract == "numeric":
            return prompts.ANSWER_FORMAT_NUMERIC
        if self.extract == "choice":
            return prompts.ANSWER_FORMAT_CHOICE
        return None

    def member_messages(self, messages: list[Message]) -> list[Message]:
        """The conversation as members see it: numeric and choice voting ask for a final answer line."""
        instruction = self.answer_format()
        return prompts.with_answer_format(messages, instruction) if instruction else messages

    def strength(self, roles: Sequence[str]) -> list[int]:
        """Each member's rank for tie-breaks (0 = strongest): the tie-breaker role, then the heaviest
        weight, then member order."""
        order = sorted(
            range(len(roles)),
            key=lambda i: (roles[i] != self.tie_breaker, -self.weights.get(roles[i], 1.0), i),
        )
        rank = [0] * len(roles)
        for position, i in enumerate(order):
            rank[i] = position
        return rank


def stated_value(text: str) -> str | None:
    """The value an answer explicitly states as its final answer ('The answer is (C)', '#### 42',
    '\\boxed{42}', 'the answer is 42'), keyed by kind; None for prose that states none."""
    choice, how = choice_with_source(text)
    if choice is not None and how != "bare":
        return f"choice:{choice}"
    number, source = number_with_source(text)
    if number is not None and source != "last_sentence":
        return f"number:{number}"
    return None


def embedder_for(fields: AgreementFields, env: BuildEnv | None) -> Embedder | None:
    """The shared embedder when semantic voting needs one (a lazily loading default otherwise)."""
    if fields.extract != "semantic":
        return None
    return (env.embedder if env else None) or MiniLMEmbedder()


async def decide(fields: AgreementFields, answers: Sequence[MemberAnswer], embedder: Embedder | None) -> Tally:
    """The tally of `answers` (positions in the tally index `answers`); `Tally.basis` says what was
    compared: the extracted keys, the values semantic answers state, or their meaning."""
    weights = [fields.weights.get(a.role, 1.0) for a in answers]
    strength = fields.strength([a.role for a in answers])
    if fields.extract == "semantic":
        stated = [stated_value(a.text) for a in answers]
        if 2 * sum(v is not None for v in stated) > len(answers):
            return replace(tally_keys(stated, weights, strength), basis="stated values")
        if embedder is None:
            raise ValueError("semantic voting needs an embedder")
        # Embedding is blocking CPU work (and the first call loads the model): keep it off the loop.
        vectors = await asyncio.to_thread(embedder.embed, [a.text for a in answers])
        return replace(tally_semantic(vectors, weights, fields.similarity, strength), basis="meaning")
    keys = [extract(fields.extract, a.text, fields.labels) for a in answers]
    return replace(tally_keys(keys, weights, strength), basis=fields.extract)


def tally_note(tally: Tally, answers: Sequence[MemberAnswer]) -> dict[str, object]:
    """The tally for the trace; members appear as '<member index>:<role>'."""

    def who(position: int) -> str:
        return f"{answers[position].index}:{answers[position].role}"

    return {
        "winner": tally.key,
        "winner_member": None if tally.winner is None else answers[tally.winner].index,
        "agreement": round(tally.agreement, 4),
        "tie": tally.tie,
        "tie_break": _tie_break(tally, answers),
        "basis": tally.basis,
        "groups": [
            {"key": g.key, "members": [who(i) for i in g.members], "weight": round(g.weight, 4)} for g in tally.groups
        ],
    }


def _tie_break(tally: Tally, answers: Sequence[MemberAnswer]) -> str | None:
    """What broke a tie, naming the member as '<member index>:<role>'."""
    if tally.tie_break is None or not tally.tie_break.startswith("strongest member "):
        return tally.tie_break
    won = answers[int(tally.tie_break.rsplit(" ", 1)[1])]
    return f"strongest member {won.index}:{won.role}"


def accepts(agreement: float, votes: int, threshold: float | None, min_votes: int | None) -> bool:
    """Whether a winning group is accepted: `min_votes` members agree, or its agreement reaches
    `threshold` read to two decimals (so 0.67 accepts 2 of 3 and 0.33 accepts 1 of 3)."""
    if min_votes is not None:
        return votes >= min_votes
    return threshold is not None and agreement + THRESHOLD_TOLERANCE >= threshold


# Thresholds are written to two decimals; 2/3 = 0.6667 must meet 0.67.
THRESHOLD_TOLERANCE = 0.005
