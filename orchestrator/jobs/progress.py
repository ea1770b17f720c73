"""A job's progress: one JSON line on the job's stdout per shard written.

The job's log is the one channel that reaches every follower, local or remote (`chorus submit`,
`chorus jobs status`, `ray job logs`), so progress travels there: a line starting with
`PREFIX` and a `Progress` object in JSON. Nothing else in the log is read by chorus.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PREFIX = "chorus-job-progress "


class Progress(BaseModel):
    total: int = Field(description="Rows in the input.")
    done: int = Field(description="Rows with an output line, this run and earlier ones.")
    resumed: int = Field(default=0, description="Rows that already had an output line when this run started.")
    errors: int = Field(default=0, description="Rows answered with an error line.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    gpu_seconds: float = 0.0
    elapsed_s: float = Field(default=0.0, description="Since this run started.")
    in_flight: int = Field(default=0, description="The bound on requests in flight.")
    shards: int = 0
    state: Literal["running", "finished"] = "running"

    @property
    def rows_per_s(self) -> float:
        ran = self.done - self.resumed
        return ran / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rows_per_s
        return (self.total - self.done) / rate if rate > 0 else None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def line(self) -> str:
        return PREFIX + self.model_dump_json()

    def summary(self) -> str:
        eta = f"{self.eta_s:.0f}s" if self.eta_s is not None else "?"
        return (
            f"{self.done}/{self.total} rows, {self.rows_per_s:.1f} rows/s, ETA {eta}, "
            f"{self.tokens} tokens, {self.gpu_seconds:.1f} GPU-s, {self.errors} error(s)"
        )


def parse_progress(line: str) -> Progress | None:
    """The progress a log line carries, or None for any other line."""
    if not line.startswith(PREFIX):
        return None
    return Progress.model_validate_json(line[len(PREFIX) :])


def last_progress(log: str) -> Progress | None:
    found = None
    for line in log.splitlines():
        found = parse_progress(line) or found
    return found
