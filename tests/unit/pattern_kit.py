"""Helpers for the pattern tests: a request, a reply's typed decision, a concurrency probe and a
deterministic embedder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

from orchestrator.core.decisions import DecisionBase
from orchestrator.core.schema import ChatRequest, Reply
from orchestrator.patterns import decision_of
from orchestrator.service.chorus import Chorus
from serving.types import GenerationRequest, Message
from tests.fakes.scripted_engine import Script, ScriptedEngine
from tests.unit.fixtures import scripted_chorus


def ask(text: str, model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content=text)])


D = TypeVar("D", bound=DecisionBase)


def decision(reply: Reply, model: type[D]) -> D:
    """The reply's decision read back through the decision union, as a client would, and checked to
    be the pattern's model."""
    parsed = decision_of(reply.trace)
    assert isinstance(parsed, model), f"expected a {model.__name__}, got {parsed!r}"
    return parsed


def last(req: GenerationRequest) -> str:
    return req.messages[-1].content


class InFlight:
    """Measures how many calls were inside the engines at once.

    Scripted engines record a call when it arrives and run the script when its simulated compute
    (`delay_s`) ends, so at script time `started - finished` is the number of calls in flight.
    """

    def __init__(self) -> None:
        self.engines: dict[str, ScriptedEngine] = {}
        self.finished = 0
        self.peak = 0

    def wrap(self, script: Script) -> Script:
        def probed(req: GenerationRequest) -> str | Exception:
            started = sum(len(e.calls) for e in self.engines.values())
            self.peak = max(self.peak, started - self.finished)
            self.finished += 1
            return script(req)

        return probed


class TopicEmbedder:
    """Vectors by the topic words a text contains: texts sharing a topic are similar, others not.

    A text naming no topic gets the zero vector (similar to nothing).
    """

    def __init__(self, topics: Sequence[str]) -> None:
        self.topics = list(topics)
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        out = []
        for text in texts:
            v = [1.0 if t in text else 0.0 for t in self.topics]
            # A little per-text variation so 'most central' has something to decide.
            v.append(0.1 * (len(text) % 7))
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v] if any(v[:-1]) else [0.0] * len(v))
        return out


def build(
    scripts: dict[str, Script],
    patterns: dict[str, Any],
    *,
    embedder: Any = None,
    delay_s: float = 0.0,
    probe: InFlight | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Chorus, dict[str, ScriptedEngine]]:
    """A scripted Chorus (one model per role), with an embedder and an optional concurrency probe."""
    if probe is not None:
        scripts = {role: probe.wrap(fn) for role, fn in scripts.items()}
    chorus, engines = scripted_chorus(scripts, patterns, delay_s=delay_s, extra=extra)
    if probe is not None:
        probe.engines = engines
    return Chorus(chorus.config, chorus.fleet, embedder=embedder), engines
