"""The output folder of a job: complete shards, the lock, and what is already done.

Exactly once, whatever instant the job is killed at:

- a shard is written to a hidden temporary file, flushed to disk, then renamed into place;
  a rename is atomic, so a `part-*.jsonl` file is either complete or absent;
- done-ness is derived only from complete shards (the `line` of each output line), never from
  a counter or a log that could disagree with them; temporary files left by a killed writer are
  deleted and their rows run again;
- one process writes: the job's driver, holding an exclusive `flock` on `.lock` for its whole
  life (the kernel releases it when the process dies, however it dies), so two jobs on one
  folder cannot both write.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from cluster.errors import JobError, JobOutputBusy
from orchestrator.jobs.output import RowOutcome, tally_of

PREFIX, SUFFIX, PARTIAL = "part-", ".jsonl", ".tmp"


class Tally(BaseModel):
    rows: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    gpu_seconds: float = 0.0

    def add(self, ok: bool, prompt_tokens: int, completion_tokens: int, gpu_seconds: float) -> None:
        self.rows += 1
        self.errors += 0 if ok else 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.gpu_seconds += gpu_seconds


class Done(BaseModel):
    """What complete shards hold: the input positions answered and their tally."""

    lines: set[int]
    tally: Tally
    shards: int


class ShardStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.run = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        self.seq = 0

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder for this process, or raise JobOutputBusy at once."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JobOutputBusy(
                    f"another job is writing to {self.folder}; wait for it to end (or stop it) before resubmitting"
                ) from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def shard_paths(self) -> list[Path]:
        return sorted(p for p in self.folder.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())

    def clear_partial(self) -> int:
        """Delete temporary files a killed writer left (call only while holding the lock)."""
        left = list(self.folder.glob(f".{PREFIX}*{PARTIAL}"))
        for path in left:
            path.unlink()
        return len(left)

    def done(self) -> Done:
        lines: set[int] = set()
        tally = Tally()
        paths = self.shard_paths()
        for path in paths:
            for n, raw in enumerate(path.read_text().splitlines(), 1):
                try:
                    record = json.loads(raw)
                    line = int(record["line"])
                except (ValueError, KeyError, TypeError):
                    raise JobError(f"{path.name} line {n} is not a chorus output line; move it out of {self.folder}") from None
                if line in lines:
                    raise JobError(f"input position {line} is answered twice in {self.folder}; the folder was edited by hand")
                lines.add(line)
                tally.add(*tally_of(record))
        return Done(lines=lines, tally=tally, shards=len(paths))

    def write(self, outcomes: Iterable[RowOutcome]) -> Path:
        """Write one shard atomically; its lines in input order."""
        ordered = sorted(outcomes, key=lambda o: o.line)
        self.seq += 1
        name = f"{PREFIX}{self.run}-{self.seq:05d}{SUFFIX}"
        final, partial = self.folder / name, self.folder / f".{name}{PARTIAL}"
        with open(partial, "w", encoding="utf-8") as f:
            f.writelines(o.text + "\n" for o in ordered)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, final)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash of the machine too
        finally:
            os.close(dir_fd)
        return final
