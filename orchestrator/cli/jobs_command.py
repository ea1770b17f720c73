"""`chorus submit` and `chorus jobs`: batch jobs as Ray Jobs.

    chorus submit FILE [--model NAME] [--out DIR] [--address ADDR] [--detach]
    chorus jobs [--address ADDR]                 chorus's batch jobs on the cluster
    chorus jobs status|logs|stop ID [--address ADDR]

`--address` is the cluster's job server (`http://HEAD:8265`) or a Ray address; without it, the
cluster `chorus up` recorded. A job stopped (or killed) is resumed by submitting it again with
the same `--out`: only rows without an output line run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cluster.errors import JobInputError


def _out_default(file: str) -> str:
    p = Path(file)
    return str(p.with_name(f"{p.stem}.out"))


def cmd_submit(args: argparse.Namespace) -> int:
    from orchestrator.jobs import submit as jobs
    from orchestrator.jobs.scan import scan_input

    server = jobs.job_server(args.address)
    input_path, out = args.file, args.out or _out_default(args.file)
    if Path(input_path).is_file():
        # Whole-file problems stop here, before anything is submitted.
        scan = scan_input(input_path, args.shard_rows or 64)
        if scan.unnamed and not args.model:
            raise JobInputError(f"{scan.unnamed} row(s) name no model: pass --model (a pattern or a hosted model)")
        print(f"{scan.path}: {scan.total} {scan.unit}(s), {scan.format.value} format", end="")
        print(f"; {scan.malformed_count} malformed (they get error lines)" if scan.malformed_count else "")
    elif server.local:
        raise JobInputError(f"input file {input_path} does not exist")
    if server.local:  # the job runs here: give it absolute paths
        input_path, out = str(Path(input_path).resolve()), str(Path(out).resolve())
    argv = jobs.job_argv(
        input_path,
        out,
        args.model,
        shard_rows=args.shard_rows,
        max_in_flight=args.max_in_flight,
        python=jobs.python_for(server),
    )
    job_id = jobs.submit(server, argv, input=input_path, out=out, model=args.model)
    print(f"submitted {job_id} to {server.address}; output in {out}")
    if args.detach:
        print(f"follow it with `chorus jobs status {job_id}`")
        return 0
    return _follow(server, job_id)


def _follow(server: Any, job_id: str) -> int:
    from tqdm import tqdm  # type: ignore[import-untyped]

    from orchestrator.jobs import submit as jobs
    from orchestrator.jobs.progress import Progress

    bar: Any = None
    last: list[Progress] = []

    def on_progress(p: Progress) -> None:
        nonlocal bar
        if bar is None:
            # chorus's own rate and ETA (this run's rows over its time) replace tqdm's.
            fmt = "{l_bar}{bar}| {n_fmt}/{total_fmt} rows [{elapsed}] {postfix}"
            bar = tqdm(total=p.total, initial=p.done, bar_format=fmt, dynamic_ncols=True, file=sys.stdout)
        bar.update(p.done - bar.n)
        eta = f"{p.eta_s:.0f}s" if p.eta_s is not None else "?"
        bar.set_postfix_str(
            f"{p.rows_per_s:.1f} rows/s, ETA {eta}, {p.tokens} tok, {p.gpu_seconds:.1f} GPU-s, {p.errors} err", refresh=True
        )
        last[:] = [p]

    def on_line(line: str) -> None:
        (bar.write if bar is not None else print)(line)

    try:
        status = jobs.follow(server, job_id, on_progress, on_line)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"\nstopped following; {job_id} goes on. `chorus jobs stop {job_id}` stops it")
        return 130
    if bar is not None:
        bar.close()
    summary = f": {last[0].summary()}" if last else ""
    print(f"{job_id} {status.value.lower()}{summary}")
    return 0 if status.value == "SUCCEEDED" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    from orchestrator.jobs import submit as jobs

    server = jobs.job_server(args.address)
    if args.action is None:
        rows = [("id", "status", "model", "input", "out")]
        rows += [tuple(jobs.describe(j).values()) for j in jobs.chorus_jobs(server)]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        return 0
    if not args.id:
        print(f"chorus jobs {args.action} needs a job id (see `chorus jobs`)", file=sys.stderr)
        return 2
    if args.action == "logs":
        if args.follow:
            status = jobs.follow(server, args.id, lambda p: print(p.line()), print)
            return 0 if status.value == "SUCCEEDED" else 1
        print(server.client.get_job_logs(args.id), end="")
        return 0
    if args.action == "stop":
        stopped = server.client.stop_job(args.id)
        print(f"stopping {args.id}; submit it again with the same --out to resume" if stopped else f"{args.id} is not running")
        return 0
    info = server.client.get_job_info(args.id)
    print(f"{args.id}: {info.status.value}{' — ' + info.message if info.message else ''}")
    progress = jobs.last_progress_of(server, args.id)
    if progress is not None:
        print(f"  {progress.summary()}")
    return 0


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("submit", help="run a batch file through chorus as a Ray Job")
    s.add_argument("file", help="OpenAI batch JSONL, or plain JSONL/Parquet rows with `messages` or `prompt`")
    s.add_argument("-m", "--model", help="pattern or hosted model for rows that name none")
    s.add_argument("--out", help="output folder (default: FILE's name + .out); the same folder resumes")
    s.add_argument("--address", help="job server (http://HEAD:8265) or Ray address; default: the recorded cluster")
    s.add_argument("--shard-rows", type=int, help="rows per output shard (default 64)")
    s.add_argument("--max-in-flight", type=int, help="requests in flight (default: the fleet's capacity)")
    s.add_argument("--detach", action="store_true", help="return after submitting")
    s.set_defaults(func=cmd_submit)

    j = sub.add_parser("jobs", help="chorus batch jobs: list, or status|logs|stop ID")
    j.add_argument("action", nargs="?", choices=["status", "logs", "stop"])
    j.add_argument("id", nargs="?")
    j.add_argument("-f", "--follow", action="store_true", help="logs: follow until the job ends")
    j.add_argument("--address", help="job server (http://HEAD:8265) or Ray address; default: the recorded cluster")
    j.set_defaults(func=cmd_jobs)
