"""The pass over the input before a job starts: is it usable, how many rows, where to split it.

It reads the file once, in the driver, without Ray: whole-file problems (missing, not JSONL,
empty, duplicate custom_ids, plain rows and no model) stop the job before any row runs; the
per-row ones (a malformed line, a model nobody serves) are counted and later answered by an
error line for that row. It also cuts the file into splits of `rows_per_split` rows (byte
ranges of a JSONL file, row ranges of a Parquet file) that the Ray Data source reads in parallel,
each row keeping its position (line number) so outputs can be keyed on it.
"""

from __future__ import annotations

import json
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cluster.errors import JobInputError
from orchestrator.jobs.formats import InputFormat, detect_format

SNIFF_ROWS = 20  # a file none of whose first 20 rows is a JSON object is not JSONL
SHOWN = 5  # line numbers quoted in a message


class FileKind(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"


class Split(BaseModel):
    start: int  # byte offset (JSONL) or row offset (Parquet)
    end: int
    first_line: int  # the 1-based position of the split's first physical line / row
    last_line: int  # ... and of its last (JSONL splits may hold blank lines between rows)
    rows: int

    def covers(self, line: int) -> bool:
        return self.first_line <= line <= self.last_line


class InputScan(BaseModel):
    path: str
    kind: FileKind
    format: InputFormat
    total: int
    splits: list[Split]
    models: dict[str, int]  # model named by rows → rows naming it
    unnamed: int  # rows naming no model (they take the job's --model)
    malformed: list[int]  # positions of lines that are not JSON objects (first few)
    malformed_count: int

    @property
    def unit(self) -> str:
        return "line" if self.kind is FileKind.jsonl else "row"


def _lines_text(lines: list[int]) -> str:
    return ", ".join(str(n) for n in lines[:SHOWN]) + (" …" if len(lines) > SHOWN else "")


def scan_input(path: str | Path, rows_per_split: int) -> InputScan:
    p = Path(path)
    if not p.is_file():
        raise JobInputError(f"input file {p} does not exist (paths are read where the job runs)")
    if p.suffix.lower() in (".parquet", ".pq"):
        return _scan_parquet(p, rows_per_split)
    return _scan_jsonl(p, rows_per_split)


class _Rows:
    """What the scan learns row by row, whatever the file kind."""

    def __init__(self) -> None:
        self.first: dict[str, Any] | None = None
        self.seen = 0
        self.malformed: list[int] = []
        self.malformed_count = 0
        self.ids: dict[str, list[int]] = {}
        self.models: Counter[str] = Counter()
        self.unnamed = 0

    def add(self, obj: Any, line: int) -> None:
        self.seen += 1
        if not isinstance(obj, dict):
            self.malformed_count += 1
            if len(self.malformed) < SHOWN:
                self.malformed.append(line)
            return
        if self.first is None:
            self.first = obj
        custom_id = obj.get("custom_id")
        if isinstance(custom_id, str):
            self.ids.setdefault(custom_id, []).append(line)
        inner = obj.get("body")
        body: dict[str, Any] = inner if isinstance(inner, dict) else obj
        model = body.get("model")
        if isinstance(model, str) and model:
            self.models[model] += 1
        else:
            self.unnamed += 1

    def check(self, p: Path, unit: str) -> InputFormat:
        if self.seen == 0:
            raise JobInputError(f"{p} has no rows")
        if self.first is None:
            raise JobInputError(f"{p} is not JSONL: no {unit} is a JSON object (e.g. {unit} {self.malformed[0]})")
        dups = {cid: lines for cid, lines in self.ids.items() if len(lines) > 1}
        if dups:
            shown = "; ".join(f"'{cid}' on {unit}s {_lines_text(lines)}" for cid, lines in list(dups.items())[:SHOWN])
            raise JobInputError(f"{p}: {len(dups)} custom_id(s) appear more than once ({shown}); custom_ids must be unique")
        return detect_format(self.first)


def _scan_jsonl(p: Path, rows_per_split: int) -> InputScan:
    rows = _Rows()
    splits: list[Split] = []
    start, first_line, in_split = 0, 1, 0
    offset, line = 0, 0
    last_row_line, last_row_end = 0, 0
    with open(p, "rb") as f:
        for raw in f:
            line += 1
            begin, offset = offset, offset + len(raw)
            text = raw.strip()
            if not text:
                continue  # blank lines are no rows
            if in_split == 0:
                start, first_line = begin, line
            if rows.seen < SNIFF_ROWS or rows.first is not None:
                try:
                    rows.add(json.loads(text), line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    rows.add(None, line)
            else:
                raise JobInputError(f"{p} is not JSONL: none of its first {SNIFF_ROWS} lines is a JSON object")
            in_split += 1
            if in_split == rows_per_split:
                splits.append(Split(start=start, end=offset, first_line=first_line, last_line=line, rows=in_split))
                in_split = 0
            last_row_line, last_row_end = line, offset
    if in_split:
        splits.append(Split(start=start, end=last_row_end, first_line=first_line, last_line=last_row_line, rows=in_split))
    fmt = rows.check(p, "line")
    return InputScan(
        path=str(p.resolve()),
        kind=FileKind.jsonl,
        format=fmt,
        total=rows.seen,
        splits=splits,
        models=dict(rows.models),
        unnamed=rows.unnamed,
        malformed=rows.malformed,
        malformed_count=rows.malformed_count,
    )


def _scan_parquet(p: Path, rows_per_split: int) -> InputScan:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        pf = pq.ParquetFile(p)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise JobInputError(f"{p} is not a Parquet file: {exc}") from None
    names = set(pf.schema_arrow.names)
    if not names & {"messages", "prompt"}:
        raise JobInputError(f"{p}: a Parquet input needs a `messages` or a `prompt` column (it has {', '.join(sorted(names))})")
    rows = _Rows()
    wanted = [c for c in ("custom_id", "model") if c in names]
    table = pf.read(columns=wanted) if wanted else None
    total = pf.metadata.num_rows
    columns = {c: table.column(c).to_pylist() for c in wanted} if table is not None else {}
    for i in range(total):
        rows.add({c: columns[c][i] for c in wanted}, i + 1)
    fmt = rows.check(p, "row")
    if fmt is not InputFormat.plain:
        raise JobInputError(f"{p}: Parquet inputs are plain rows (`messages` or `prompt`), not OpenAI batch lines")
    splits = [
        Split(
            start=s,
            end=min(total, s + rows_per_split),
            first_line=s + 1,
            last_line=min(total, s + rows_per_split),
            rows=min(total, s + rows_per_split) - s,
        )
        for s in range(0, total, rows_per_split)
    ]
    return InputScan(
        path=str(p.resolve()),
        kind=FileKind.parquet,
        format=fmt,
        total=total,
        splits=splits,
        models=dict(rows.models),
        unnamed=rows.unnamed,
        malformed=[],
        malformed_count=0,
    )
