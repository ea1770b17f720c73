"""A ballot, as vote, consensus, council and pyramid hold one: who votes (`BallotSpec`), how their
answers are compared (`AgreementFields`), and the count (`decide`, `poll_and_tally`) with the record
of it a decision keeps (`TallyRecord`). The counting rules themselves are in `kit/tally.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.decisions import FailedMember
from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.base import BuildEnv, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.embedding import Embedder, MiniLMEmbedder
from orchestrator.patterns.kit.members import MemberAnswer, MemberRef, ask_all, require_answers
from orchestrator.patterns.kit.tally import Extract, Tally, extract, tally_keys, tally_semantic
from serving.types import Choice, Message

if TYPE_CHECKING:
    from orchestrator.core.context import Context


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


class GroupRecord(BaseModel):
    """Members whose answers agree: one key, or one semantic cluster."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        description="What they agree on: the extracted key, or for semantic voting 'cluster@N' "
        "(N: the position of the cluster's first answer)."
    )
    members: list[MemberRef] = Field(description="The members in the group, in member order.")
    weight: float = Field(description="Their summed vote weight (rounded to 4 places).")


class TallyRecord(BaseModel):
    """A count of member answers, as a decision records it."""

    model_config = ConfigDict(extra="forbid")

    winner: str | None = Field(description="The winning group's key; null when no answer held one.")
    winner_member: int | None = Field(description="Member index of the winning group's representative answer.")
    agreement: float = Field(description="Winning weight / weight of every member that answered (4 places).")
    tie: bool = Field(description="The winner tied on weight with another group and won on member order.")
    groups: list[GroupRecord] = Field(description="Every group, heaviest first.")

    @classmethod
    def of(cls, tally: Tally, answers: Sequence[MemberAnswer]) -> TallyRecord:
        """Positions in the tally index `answers`; the record names members by their member index."""
        return cls(
            winner=tally.key,
            winner_member=None if tally.winner is None else answers[tally.winner].index,
            agreement=round(tally.agreement, 4),
            tie=tally.tie,
            groups=[
                GroupRecord(key=g.key, members=[MemberRef.of(answers[i]) for i in g.members], weight=round(g.weight, 4))
                for g in tally.groups
            ],
        )


class BallotSpec(PatternSpecBase, AgreementFields):
    """Members that vote and how their answers are compared (vote, consensus and council)."""

    members: list[str] = Field(
        min_length=2, max_length=16, description="Voting roles; repeat a role to sample it again."
    )
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="Members' temperature; > 0 makes a repeated role sample different answers."
    )

    @model_validator(mode="after")
    def _weights_name_members(self) -> BallotSpec:
        self.check_weighted_roles(self.members)
        return self

    def roles(self) -> set[str]:
        return set(self.members)

    def max_calls(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Count:
    """The answers of the members that replied, their tally, and the members that failed."""

    answers: list[MemberAnswer]
    tally: Tally
    failed: list[FailedMember]

    def record(self) -> TallyRecord:
        return TallyRecord.of(self.tally, self.answers)


async def poll_and_tally(
    spec: BallotSpec,
    embedder: Embedder | None,
    request: PatternRequest,
    ctx: Context,
    what: str,
    candidates: bool = True,
) -> Count:
    """Ask every member and tally their answers; PatternFailed (naming `what`) when none answered.
    `candidates`: a member's answer may become the pattern's answer as it is (see `Context.call`)."""
    poll = await ask_all(
        ctx,
        spec.members,
        spec.member_messages(request.messages),
        name="member",
        constraint=spec.member_constraint(),
        temperature=spec.temperature,
        candidate=candidates,
    )
    answers = require_answers(poll, what)
    return Count(answers, await decide(spec, answers, embedder), poll.failed)
