"""The OpenAI chat-completions wire format chorus accepts and returns.

A request for a hosted model is forwarded whole to vLLM's own OpenAI layer (api.hosted), which
honours every field it knows. A request for a pattern is parsed strictly here: unknown or
wrongly typed fields and fields the pattern cannot honour get a 400 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from cluster.errors import Unsupported
from orchestrator.core.budget import Budget
from orchestrator.core.schema import ChatRequest, Reply
from orchestrator.core.trace import Trace
from serving.types import JsonSchema, Message


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = Field(None, description="Accepted for compatibility; patterns do not use it.")

    def to_message(self) -> Message:
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        role = "system" if self.role == "developer" else self.role
        return Message(role=role, content=content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False
    continuous_usage_stats: StrictBool = False


TraceMode = Literal["full", "summary", "none"]


class ChorusOptions(BaseModel):
    """chorus's own request fields, sent as `extra_body={"chorus": {...}}` from the openai client."""

    model_config = ConfigDict(extra="forbid")
    budget: Budget | None = None
    priority: int = Field(0, ge=-100, le=100)
    timeout_s: float | None = Field(
        None, gt=0.0, le=86_400.0, description="Deadline in seconds; past it chorus aborts the request (504)."
    )
    trace: TraceMode = Field(
        "summary",
        description="full: every step with its output; summary: steps without their text; none: no trace.",
    )
    progress: StrictBool = Field(
        False, description="Streamed patterns: send a `chorus` progress event as each earlier step finishes."
    )


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: text, any JSON object, or JSON under a schema."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a json_schema: {name, schema}")
        return self

    def constraint(self) -> JsonSchema | None:
        if self.type == "text":
            return None
        if self.type == "json_object" or self.json_schema is None:
            return JsonSchema(json_schema={"type": "object"})
        return JsonSchema(json_schema=self.json_schema.schema_)


# Fields OpenAI defines that no pattern can honour: a pattern refuses them by name (400).
# Hosted models take them all (vLLM's own layer serves those requests).
NOT_FOR_PATTERNS: dict[str, str] = {
    "tools": "patterns do not call tools; send tools to a hosted model",
    "tool_choice": "patterns do not call tools; send tool_choice to a hosted model",
    "parallel_tool_calls": "patterns do not call tools",
    "functions": "patterns do not call tools",
    "function_call": "patterns do not call tools",
    "logprobs": "a pattern's answer is combined from several calls and has no token logprobs; ask a hosted model",
    "top_logprobs": "a pattern's answer has no token logprobs; ask a hosted model",
    "presence_penalty": "penalties are not applied to pattern steps; ask a hosted model",
    "frequency_penalty": "penalties are not applied to pattern steps; ask a hosted model",
    "logit_bias": "logit_bias is not applied to pattern steps; ask a hosted model",
}


class ChatCompletionRequest(BaseModel):
    """A chat request for a *pattern*. Strict: an unknown field, a wrongly typed one, or a field
    the pattern cannot honour is a 400 that names it, never silently dropped."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    messages: list[WireMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = Field(None, description="Accepted for compatibility; does not change the answer.")
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: Any = None
    functions: Any = None
    function_call: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    logit_bias: Any = None
    chorus: ChorusOptions = ChorusOptions()

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        # JSON may carry a lone surrogate ("\ud800"); no tokenizer can encode it.
        where = surrogate_at(data, ())
        if where is not None:
            raise ValueError(f"{'.'.join(where) or 'body'}: text is not valid Unicode (a lone surrogate)")
        return data

    def refuse_unhonoured(self) -> None:
        """400 naming the first field no pattern honours (a default-valued one is not refused)."""
        for name, why in NOT_FOR_PATTERNS.items():
            value = getattr(self, name)
            if value is not None and value is not False and value != 0:
                raise Unsupported(name, why)
        if self.n is not None and self.n != 1:
            raise Unsupported("n", "a pattern returns one answer; send several requests for several answers")

    def to_request(self, priority_floor: int = 0) -> ChatRequest:
        self.refuse_unhonoured()
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return ChatRequest(
            model=self.model,
            messages=[m.to_message() for m in self.messages],
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=stop,
            budget=self.chorus.budget,
            priority=max(self.chorus.priority, priority_floor),
            timeout_s=self.chorus.timeout_s,
            response_format=self.response_format.constraint() if self.response_format else None,
        )


def trace_json(trace: Trace, mode: TraceMode) -> dict[str, Any] | None:
    """The trace as a response carries it: whole, without the steps' text, or not at all."""
    if mode == "none":
        return None
    if mode == "full":
        return trace.model_dump(mode="json")
    return trace.model_dump(mode="json", exclude={"steps": {"__all__": {"output"}}})


def with_trace(body: dict[str, Any], trace: Trace | None, mode: TraceMode) -> dict[str, Any]:
    """A hosted model's response body (vLLM's) with chorus's trace added under `chorus`."""
    if trace is None or mode == "none":
        return body
    return body | {"chorus": {"trace": trace_json(trace, mode)}}


def surrogate_at(value: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The path of the first string holding a lone surrogate, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = surrogate_at(key, path) if isinstance(key, str) else None
        found = found if found is not None else surrogate_at(item, (*path, str(key)))
        if found is not None:
            return found
    return None


def usage_json(reply: Reply) -> dict[str, Any]:
    u = reply.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


def completion_json(reply: Reply, trace: TraceMode = "summary") -> dict[str, Any]:
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage_json(reply),
        "chorus": {"trace": trace_json(reply.trace, trace)},
    }


def chunk_json(
    chunk_id: str, created: int, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
