"""Exactly once without Ray: shards are atomic, done-ness comes from complete shards only, a run
stopped at any point and run again answers every row once, and one writer holds the folder."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cluster.errors import JobError, JobOutputBusy
from orchestrator.jobs.caller import RowAnswerer
from orchestrator.jobs.formats import InputFormat, RowRules
from orchestrator.jobs.output import RowOutcome
from orchestrator.jobs.scan import scan_input
from orchestrator.jobs.shards import ShardStore
from orchestrator.jobs.source import InputRows, read_split
from tests.unit.fixtures import scripted_chorus

N = 50


def make_input(tmp_path: Path) -> Path:
    p = tmp_path / "in.jsonl"
    lines = []
    for i in range(N):
        body = {"model": "single", "messages": [{"role": "user", "content": f"q{i}"}]}
        lines.append(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}))
    p.write_text("\n".join(lines) + "\n")
    return p


def run(input_path: Path, out: Path, *, stop_after: int | None = None) -> int:
    """The driver's loop without Ray: read the splits not done, answer them, one shard each."""
    chorus, _ = scripted_chorus({"generalist": lambda req: "ok"}, {"single": {"kind": "single", "role": "generalist"}})
    scan = scan_input(input_path, rows_per_split=7)
    answerer = RowAnswerer(chorus, RowRules(format=InputFormat.openai), in_flight=4)
    store = ShardStore(out)
    written = 0
    with store.locked():
        store.clear_partial()
        source = InputRows(scan, frozenset(store.done().lines))
        for split, skip in source.work:
            if stop_after is not None and written == stop_after:
                # Killed while writing the next shard: only its temporary file exists.
                (out / f".part-killed-{written}.jsonl.tmp").write_text('{"line": 1}\n')
                return written
            table = read_split(scan, split, skip)
            lines, raws = table.column("line").to_pylist(), table.column("raw").to_pylist()
            store.write(asyncio.run(answerer.answer_all(lines, raws)))
            written += 1
    return written


def output_lines(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(out.glob("part-*.jsonl")) for line in p.read_text().splitlines()]


def test_a_run_stopped_mid_way_and_run_again_answers_every_row_once(tmp_path):
    src, out = make_input(tmp_path), tmp_path / "out"
    assert run(src, out, stop_after=3) == 3
    assert len(output_lines(out)) == 21  # three shards of 7; the partial one does not count
    assert ShardStore(out).done().lines == set(range(1, 22))
    assert run(src, out) == 5  # only the 29 remaining rows, in the 5 splits that hold them
    lines = output_lines(out)
    assert len(lines) == N
    assert sorted(r["custom_id"] for r in lines) == sorted(f"c{i}" for i in range(N))
    assert sorted(r["line"] for r in lines) == list(range(1, N + 1))
    assert not list(out.glob(".*.tmp"))
    assert run(src, out) == 0  # nothing left to do


def test_done_counts_tokens_and_errors_of_complete_shards(tmp_path):
    store = ShardStore(tmp_path)
    ok = {"line": 1, "response": {"status_code": 200, "body": {"usage": {"prompt_tokens": 5, "completion_tokens": 2}, "chorus": {"trace": {"totals": {"gpu_seconds": 0.5}}}}}}
    bad = {"line": 2, "response": {"status_code": 404, "body": {"error": {}}}}
    store.write([RowOutcome(line=1, text=json.dumps(ok), ok=True), RowOutcome(line=2, text=json.dumps(bad), ok=False)])
    done = store.done()
    assert done.lines == {1, 2} and done.shards == 1
    t = done.tally
    assert (t.rows, t.errors, t.prompt_tokens, t.completion_tokens, t.gpu_seconds) == (2, 1, 5, 2, 0.5)


def test_a_row_answered_twice_is_refused_not_counted(tmp_path):
    store = ShardStore(tmp_path)
    store.write([RowOutcome(line=3, text='{"line": 3}', ok=True)])
    store.write([RowOutcome(line=3, text='{"line": 3}', ok=True)])
    with pytest.raises(JobError, match="answered twice"):
        store.done()


def test_shard_lines_are_written_in_input_order(tmp_path):
    store = ShardStore(tmp_path)
    path = store.write([RowOutcome(line=n, text=json.dumps({"line": n}), ok=True) for n in (5, 2, 9)])
    assert [json.loads(x)["line"] for x in path.read_text().splitlines()] == [2, 5, 9]


def test_one_writer_per_output_folder(tmp_path):
    second = ShardStore(tmp_path)
    with ShardStore(tmp_path).locked(), pytest.raises(JobOutputBusy, match="another job is writing"), second.locked():
        pass
    with ShardStore(tmp_path).locked():  # released when the holder ends
        pass
