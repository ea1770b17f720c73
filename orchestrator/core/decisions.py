"""What a pattern decided, as a typed record: the base every pattern's decision model extends.

Each pattern module declares its own decision model (`VoteDecision`, `RouterDecision`…): a
subclass of `PatternDecisionBase` with a `kind: Literal["<pattern kind>"]` field. The union of them,
discriminated by `kind`, is assembled next to the pattern registry
(`orchestrator.patterns.PatternDecision`), because this core layer must not import patterns; the
trace therefore holds a `DecisionBase` and serializes it whole (`SerializeAsAny`), and readers turn
it back into its pattern's model with `orchestrator.patterns.parse_decision`.

The fields here are those every pattern has and the trace totals are computed from.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field


class FailedMember(BaseModel):
    """A model call the pattern answered without (an engine fault, recorded, not raised)."""

    model_config = ConfigDict(extra="forbid")

    step: str = Field(description="The failed step's name, as in the trace's steps: 'member[1]', 'layer3[0]'…")
    role: str = Field(description="The role the step called.")
    error: str = Field(description="What failed, as the engine reported it.")


class DecisionBase(BaseModel):
    """Fields every pattern's decision has."""

    # Extra fields are allowed here only: a trace read back from JSON (an HTTP body) holds its
    # decision as this base with the pattern's own fields kept as extras, so `parse_decision` can
    # still turn it into the pattern's model. The pattern models themselves forbid unknown fields.
    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="The pattern kind that decided; selects the decision model.")
    early_stop: bool = Field(default=False, description="The pattern stopped before its last stage.")
    escalated: bool = Field(default=False, description="The pattern escalated to a stronger role.")
    failed_members: list[FailedMember] = Field(
        default_factory=list, description="Calls that failed and that the pattern answered without, in order."
    )


class PatternDecisionBase(DecisionBase):
    """The base of the decision models patterns declare: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


Decided = TypeVar("Decided", bound=DecisionBase)
