"""The record every answer carries: one `Step` per model call, totals, and the pattern's decision.

Its JSON is public (the `chorus.trace` of an HTTP reply) and versioned by `schema_version`;
docs/trace.md documents every field and a unit test keeps it in sync with these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SerializeAsAny

from orchestrator.core.decisions import DecisionBase

TRACE_SCHEMA_VERSION: Literal[2] = 2


class Step(BaseModel):
    """One model call a pattern made."""

    index: int = Field(description="Position in the trace's steps, in the order the calls started.")
    name: str = Field(description="What the pattern called this step: 'classify', 'member[2]', 'layer1[0]'…")
    role: str = Field(description="The role the pattern called.")
    model: str = Field(description="The deployed model the role is bound to.")
    replica: int = Field(default=-1, description="Which replica of the model served the call (-1: none did).")
    prompt_tokens: int = Field(default=0, description="Tokens of the prompt.")
    completion_tokens: int = Field(default=0, description="Tokens generated.")
    cached_tokens: int = Field(default=0, description="Prompt tokens served from the engine's prefix cache.")
    queue_s: float = Field(default=0.0, description="Waiting for a slot on the replica.")
    run_s: float = Field(default=0.0, description="Inside the engine.")
    latency_s: float = Field(default=0.0, description="Wall time of the call as the orchestrator saw it.")
    engine_seconds: float = Field(
        default=0.0, description="This step's share of its engine's busy time (batch-shared)."
    )
    gpu_seconds: float = Field(default=0.0, description="engine_seconds × GPUs the replica holds (0 on CPU).")
    output: str = Field(default="", description="The text the model generated.")
    error: str | None = Field(default=None, description="Why the call failed; null when it succeeded.")


class Totals(BaseModel):
    """Sums over the steps, and the decision's outcome flags."""

    model_calls: int = Field(default=0, description="Steps, failed ones included.")
    failed_calls: int = Field(default=0, description="Steps with an error.")
    prompt_tokens: int = Field(default=0, description="Sum over the steps.")
    completion_tokens: int = Field(default=0, description="Sum over the steps.")
    cached_tokens: int = Field(default=0, description="Sum over the steps.")
    wall_s: float = Field(default=0.0, description="Wall time of the whole request as the orchestrator saw it.")
    engine_seconds: float = Field(default=0.0, description="Sum over the steps.")
    gpu_seconds: float = Field(default=0.0, description="Sum over the steps.")
    early_stop: bool = Field(
        default=False, description="The pattern stopped before its last stage (the decision's `early_stop`)."
    )
    escalated: bool = Field(
        default=False, description="The pattern escalated to a stronger role (the decision's `escalated`)."
    )


class Trace(BaseModel):
    """What a request did: its steps, what the pattern decided, and totals."""

    schema_version: Literal[2] = Field(
        default=TRACE_SCHEMA_VERSION, description="Version of this schema; 2 made the decision a typed model."
    )
    pattern: str = Field(description="The pattern (or hosted model) the request named.")
    kind: str = Field(description="The pattern's kind, or 'model' for a hosted model.")
    request_id: str | None = Field(None, description="The request's id (HTTP x-request-id), also in the logs.")
    steps: list[Step] = Field(default_factory=list, description="One per model call, in the order they started.")
    decision: SerializeAsAny[DecisionBase] | None = Field(
        default=None,
        description="What the pattern chose and why, as its kind's decision model (see docs/trace.md); "
        "null for a hosted model.",
    )
    totals: Totals = Field(default_factory=Totals, description="Filled in when the request ends.")

    def close(self, wall_s: float) -> None:
        ok = [s for s in self.steps if s.error is None]
        self.totals = Totals(
            model_calls=len(self.steps),
            failed_calls=len(self.steps) - len(ok),
            prompt_tokens=sum(s.prompt_tokens for s in self.steps),
            completion_tokens=sum(s.completion_tokens for s in self.steps),
            cached_tokens=sum(s.cached_tokens for s in self.steps),
            wall_s=wall_s,
            engine_seconds=sum(s.engine_seconds for s in self.steps),
            gpu_seconds=sum(s.gpu_seconds for s in self.steps),
            early_stop=self.decision is not None and self.decision.early_stop,
            escalated=self.decision is not None and self.decision.escalated,
        )
