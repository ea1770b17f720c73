"""A ballot, as vote, consensus, council and pyramid hold one: who votes (`BallotSpec`), how their
answers are compared (`AgreementFields`), and the count (`decide`, `poll_and_tally`) with the record
of it a decision keeps (`TallyRecord`), and whether a count is accepted (`accepts`). The counting
rules themselves are in `kit/tally.py`.

Members may reason before they answer: `numeric` and `choice` ask for a final line ('#### 42',
'The answer is (C)') and read it back, so nothing constrains the reasoning. `semantic` votes on
the values answers state when most of them state one (clustering maths answers by meaning rates
them ~0.97 alike whatever their result), and clusters by meaning only otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.decisions import FailedMember
from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.base import BuildEnv, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.embedding import Embedder, MiniLMEmbedder
from orchestrator.patterns.kit.extract import choice_with_source, number_with_source
from orchestrator.patterns.kit.members import (
    MemberAnswer,
    MemberRef,
    Poll,
    Settled,
    ask_all,
    ask_until,
    require_answers,
)
from orchestrator.patterns.kit.tally import Basis, Extract, Tally, TieBreak, extract, tally_keys, tally_semantic
from serving.types import Choice, Message

if TYPE_CHECKING:
    from orchestrator.core.context import Context


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


# The basis of a keyed tally, by extractor (semantic is decided in `decide`).
KEYED_BASIS: dict[Extract, Basis] = {"exact": "exact", "label": "label", "choice": "choice", "numeric": "numeric"}


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
    return replace(tally_keys(keys, weights, strength), basis=KEYED_BASIS[fields.extract])


# Thresholds are written to two decimals; 2/3 = 0.6667 must meet 0.67.
THRESHOLD_TOLERANCE = 0.005


def accepts(agreement: float, votes: int, threshold: float | None, min_votes: int | None) -> bool:
    """Whether a winning group is accepted: `min_votes` members agree, or its agreement reaches
    `threshold` read to two decimals (so 0.67 accepts 2 of 3 and 0.33 accepts 1 of 3)."""
    if min_votes is not None:
        return votes >= min_votes
    return threshold is not None and agreement + THRESHOLD_TOLERANCE >= threshold


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
    tie: bool = Field(description="The winner tied on weight with another group and won on the tie order.")
    tie_break: TieBreak | None = Field(
        default=None,
        description="What broke the tie: 'strongest member' (the group holding the tie_breaker role, else the "
        "heaviest-weighted member) or 'member order' (equal weights, no tie_breaker); null without a tie."
    )
    tie_member: MemberRef | None = Field(
        default=None,
        description="On a tie: the winning group's strongest member, whose rank broke it; null without a tie."
    )
    basis: Basis | None = Field(
        default=None,
        description="What was compared: the extractor's keys (exact, label, choice, numeric), the values "
        "semantic answers state ('stated values', when most state one) or their meaning ('meaning').",
    )
    groups: list[GroupRecord] = Field(description="Every group, heaviest first.")

    @classmethod
    def of(cls, tally: Tally, answers: Sequence[MemberAnswer]) -> TallyRecord:
        """Positions in the tally index `answers`; the record names members by their member index."""
        return cls(
            winner=tally.key,
            winner_member=None if tally.winner is None else answers[tally.winner].index,
            agreement=round(tally.agreement, 4),
            tie=tally.tie,
            tie_break=tally.tie_break,
            tie_member=None if tally.tie_member is None else MemberRef.of(answers[tally.tie_member]),
            basis=tally.basis,
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
    stopped: list[str] = field(default_factory=list)  # members cancelled once the vote was settled

    def record(self) -> TallyRecord:
        return TallyRecord.of(self.tally, self.answers)


async def poll_members(
    spec: BallotSpec, request: PatternRequest, ctx: Context, settled: Settled | None = None, candidates: bool = True
) -> Poll:
    """The members answer the request (steps `member[i]`), in the members' answer format: every
    one, or with `settled` only until the answers so far decide the vote (the rest are cancelled).
    `candidates`: a member's answer may become the pattern's answer as it is (see `Context.call`)."""
    messages = spec.member_messages(request.messages)
    if settled is not None:
        return await ask_until(
            ctx,
            spec.members,
            messages,
            settled,
            name="member",
            constraint=spec.member_constraint(),
            temperature=spec.temperature,
            candidate=candidates,
        )
    return await ask_all(
        ctx,
        spec.members,
        messages,
        name="member",
        constraint=spec.member_constraint(),
        temperature=spec.temperature,
        candidate=candidates,
    )


async def tally_poll(spec: BallotSpec, embedder: Embedder | None, poll: Poll, what: str) -> Count:
    """The count of a poll; PatternFailed (naming `what`) when no member answered."""
    answers = require_answers(poll, what)
    return Count(answers, await decide(spec, answers, embedder), poll.failed, poll.stopped)


async def poll_and_tally(
    spec: BallotSpec,
    embedder: Embedder | None,
    request: PatternRequest,
    ctx: Context,
    what: str,
    settled: Settled | None = None,
    candidates: bool = True,
) -> Count:
    """Ask the members and tally their answers; PatternFailed (naming `what`) when none answered.
    `candidates`: as for `poll_members`."""
    return await tally_poll(spec, embedder, await poll_members(spec, request, ctx, settled, candidates), what)


def decided(
    fields: AgreementFields, members: Sequence[str], threshold: float | None, min_votes: int | None = None
) -> Callable[[Sequence[MemberAnswer]], bool]:
    """Whether the answers so far already carry the vote whatever the members still out answer:
    one key's weight reaches `threshold` × the weight of all members (read to two decimals, as
    `accepts` reads it), or `min_votes` members agree on it. Semantic voting clusters whole sets,
    so it never settles early."""
    total = sum(fields.weights.get(r, 1.0) for r in members)

    def settled(answers: Sequence[MemberAnswer]) -> bool:
        if fields.extract == "semantic" or not answers:
            return False
        weight: dict[str, float] = {}
        votes: dict[str, int] = {}
        for a in answers:
            key = extract(fields.extract, a.text, fields.labels)
            if key is not None:
                weight[key] = weight.get(key, 0.0) + fields.weights.get(a.role, 1.0)
                votes[key] = votes.get(key, 0) + 1
        if not weight:
            return False
        if min_votes is not None:
            return max(votes.values()) >= min_votes
        return threshold is not None and max(weight.values()) / total + THRESHOLD_TOLERANCE >= threshold

    return settled
