"""The `Pattern` protocol, the request a pattern receives and the answer it returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

from serving.types import Message

if TYPE_CHECKING:
    from ..context import Context


class PatternRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    messages: list[Message] = Field(min_length=1)

    @property
    def question(self) -> str:
        """The last user message: what classifiers and judges look at."""
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return self.messages[-1].content


class Answer(BaseModel):
    text: str
    finish_reason: str = "stop"


class PatternSpecBase(BaseModel):
    """Fields every pattern definition has. Subclasses add `kind: Literal[...]` and their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field("", description="Shown by GET /v1/models and `chorus status`.")

    def roles(self) -> set[str]:
        """Every role this pattern may call; the config checks each is bound to a model."""
        raise NotImplementedError

    def build(self) -> Pattern:
        raise NotImplementedError


class Pattern(Protocol):
    async def run(self, request: PatternRequest, ctx: Context) -> Answer: ...
