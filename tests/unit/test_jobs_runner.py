"""The driver's checks before any row runs, and the CLI's wiring of `chorus submit` / `chorus jobs`."""

from __future__ import annotations

import json

import pytest

from cluster.errors import JobError, JobInputError
from orchestrator.cli.main import build_parser
from orchestrator.jobs.runner import check_manifest, models_named
from orchestrator.jobs.scan import scan_input
from orchestrator.jobs.submit import job_argv

KNOWN = ["router", "single", "tiny"]


def scan_of(tmp_path, rows, name="in.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return scan_input(p, 10)


def test_models_named_checks_the_jobs_model_and_keeps_served_row_models(tmp_path):
    scan = scan_of(tmp_path, [{"prompt": "a"}, {"prompt": "b", "model": "router"}, {"prompt": "c", "model": "nope"}])
    assert models_named(scan, "single", KNOWN) == {"single", "router"}  # `nope` rows get 404 lines
    with pytest.raises(JobInputError, match="name no model: pass --model"):
        models_named(scan, None, KNOWN)
    with pytest.raises(JobInputError, match="The model 'gone' does not exist"):
        models_named(scan, "gone", KNOWN)


def test_an_output_folder_answers_one_input(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = scan_of(tmp_path, [{"prompt": "a"}], "a.jsonl")
    check_manifest(out, first)
    check_manifest(out, first)  # the same input resumes
    other = scan_of(tmp_path, [{"prompt": "a"}, {"prompt": "b"}], "b.jsonl")
    with pytest.raises(JobError, match="use another --out"):
        check_manifest(out, other)


def test_cli_submit_and_jobs_parse():
    args = build_parser().parse_args(["submit", "in.jsonl", "-m", "router", "--out", "o", "--shard-rows", "8", "--detach"])
    assert (args.file, args.model, args.out, args.shard_rows, args.detach) == ("in.jsonl", "router", "o", 8, True)
    args = build_parser().parse_args(["jobs", "stop", "chorus-batch-1"])
    assert (args.action, args.id) == ("stop", "chorus-batch-1")
    assert build_parser().parse_args(["jobs"]).action is None


def test_job_argv_is_the_entry_point_ray_job_submit_runs():
    argv = job_argv("/d/in.jsonl", "/d/out", "single", shard_rows=32, max_in_flight=4, python="python")
    assert argv == ["python", "-m", "orchestrator.jobs.run", "/d/in.jsonl", "--out", "/d/out", "--model", "single",
                    "--shard-rows", "32", "--max-in-flight", "4"]
    from orchestrator.jobs.run import build_parser as job_parser

    parsed = job_parser().parse_args(argv[3:])
    assert (parsed.input, parsed.out, parsed.model, parsed.shard_rows, parsed.max_in_flight) == ("/d/in.jsonl", "/d/out", "single", 32, 4)
