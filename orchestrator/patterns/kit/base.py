"""The `Pattern` protocol, the request a pattern receives, the answer it returns, and what a spec
gets to build its pattern with (`BuildEnv`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

from serving.types import Message

if TYPE_CHECKING:
    from orchestrator.core.context import Context
    from orchestrator.patterns.kit.embedding import Embedder


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


class Pattern(Protocol):
    async def run(self, request: PatternRequest, ctx: Context) -> Answer: ...


@dataclass(frozen=True)
class BuildEnv:
    """What a spec may use to build its pattern, beyond its own fields.

    `patterns` and `specs` hold the other configured patterns this spec `uses()` (already built:
    `orchestrator.patterns.kit.assembly.build_patterns` builds in dependency order). `embedder` is the
    one sentence embedder a `Chorus` shares between its patterns; `None` lets a pattern that needs
    one create its own lazily loading default.
    """

    patterns: Mapping[str, Pattern] = field(default_factory=lambda: MappingProxyType({}))
    specs: Mapping[str, PatternSpecBase] = field(default_factory=lambda: MappingProxyType({}))
    embedder: Embedder | None = None


class PatternSpecBase(BaseModel):
    """Fields every pattern definition has. Subclasses add `kind: Literal[...]` and their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field("", description="Shown by GET /v1/models and `chorus status`.")

    def roles(self) -> set[str]:
        """Every role this pattern may call; the config checks each is bound to a model."""
        raise NotImplementedError

    def uses(self) -> set[str]:
        """Names of other configured patterns this one runs (only `adaptive` has any)."""
        return set()

    def max_calls(self) -> int:
        """Model calls this pattern makes at most for one request (what `adaptive` budgets with)."""
        raise NotImplementedError

    def build(self, env: BuildEnv | None = None) -> Pattern:
        raise NotImplementedError
