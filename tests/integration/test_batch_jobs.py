"""Batch jobs as Ray Jobs on the session's chorus: OpenAI batch files over two patterns, a job
killed mid-way and resubmitted, `ray job submit` of the same entry point, and interactive
requests while a job runs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from orchestrator.jobs import submit as jobs
from orchestrator.jobs.progress import Progress

pytestmark = pytest.mark.integration

ROWS = 500
JOB_DEADLINE_S = 300


def batch_file(path: Path, rows: int = ROWS) -> Path:
    with open(path, "w") as f:
        for i in range(rows):
            body = {
                "model": "single" if i % 2 else "router",
                "messages": [{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}],
                "max_tokens": 4,
            }
            f.write(json.dumps({"custom_id": f"q-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
    return path


def outputs(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(out.glob("part-*.jsonl")) for line in p.read_text().splitlines()]


@pytest.fixture(scope="module")
def server(chorus_server, job_server: str) -> jobs.JobServer:
    return jobs.JobServer(JobSubmissionClient(job_server), job_server, local=True)


def start(server: jobs.JobServer, src: Path, out: Path, model: str | None = None) -> str:
    argv = jobs.job_argv(str(src), str(out), model, shard_rows=25, python=sys.executable)
    return jobs.submit(server, argv, input=str(src), out=str(out), model=model)


def test_500_rows_over_two_patterns_each_answered_once_while_interactive_requests_succeed(
    server, openai_client, tmp_path, caplog
):
    src, out = batch_file(tmp_path / "in.jsonl"), tmp_path / "out"
    job_id = start(server, src, out)
    interactive: list[tuple[int, str, float]] = []

    def on_progress(p: Progress) -> None:
        # Mid-job (rows done, rows left), an interactive request goes through the same fleet.
        if not interactive and 0 < p.done < p.total:
            t0 = time.perf_counter()
            r = openai_client.chat.completions.create(
                model="router", messages=[{"role": "user", "content": "2+2?"}], max_tokens=4
            )
            interactive.append((p.done, r.choices[0].finish_reason, time.perf_counter() - t0))

    with caplog.at_level(logging.INFO):
        status = jobs.follow(server, job_id, on_progress, lambda line: None, timeout_s=JOB_DEADLINE_S)
    assert status == JobStatus.SUCCEEDED, server.client.get_job_logs(job_id)[-3000:]
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("ray.dashboard")]  # no SDK chatter
    lines = outputs(out)
    assert len(lines) == ROWS
    assert sorted(r["custom_id"] for r in lines) == sorted(f"q-{i}" for i in range(ROWS))
    assert all(r["response"]["status_code"] == 200 and r["error"] is None for r in lines)
    by_id = {r["custom_id"]: r["response"]["body"] for r in lines}
    assert by_id["q-0"]["model"] == "router" and by_id["q-1"]["model"] == "single"
    assert by_id["q-0"]["chorus"]["trace"]["totals"]["model_calls"] == 2  # classify + answer
    assert by_id["q-1"]["usage"]["completion_tokens"] <= 4
    assert interactive and interactive[0][1] in {"stop", "length"}
    final = jobs.last_progress_of(server, job_id)
    assert final is not None and final.state == "finished" and final.done == ROWS and final.errors == 0
    assert final.in_flight == 32  # tiny (16) + tiny-b (16): the models of router and single


def test_a_job_killed_after_some_shards_and_resubmitted_ends_with_exactly_500_lines(server, tmp_path):
    src, out = batch_file(tmp_path / "in.jsonl"), tmp_path / "out"
    job_id = start(server, src, out)
    killed: list[int] = []

    def on_progress(p: Progress) -> None:
        if not killed and p.shards >= 3 and p.done < p.total:
            pid = int(server.client.get_job_info(job_id).driver_info.pid)
            os.kill(pid, signal.SIGKILL)  # no clean-up of any kind: the worst instant is any instant
            killed.append(p.done)

    status = jobs.follow(server, job_id, on_progress, lambda line: None, timeout_s=JOB_DEADLINE_S)
    assert killed and status == JobStatus.FAILED
    before = outputs(out)
    assert killed[0] <= len(before) < ROWS

    again = start(server, src, out)
    status = jobs.follow(server, again, lambda p: None, lambda line: None, timeout_s=JOB_DEADLINE_S)
    assert status == JobStatus.SUCCEEDED, server.client.get_job_logs(again)[-3000:]
    lines = outputs(out)
    assert len(lines) == ROWS
    assert len({r["custom_id"] for r in lines}) == ROWS and len({r["line"] for r in lines}) == ROWS
    assert f"resuming: {len(before)} row(s) already answered" in server.client.get_job_logs(again)
    final = jobs.last_progress_of(server, again)
    assert final is not None and final.resumed == len(before) and final.done == ROWS
    assert not list(out.glob(".*.tmp"))


def test_ray_job_submit_runs_the_same_entry_point(server, job_server, tmp_path):
    src, out = tmp_path / "plain.jsonl", tmp_path / "out"
    src.write_text("".join(json.dumps({"prompt": f"Say {i}", "max_tokens": 3}) + "\n" for i in range(30)) + "{broken\n")
    env = {**os.environ}
    cmd = [str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", job_server, "--no-wait"]

    def submit(*args: str) -> str:
        job_id = f"ray-cli-{time.monotonic_ns()}"
        entry = [sys.executable, "-m", "orchestrator.jobs.run", str(src), "--out", str(out), *args]
        done = subprocess.run([*cmd, "--submission-id", job_id, "--", *entry], check=False, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return job_id

    job_id = submit("--model", "single")
    status = jobs.follow(server, job_id, lambda p: None, lambda line: None, timeout_s=JOB_DEADLINE_S)
    assert status == JobStatus.SUCCEEDED, server.client.get_job_logs(job_id)[-3000:]
    lines = sorted(outputs(out), key=lambda r: r["line"])
    assert len(lines) == 31
    assert [r["custom_id"] for r in lines[:30]] == [f"line-{i}" for i in range(1, 31)]
    assert all(r["response"]["status_code"] == 200 for r in lines[:30])
    assert lines[30]["response"] is None and "line 31" in lines[30]["error"]["message"]

    # An unknown --model stops the job before any row runs, saying why.
    bad = submit("--model", "nope")
    status = jobs.follow(server, bad, lambda p: None, lambda line: None, timeout_s=JOB_DEADLINE_S)
    assert status == JobStatus.FAILED
    assert "The model 'nope' does not exist" in server.client.get_job_logs(bad)
    assert len(outputs(out)) == 31


def test_hosted_model_rows_speak_the_whole_api_tools_logprobs_completions_and_embeddings(server, tmp_path):
    """A batch line for a hosted model gets what the HTTP API gives it: vLLM's own OpenAI layer,
    through the same fleet at batch priority, with the trace added."""
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
        "required": ["city"], "additionalProperties": False}}}
    lines = [
        ("tool", "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "Weather in Rome?"}],
                                          "tools": [weather], "max_tokens": 200,
                                          "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        ("n2", "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                        "n": 2, "temperature": 1.0, "logprobs": True, "top_logprobs": 2, "max_tokens": 3}),
        ("text", "/v1/completions", {"model": "tiny", "prompt": "Once upon", "max_tokens": 3}),
        ("vec", "/v1/embeddings", {"model": "tiny-embed", "input": ["a", "b"]}),
        ("refused", "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                             "top_logprobs": 2}),  # vLLM: top_logprobs needs logprobs
        ("pattern", "/v1/completions", {"model": "single", "prompt": "hi"}),
    ]
    src, out = tmp_path / "hosted.jsonl", tmp_path / "out"
    src.write_text("".join(json.dumps({"custom_id": c, "method": "POST", "url": u, "body": b}) + "\n" for c, u, b in lines))
    job_id = start(server, src, out)
    status = jobs.follow(server, job_id, lambda p: None, lambda line: None, timeout_s=JOB_DEADLINE_S)
    assert status == JobStatus.SUCCEEDED, server.client.get_job_logs(job_id)[-3000:]
    got = {r["custom_id"]: r["response"] for r in outputs(out)}
    assert set(got) == {c for c, _, _ in lines}
    assert {c: r["status_code"] for c, r in got.items()} == {"tool": 200, "n2": 200, "text": 200, "vec": 200,
                                                             "refused": 400, "pattern": 400}, {c: r["body"].get("error") for c, r in got.items()}
    call = got["tool"]["body"]["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"])["city"] in {"Paris", "Rome"}
    two = got["n2"]["body"]["choices"]
    assert len(two) == 2 and two[0]["logprobs"]["content"][0]["top_logprobs"]
    assert got["text"]["body"]["object"] == "text_completion" and got["text"]["body"]["usage"]["completion_tokens"] == 3
    vectors = got["vec"]["body"]["data"]
    assert len(vectors) == 2 and len(vectors[0]["embedding"]) > 1
    for custom_id in ("tool", "n2", "text", "vec"):
        trace = got[custom_id]["body"]["chorus"]["trace"]
        assert trace["totals"]["model_calls"] == 1 and trace["steps"][0]["replica"] == 0
    assert "logprobs" in got["refused"]["body"]["error"]["message"]
    assert "'single' is a pattern" in got["pattern"]["body"]["error"]["message"]
    final = jobs.last_progress_of(server, job_id)
    assert final is not None and final.done == len(lines) and final.errors == 2
