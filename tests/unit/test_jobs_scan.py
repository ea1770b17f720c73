"""The pass before a job starts: whole-file errors, per-row counts, and splits that keep positions."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.errors import JobInputError
from orchestrator.jobs.formats import InputFormat
from orchestrator.jobs.scan import FileKind, scan_input
from orchestrator.jobs.source import read_split


def batch_line(i: int, model: str = "router") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": f"q{i}"}]}
    return json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})


def write(tmp_path: Path, lines: list[str], name: str = "in.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_splits_cover_every_row_once_and_keep_line_numbers(tmp_path):
    lines = [batch_line(i) for i in range(10)]
    lines.insert(4, "")  # a blank line is no row, but counts as a line
    lines.insert(8, "{broken")
    p = write(tmp_path, lines)
    scan = scan_input(p, rows_per_split=3)
    assert scan.kind is FileKind.jsonl and scan.format is InputFormat.openai
    assert scan.total == 11 and scan.malformed == [9] and scan.malformed_count == 1
    assert [s.rows for s in scan.splits] == [3, 3, 3, 2]
    read = [read_split(scan, s, frozenset()) for s in scan.splits]
    positions = [n for t in read for n in t.column("line").to_pylist()]
    assert positions == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    raws = [r for t in read for r in t.column("raw").to_pylist()]
    assert json.loads(raws[4])["custom_id"] == "c4" and raws[7] == "{broken"


def test_a_split_leaves_out_done_rows(tmp_path):
    scan = scan_input(write(tmp_path, [batch_line(i) for i in range(6)]), rows_per_split=6)
    table = read_split(scan, scan.splits[0], frozenset({2, 5}))
    assert table.column("line").to_pylist() == [1, 3, 4, 6]


def test_models_and_unnamed_rows_are_counted(tmp_path):
    lines = [batch_line(0, "router"), batch_line(1, "router"), batch_line(2, "nope")]
    lines.append(json.dumps({"custom_id": "c3", "body": {"messages": [{"role": "user", "content": "x"}]}}))
    scan = scan_input(write(tmp_path, lines), 10)
    assert scan.models == {"router": 2, "nope": 1} and scan.unnamed == 1


def test_not_jsonl_is_refused_before_the_job(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text("a,b,c\n" * 30)
    with pytest.raises(JobInputError, match="not JSONL"):
        scan_input(p, 10)
    with pytest.raises(JobInputError, match="does not exist"):
        scan_input(tmp_path / "missing.jsonl", 10)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(JobInputError, match="no rows"):
        scan_input(empty, 10)


def test_duplicate_custom_ids_are_refused_with_their_lines(tmp_path):
    lines = [batch_line(0), batch_line(1), batch_line(0)]
    with pytest.raises(JobInputError, match=r"'c0' on lines 1, 3"):
        scan_input(write(tmp_path, lines), 10)


def test_plain_jsonl_and_parquet(tmp_path):
    scan = scan_input(write(tmp_path, [json.dumps({"prompt": f"p{i}"}) for i in range(5)]), 2)
    assert scan.format is InputFormat.plain and scan.total == 5 and scan.unnamed == 5
    p = tmp_path / "in.parquet"
    pq.write_table(pa.table({"prompt": [f"p{i}" for i in range(7)], "custom_id": [f"r{i}" for i in range(7)]}), p)
    scan = scan_input(p, 3)
    assert scan.kind is FileKind.parquet and scan.unit == "row" and scan.total == 7
    assert [(s.first_line, s.last_line) for s in scan.splits] == [(1, 3), (4, 6), (7, 7)]
    table = read_split(scan, scan.splits[1], frozenset({5}))
    assert table.column("line").to_pylist() == [4, 6]
    assert json.loads(table.column("raw").to_pylist()[1]) == {"prompt": "p5", "custom_id": "r5"}
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": ["x"]}), bad)
    with pytest.raises(JobInputError, match="`messages` or a `prompt` column"):
        scan_input(bad, 3)
