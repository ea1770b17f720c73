"""The Ray Data source of a job's input: one read task per split, rows keeping their position.

Ray Data's own `read_json`/`read_parquet` lose the line a row came from, which resuming needs
(a row is done when an output line carries its position) and error lines report. This source
reads the splits the scan cut (byte ranges of a JSONL file, row ranges of a Parquet file) and
yields `{"line": position, "raw": JSON text}` blocks, leaving out rows already done, and whole
splits that are.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
from ray.data import Datasource, ReadTask
from ray.data.block import Block, BlockMetadata

from orchestrator.jobs.scan import FileKind, InputScan, Split


def read_split(scan: InputScan, split: Split, skip: frozenset[int]) -> pa.Table:
    """The rows of one split not in `skip`, as a table of (line, raw)."""
    lines: list[int] = []
    raws: list[str] = []
    if scan.kind is FileKind.jsonl:
        with open(scan.path, "rb") as f:
            f.seek(split.start)
            data = f.read(split.end - split.start)
        for n, raw in enumerate(data.split(b"\n"), split.first_line):
            text = raw.strip()
            if text and n not in skip:
                lines.append(n)
                # A line that is not UTF-8 still becomes a row, to get its own error line.
                raws.append(text.decode("utf-8", errors="replace"))
    else:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        table = pq.read_table(scan.path).slice(split.start, split.end - split.start)
        for n, row in enumerate(table.to_pylist(), split.first_line):
            if n not in skip:
                lines.append(n)
                raws.append(json.dumps(row, default=str))
    return pa.table({"line": pa.array(lines, pa.int64()), "raw": pa.array(raws, pa.string())})


class InputRows(Datasource):
    def __init__(self, scan: InputScan, skip: frozenset[int]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Ray's Datasource.__init__ is unannotated
        self.scan = scan
        done = sorted(skip)
        # Per split, the done positions inside it; whole splits already answered are not read at all.
        self.work = [(s, _within(done, s)) for s in scan.splits]
        self.work = [(s, d) for s, d in self.work if s.rows > len(d)]

    def get_name(self) -> str:
        return "ChorusInput"

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(s.end - s.start for s, _ in self.work) if self.scan.kind is FileKind.jsonl else None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list[ReadTask]:
        tasks = []
        scan = self.scan  # what each task pickles: the scan and its own split, not every split's skips
        for split, skip in self.work:

            def read(split: Split = split, skip: frozenset[int] = skip) -> Iterable[Block]:
                return [read_split(scan, split, skip)]

            meta = BlockMetadata(num_rows=split.rows - len(skip), size_bytes=None, input_files=None, exec_stats=None)
            tasks.append(ReadTask(read, meta))
        return tasks


def _within(done: list[int], split: Split) -> frozenset[int]:
    lo = bisect.bisect_left(done, split.first_line)
    hi = bisect.bisect_right(done, split.last_line)
    return frozenset(done[lo:hi])
