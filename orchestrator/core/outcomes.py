"""Outcomes of adaptive answers, stored durably: what each answer chose and, once the caller
says so (`POST /v1/chorus/feedback`), how good it was.

One SQLite file (default `$CHORUS_HOME/outcomes.sqlite`, `~/.chorus` without CHORUS_HOME);
processes on one machine share it (SQLite's own locking). The adaptive pattern reads the scored
outcomes back as per-label, per-pattern `Stats` to update its policy online.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scored:
    """The scored outcomes of one (label, pattern): count, sum of scores, GPU-seconds, calls."""

    n: int
    score: float
    gpu_s: float
    calls: float

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    response_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    pattern TEXT NOT NULL,
    gpu_s REAL NOT NULL,
    calls INTEGER NOT NULL,
    score REAL,
    created REAL NOT NULL,
    scored REAL
)
"""


def default_path() -> Path:
    return Path(os.environ.get("CHORUS_HOME", Path.home() / ".chorus")) / "outcomes.sqlite"


class OutcomeStore:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10.0)
        try:
            with db:  # commits, or rolls back on error
                yield db
        finally:
            db.close()

    def remember(self, response_id: str, label: str, pattern: str, gpu_s: float, calls: int) -> None:
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO outcomes (response_id, label, pattern, gpu_s, calls, created) VALUES (?,?,?,?,?,?)",
                (response_id, label, pattern, gpu_s, calls, time.time()),
            )

    def score(self, response_id: str, score: float) -> bool:
        """Record the caller's score (0–1) for an answer; False if the id is unknown."""
        with self._db() as db:
            cur = db.execute(
                "UPDATE outcomes SET score = ?, scored = ? WHERE response_id = ?", (score, time.time(), response_id)
            )
            return cur.rowcount == 1

    def stats(self) -> dict[str, dict[str, Scored]]:
        """Label → pattern → the scored outcomes' totals."""
        with self._db() as db:
            rows = db.execute(
                "SELECT label, pattern, COUNT(*), SUM(score), SUM(gpu_s), SUM(calls) FROM outcomes "
                "WHERE score IS NOT NULL GROUP BY label, pattern"
            ).fetchall()
        out: dict[str, dict[str, Scored]] = {}
        for label, pattern, n, score, gpu_s, calls in rows:
            out.setdefault(label, {})[pattern] = Scored(n, score or 0.0, gpu_s or 0.0, calls or 0)
        return out
