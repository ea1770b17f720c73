"""The OpenAI chat-completions wire format chorus accepts and returns.

Requests are parsed leniently where OpenAI clients send fields that do not change the answer
(`user`, `metadata`…), and strictly where ignoring a field would silently change semantics
(`n` > 1, tools): those get a 400 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.core.budget import Budget
from orchestrator.core.schema import ChatRequest, Reply
from serving.types import Message


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def to_message(self) -> Message:
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        role = "system" if self.role == "developer" else self.role
        return Message(role=role, content=content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChorusOptions(BaseModel):
    """chorus's own request fields, sent as `extra_body={"chorus": {...}}` from the openai client."""

    model_config = ConfigDict(extra="forbid")
    budget: Budget | None = None
    priority: int = Field(0, ge=-100, le=100)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[WireMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Any] | None = None
    chorus: ChorusOptions = ChorusOptions()

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        # JSON may carry a lone surrogate ("\ud800"); no tokenizer can encode it.
        where = _surrogate_at(data, ())
        if where is not None:
            raise ValueError(f"{'.'.join(where) or 'body'}: text is not valid Unicode (a lone surrogate)")
        return data

    @field_validator("n")
    @classmethod
    def _single_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported; send several requests for several answers")
        return n

    @model_validator(mode="after")
    def _no_tools(self) -> ChatCompletionRequest:
        if self.tools:
            raise ValueError("tools are not supported by chorus patterns; remove `tools`")
        return self

    def to_request(self, priority_floor: int = 0) -> ChatRequest:
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
        )


def _surrogate_at(value: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The path of the first string holding a lone surrogate, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _surrogate_at(key, path) if isinstance(key, str) else None
        found = found if found is not None else _surrogate_at(item, (*path, str(key)))
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


def completion_json(reply: Reply) -> dict[str, Any]:
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
        "chorus": {"trace": reply.trace.model_dump(mode="json")},
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
