"""Evaluation items: a question, its options, the gold answer, and the prompt chorus sends.

The file is JSONL in the shape of ../shared/quality (`id`, `question`, `options`?, `gold`,
`category`?; other fields such as `answers` are ignored here). Items split deterministically
into a calibration and a test half by a hash of their id, so a calibration run and the report
of its result never share a question.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cluster.errors import ConfigError
from orchestrator.patterns.kit.extract import LETTERS
from serving.types import Message


class Item(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    options: tuple[str, ...] = ()
    gold: str
    category: str = Field("", description="A label for per-label results and the adaptive policy.")

    def prompt(self) -> str:
        """The question as the user asks it; options listed as '(A) …' lines."""
        if not self.options:
            return self.question
        listed = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(self.options))
        return f"{self.question}\n\nOptions:\n{listed}"

    def messages(self) -> list[Message]:
        return [Message(role="user", content=self.prompt())]

    def labels(self) -> tuple[str, ...]:
        return LETTERS[: len(self.options)] if self.options else LETTERS


def load_items(path: str | Path, limit: int | None = None) -> list[Item]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines(): JSON strings may hold U+2028
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the data: {exc.strerror}") from None
    items = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(
                Item(
                    id=str(row.get("id", n)),
                    question=row["question"],
                    options=tuple(str(o) for o in row.get("options") or ()),
                    gold=str(row["gold"]),
                    category=str(row.get("category") or ""),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(str(path), f"line {n}", f"not an evaluation item ({exc}); need question and gold") from None
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise ConfigError(str(path), "", "no items")
    return items


def in_calibration_half(item: Item, seed: int = 0) -> bool:
    digest = hashlib.sha256(f"{seed}:{item.id}".encode()).digest()
    return digest[0] % 2 == 0


def split(items: Sequence[Item], seed: int = 0) -> tuple[list[Item], list[Item]]:
    """(calibration, test): disjoint halves, stable across runs and machines."""
    cal = [i for i in items if in_calibration_half(i, seed)]
    test = [i for i in items if not in_calibration_half(i, seed)]
    return cal, test
