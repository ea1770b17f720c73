"""The record every answer carries: one `Step` per model call, totals, and the pattern's decisions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Step(BaseModel):
    index: int
    name: str = Field(description="What the pattern called this step: 'classify', 'member[2]', 'layer1[0]'…")
    role: str
    model: str
    replica: int = -1
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    queue_s: float = Field(0.0, description="Waiting for a slot on the replica.")
    run_s: float = Field(0.0, description="Inside the engine.")
    latency_s: float = Field(0.0, description="Wall time of the call as the orchestrator saw it.")
    engine_seconds: float = Field(0.0, description="This step's share of its engine's busy time (batch-shared).")
    gpu_seconds: float = Field(0.0, description="engine_seconds × GPUs the replica holds (0 on CPU).")
    output: str = ""
    error: str | None = None


class Totals(BaseModel):
    model_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    wall_s: float = 0.0
    engine_seconds: float = 0.0
    gpu_seconds: float = 0.0
    early_stop: bool = Field(False, description="The pattern stopped before its last stage (decision `early_stop`).")
    escalated: bool = Field(False, description="The pattern escalated to a stronger role (decision `escalated`).")


class Trace(BaseModel):
    pattern: str = Field(description="The pattern (or hosted model) the request named.")
    kind: str
    request_id: str | None = Field(None, description="The request's id (HTTP x-request-id), also in the logs.")
    steps: list[Step] = Field(default_factory=list)
    decisions: dict[str, Any] = Field(
        default_factory=dict, description="What the pattern chose and why: route, agreement, escalation, early stop…"
    )
    totals: Totals = Totals()

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
            # Patterns record these decisions as False, or as a description of what they took.
            early_stop=bool(self.decisions.get("early_stop", False)),
            escalated=bool(self.decisions.get("escalated", False)),
        )
