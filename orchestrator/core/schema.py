"""The orchestrator's public schema: a chat request, its reply, the catalog and the fleet's status.

Transport-free pydantic models: the HTTP app, the Ray actor, the Python client and batch jobs
all speak them.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.budget import Budget
from orchestrator.core.trace import Trace
from serving.types import JsonSchema, Message, Usage


class ReplicaStatus(BaseModel):
    """One replica of a hosted model as `chorus status` and the health details show it."""

    model: str
    replica: int
    ok: bool
    detail: str = ""
    running: int = 0
    waiting: int = 0
    capacity: int = 0
    completed: int = 0
    failed: int = 0
    tokens_per_s: float = 0.0
    gpus: float = 0.0
    gpu_ids: list[str] = []
    node_id: str = ""
    state: Literal["healthy", "starting", "restarting", "failed"] = "healthy"
    restarts: int = 0
    engine: str = ""  # the engine's own state: idle, starting, ready, failed
    engine_running: int = 0
    probe_s: float | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] | None = None
    budget: Budget | None = None
    priority: int = Field(0, description="Lower is served first: interactive 0, batch jobs 10.")
    timeout_s: float | None = Field(
        None, gt=0.0, le=86_400.0, description="Deadline: past it the request is aborted (504); None: server.request_timeout_s."
    )
    response_format: JsonSchema | None = Field(
        None, description="Constrains the pattern's final step (the answer) to JSON under this schema."
    )
    request_id: str | None = Field(
        None, description="The caller's id (HTTP x-request-id); prefixes the engine request ids and is in the trace."
    )


class Reply(BaseModel):
    id: str
    model: str
    text: str
    finish_reason: str
    usage: Usage
    trace: Trace
    created: int

    @classmethod
    def of(cls, model: str, text: str, finish_reason: str, trace: Trace) -> Reply:
        """A reply whose usage is its (closed) trace's totals."""
        t = trace.totals
        return cls(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            model=model,
            text=text,
            finish_reason=finish_reason,
            usage=Usage(prompt_tokens=t.prompt_tokens, completion_tokens=t.completion_tokens, cached_tokens=t.cached_tokens),
            trace=trace,
            created=int(time.time()),
        )


class CatalogEntry(BaseModel):
    id: str
    kind: Literal["pattern", "model"]
    pattern_kind: str | None = None
    description: str = ""
    # A hosted model whose engine serves vLLM's own OpenAI layer (a live vLLM engine, not
    # recorded answers): its OpenAI requests go to that layer whole.
    openai_layer: bool = False


class Delta(BaseModel):
    text: str


class Progress(BaseModel):
    """A streamed pattern's earlier step finished (sent before the final step's tokens)."""

    step: str
    role: str
    model: str
    ok: bool
    latency_s: float


class FleetStatus(BaseModel):
    ok: bool
    hosts: list[ReplicaStatus]
