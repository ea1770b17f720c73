"""`RecordedEngine`: the Engine protocol over answers a real model gave once, replayed.

Recorded answers let any pattern whose roles have records be evaluated offline, at no GPU cost,
on what the user's real models actually answered. A record file is JSONL in either shape:
- one row per question with every model's answer (the shape of ../shared/quality):
  `{"id", "question", "options"?: [...], "answers": {model: text | null}, ...}`;
- one row per (question, model) answer (a batch job's output):
  `{"question", "options"?: [...], "model", "text" | "answer"}`.

A request is matched to its record by finding the recorded question in the prompt: every
pattern quotes the user's question verbatim at the start of a line (as the user message, or
after "Question:" in an escalation or a merge), so the engine looks up each prompt line's start
in an index of the questions' first lines, then checks the whole question (and its options)
occur in the prompt. Constrained steps (a classifier's label, a verifier's yes/no, a judge's
score) are not what was recorded: they raise `NotRecorded`, as does an unknown question, so a
role without records fails clearly instead of answering with the wrong text. Token counts are
estimated (≈ 4 characters a token); engine seconds are the completion at the real model's
assumed decode speed (`RecordedSpec.tokens_per_s`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cluster.errors import EngineError, NotRecorded
from cluster.spec import ModelSpec
from serving.engines.base import EngineHealth
from serving.types import GenerationRequest, Result, StreamChunk, Usage

CHARS_PER_TOKEN = 4.0
_KEY_CHARS = 80


def _squash(text: str) -> str:
    return " ".join(text.split())


def _line_key(text: str) -> str:
    return _squash(text)[:_KEY_CHARS]


@dataclass(frozen=True)
class Record:
    question: str
    options: tuple[str, ...]
    answers: dict[str, str]  # model → answer text ("" where the model gave none)


class RecordBook:
    """The records of one file, indexed by the first line of each question."""

    def __init__(self, records: Iterable[Record]) -> None:
        merged: dict[tuple[str, tuple[str, ...]], Record] = {}
        for r in records:
            key = (_squash(r.question), r.options)
            if key in merged:
                merged[key].answers.update(r.answers)
            else:
                merged[key] = Record(r.question, r.options, dict(r.answers))
        self.records = list(merged.values())
        self._index: dict[str, list[Record]] = {}
        for r in self.records:
            first = next((line for line in r.question.splitlines() if line.strip()), r.question)
            self._index.setdefault(_line_key(first), []).append(r)

    @staticmethod
    def load(path: str | Path) -> RecordBook:
        return _load(str(Path(path).resolve()))

    def models(self) -> set[str]:
        return {m for r in self.records for m in r.answers}

    def find(self, prompt: str) -> Record | None:
        """The record whose question (and options) the prompt quotes; the longest such question
        when several match (a question can begin with another's text)."""
        squashed = _squash(prompt)
        found: list[Record] = []
        for line in prompt.splitlines():
            for r in self._index.get(_line_key(line), ()):
                quoted = _squash(r.question) in squashed and all(_squash(o) in squashed for o in r.options)
                if quoted and r not in found:
                    found.append(r)
        if not found:
            return None
        return max(found, key=lambda r: (len(r.question), len(r.options)))


def _rows(path: str) -> Iterable[Record]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or "question" not in row:
                raise EngineError(f"{path}:{n}: a record needs a 'question' field")
            options = tuple(str(o) for o in row.get("options") or ())
            if "answers" in row:
                answers = {str(m): str(t or "") for m, t in dict(row["answers"]).items()}
            elif "model" in row:
                answers = {str(row["model"]): str(row.get("text", row.get("answer")) or "")}
            else:
                raise EngineError(f"{path}:{n}: a record needs 'answers' {{model: text}} or 'model' and 'text'")
            yield Record(str(row["question"]), options, answers)


@lru_cache(maxsize=16)
def _load(path: str) -> RecordBook:
    """One index per file per process, shared by every model that replays it."""
    try:
        return RecordBook(_rows(path))
    except OSError as exc:
        raise EngineError(f"cannot read recorded answers {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise EngineError(f"recorded answers {path} are not JSONL: {exc}") from None


class RecordedEngine:
    """Replays `spec.source`'s answers of `spec.recorded.answers_of` (default: the model's name)."""

    def __init__(self, spec: ModelSpec, **_: object) -> None:
        self.spec = spec
        self.recording = spec.recording()
        self.model = self.recording.answers_of or spec.name
        self._book: RecordBook | None = None
        self._answered = 0  # requests looked up (progress)

    async def start(self) -> dict[str, float]:
        book = RecordBook.load(self.spec.source)
        if self.model not in book.models():
            raise EngineError(
                f"'{self.spec.name}': {self.spec.source} holds no answers of {self.model!r} "
                f"(it has: {', '.join(sorted(book.models()))}); set recorded.answers_of"
            )
        self._book = book
        return {}

    def _answer(self, request: GenerationRequest) -> str:
        if self._book is None:
            raise EngineError(f"recorded engine '{self.spec.name}' used before start()")
        if request.constraint is not None:
            raise NotRecorded(
                f"'{self.spec.name}' replays recorded answers and cannot answer a constrained "
                f"({request.constraint.kind}) step such as a classifier, verifier or judge; bind that role to a live model"
            )
        prompt = "\n".join(m.content for m in request.messages)
        record = self._book.find(prompt)
        if record is None:
            raise NotRecorded(f"'{self.spec.name}' has no recorded answer for this prompt (its question is not in {self.spec.source})")
        if self.model not in record.answers:
            raise NotRecorded(f"'{self.spec.name}': {self.model!r} has no recorded answer to this question")
        return record.answers[self.model]

    def _result(self, request: GenerationRequest, text: str) -> Result:
        prompt_chars = sum(len(m.content) for m in request.messages)
        completion = round(len(text) / CHARS_PER_TOKEN)
        return Result(
            text=text,
            usage=Usage(prompt_tokens=round(prompt_chars / CHARS_PER_TOKEN), completion_tokens=completion),
            engine_seconds=completion / self.recording.tokens_per_s,
        )

    async def generate(self, request: GenerationRequest) -> Result:
        self._answered += 1
        return self._result(request, self._answer(request))

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        self._answered += 1
        result = self._result(request, self._answer(request))
        yield StreamChunk(delta=result.text, finish_reason=result.finish_reason, usage=result.usage)

    async def probe(self) -> None:
        # A replayed answer exists only for recorded questions: there is nothing to generate a
        # probe with, so the engine's health is the probe.
        health = await self.health()
        if not health.ok:
            raise EngineError(f"recorded engine '{self.spec.name}': {health.detail}")

    def progress(self) -> int:
        return self._answered

    def running(self) -> int:
        return 0  # a lookup answers at once: nothing is ever left running

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=self._book is not None, detail="" if self._book else "not started")

    async def shutdown(self) -> None:
        self._book = None
