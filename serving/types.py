"""What crosses the engine boundary: a generation request, its result and stream chunks.

Plain pydantic models so they pickle across Ray and dump to JSON for traces.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Frozen):
    role: Literal["system", "user", "assistant"]
    content: str


class Choice(_Frozen):
    """Constrain the completion to exactly one of these strings."""

    kind: Literal["choice"] = "choice"
    options: list[str] = Field(min_length=1)


class Regex(_Frozen):
    """Constrain the completion to match this regular expression."""

    kind: Literal["regex"] = "regex"
    pattern: str = Field(min_length=1)


class JsonSchema(_Frozen):
    """Constrain the completion to a JSON document valid under this schema.

    Prefer closed schemas (enums, booleans, bounded strings): a weak model can loop on free
    strings or numbers until max_tokens.
    """

    kind: Literal["json"] = "json"
    json_schema: dict[str, Any]


Constraint = Annotated[Choice | Regex | JsonSchema, Field(discriminator="kind")]


class Sampling(_Frozen):
    max_tokens: int = Field(256, ge=1, le=131_072)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    logprobs: int | None = Field(
        None, ge=0, le=20, description="Return this many top alternatives per generated token."
    )


class Coalesce(_Frozen):
    """How a stream's pieces are batched before they cross Ray: the first piece leaves at once;
    after it a message leaves when it holds `max_items` pieces or has waited its window,
    whichever comes first. The window is `max_wait_s` (Ray Serve LLM's 50 ms) while a host
    streams to few callers. A host streaming to many widens every stream's window, so that
    together they send about `host_messages_per_s` messages a second (up to `max_busy_wait_s`):
    each message costs a fixed slice of CPU in the host, the orchestrator replica and Serve's
    proxy, and a fixed window makes that cost grow with the number of streams until the relays,
    not the engine, bound the tokens per second."""

    max_wait_s: float = Field(0.05, ge=0.0, le=1.0, description="Longest a piece after the first waits for company.")
    max_items: int = Field(64, ge=1, le=4096, description="Pieces per message at most.")
    host_messages_per_s: float | None = Field(
        250.0,
        gt=0,
        description="Messages a second a host's streams send together at most, by widening their window; "
        "None: the window never widens.",
    )
    max_busy_wait_s: float = Field(0.25, ge=0.0, le=2.0, description="The widest a busy host's window gets.")

    def window_s(self, streams: int) -> float:
        """The window of each of `streams` streams a host sends at once."""
        if self.host_messages_per_s is None:
            return self.max_wait_s
        widened = min(self.max_busy_wait_s, streams / self.host_messages_per_s)
        return max(self.max_wait_s, widened)


# Requests at this priority number or past it are batch work (batch jobs send theirs at it);
# interactive requests default to 0. A host lets batch work yield engine slots to interactive
# work (serving.host.admission.Yield).
BATCH_PRIORITY = 10


class GenerationRequest(_Frozen):
    messages: list[Message] = Field(min_length=1)
    sampling: Sampling = Sampling()
    constraint: Constraint | None = None
    priority: int = Field(0, description="Lower runs first when the engine's queue is full.")
    request_id: str | None = None
    coalesce: Coalesce | None = Field(None, description="How a stream of it is batched across Ray; None: the default.")


class Usage(_Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TokenLogprob(_Frozen):
    """The sampled token and the engine's top alternatives at one position (natural log)."""

    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class Result(_Frozen):
    text: str
    finish_reason: Literal["stop", "length", "abort"] = "stop"
    usage: Usage = Usage()
    logprobs: list[TokenLogprob] | None = None
    queue_s: float = Field(0.0, description="Time between arrival at the host and entry into the engine.")
    run_s: float = Field(0.0, description="Time inside the engine, first scheduling to last token.")
    engine_seconds: float = Field(
        0.0, description="This request's share of the engine's busy time: ∫ dt / requests in flight."
    )


class StreamChunk(_Frozen):
    """A text delta; the last chunk has `finish_reason`, the request's usage and (from a host)
    its queue, run and engine time, as `Result` has them."""

    delta: str
    finish_reason: Literal["stop", "length", "abort"] | None = None
    usage: Usage | None = None
    queue_s: float = 0.0
    run_s: float = 0.0
    engine_seconds: float = 0.0


# --- the OpenAI API of a hosted model, served by the engine's own OpenAI layer -----------------


class Endpoint(str, Enum):
    """An OpenAI endpoint a hosted model answers through its engine's OpenAI layer."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    TOKENIZE = "tokenize"
    DETOKENIZE = "detokenize"

    @property
    def path(self) -> str:
        return {
            Endpoint.CHAT: "/v1/chat/completions",
            Endpoint.COMPLETIONS: "/v1/completions",
            Endpoint.EMBEDDINGS: "/v1/embeddings",
            Endpoint.TOKENIZE: "/tokenize",
            Endpoint.DETOKENIZE: "/detokenize",
        }[self]

    @property
    def generates(self) -> bool:
        """True for the endpoints that generate tokens (and may stream)."""
        return self in (Endpoint.CHAT, Endpoint.COMPLETIONS)


class OpenAICall(_Frozen):
    """A raw OpenAI request body for one endpoint of a hosted model (`body["model"]` is its name)."""

    endpoint: Endpoint
    body: dict[str, Any]
    priority: int = Field(0, description="Lower runs first when the host's queue is full.")
    coalesce: Coalesce = Coalesce()


class OpenAIReply(_Frozen):
    """A whole (non-streamed) response body, as the engine's OpenAI layer wrote it."""

    body: dict[str, Any]


class SSEBatch(_Frozen):
    """One or more server-sent events (`data: …\n\n` each), concatenated, as the engine wrote them."""

    text: str


class Accounting(_Frozen):
    """The last item of every OpenAI call on a host: what it cost (for GPU-seconds and the trace)."""

    usage: Usage = Usage()
    queue_s: float = 0.0
    run_s: float = 0.0
    engine_seconds: float = 0.0


OpenAIPart = OpenAIReply | SSEBatch | Accounting
