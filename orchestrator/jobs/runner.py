"""A batch job's driver: check the input, find what is done, stream the rest through Ray Data.

    scan (no Ray) → connect → check models → lock the output folder → done rows from its shards
    → Ray Data: read the remaining rows → CallChorus (one actor, `in_flight` requests) → blocks
    → each block written here as one shard, atomically → progress line

Shards are written only by this process, so a job stopped or killed at any instant leaves
complete shards and nothing else that counts; a resubmission with the same output folder runs
exactly the rows without an output line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cluster.errors import JobError, JobInputError, UnknownModelError
from orchestrator.jobs.caller import CallChorus, outcomes_of
from orchestrator.jobs.capacity import in_flight_for
from orchestrator.jobs.formats import InputFormat, RowRules
from orchestrator.jobs.link import ChorusLink
from orchestrator.jobs.progress import Progress
from orchestrator.jobs.scan import InputScan, scan_input
from orchestrator.jobs.shards import ShardStore

MANIFEST = "_job.json"


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = Field(description="JSONL (OpenAI batch or plain) or Parquet file, as a path where the job runs.")
    out: str = Field(description="Output folder: shards, the lock, the manifest. Reuse it to resume.")
    model: str | None = Field(None, description="Pattern or hosted model for rows that name none.")
    shard_rows: int = Field(64, ge=1, le=100_000, description="Rows per input split, so per output shard.")
    max_in_flight: int | None = Field(
        None, ge=1, le=100_000, description="Requests in flight; default: the summed max_num_seqs of the models used."
    )
    max_body_bytes: int | None = Field(None, ge=1, description="Larger row bodies get a 413 line; default: the server's limit.")
    address: str | None = Field(None, description="Ray address; default: the job's own cluster.")


class Manifest(BaseModel):
    """What an output folder answers, so a resubmission with another input is refused."""

    input: str
    total: int
    format: InputFormat


def check_manifest(folder: Path, scan: InputScan) -> None:
    path = folder / MANIFEST
    mine = Manifest(input=scan.path, total=scan.total, format=scan.format)
    if path.exists():
        theirs = Manifest.model_validate_json(path.read_text())
        if theirs != mine:
            raise JobError(
                f"{folder} holds the output of {theirs.input} ({theirs.total} rows); this job reads {mine.input} "
                f"({mine.total} rows): use another --out"
            )
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(mine.model_dump_json(indent=2))
    tmp.replace(path)


def models_named(scan: InputScan, default: str | None, known: list[str]) -> set[str]:
    """The patterns and models the job will ask, refusing the job's own --model if nobody serves it."""
    if scan.unnamed and not default:
        raise JobInputError(f"{scan.unnamed} row(s) name no model: pass --model (a pattern or a hosted model)")
    if default and default not in known:
        raise JobInputError(str(UnknownModelError(default, known)))
    names = {m for m in scan.models if m in known}
    if default and scan.unnamed:
        names.add(default)
    return names


def quiet_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # chorus prints its own progress lines
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def run_job(spec: JobSpec, say: Callable[[str], None] = print) -> Progress:
    import ray
    import ray.data

    from orchestrator.client import ray_connect

    scan = scan_input(spec.input, spec.shard_rows)
    say(f"input {scan.path}: {scan.total} {scan.unit}(s), {scan.format.value} format, {len(scan.splits)} split(s)")
    if scan.malformed_count:
        say(f"  {scan.malformed_count} malformed {scan.unit}(s) get error lines (e.g. {scan.unit} {scan.malformed[0]})")
    ray_connect(spec.address or os.environ.get("RAY_ADDRESS"))
    link = ChorusLink.find()
    catalog = link.catalog()
    known = [e.id for e in catalog]
    names = models_named(scan, spec.model, known)
    unknown = {m: n for m, n in scan.models.items() if m not in known}
    if unknown:
        say(f"  rows naming unknown models get 404 lines: {', '.join(f'{m} ({n})' for m, n in sorted(unknown.items()))}")
    config = link.config()
    in_flight = spec.max_in_flight or in_flight_for(config, link.status(), names)
    rules = RowRules(
        format=scan.format,
        default_model=spec.model,
        known_models=frozenset(known),
        hosted_models=frozenset(e.id for e in catalog if e.kind == "model" and e.openai_layer),
        max_body_bytes=spec.max_body_bytes or config.server.max_request_bytes,
        unit=scan.unit,
    )
    store = ShardStore(Path(spec.out))
    with store.locked():
        check_manifest(store.folder, scan)
        if store.clear_partial():
            say("  removed the partial shard a stopped run left; its rows run again")
        done = store.done()
        t = done.tally
        progress = Progress(
            total=scan.total,
            done=t.rows,
            resumed=t.rows,
            errors=t.errors,
            prompt_tokens=t.prompt_tokens,
            completion_tokens=t.completion_tokens,
            gpu_seconds=t.gpu_seconds,
            in_flight=in_flight,
            shards=done.shards,
        )
        if done.lines:
            say(f"resuming: {len(done.lines)} row(s) already answered in {done.shards} shard(s)")
        say(f"calling chorus ({', '.join(sorted(names)) or '-'}) at batch priority, {in_flight} request(s) in flight")
        say(progress.line())
        t0 = time.monotonic()
        if progress.done < scan.total:
            from orchestrator.jobs.source import InputRows

            quiet_ray_data()
            # Several blocks run in the actor at once (they share its `in_flight` slots), so the
            # slots stay full while a block waits for its last rows.
            queued = max(2, math.ceil(2 * in_flight / spec.shard_rows) + 1)
            ds = ray.data.read_datasource(InputRows(scan, frozenset(done.lines)), num_cpus=0, concurrency=1).map_batches(
                CallChorus,
                fn_constructor_kwargs={"rules": rules, "in_flight": in_flight},
                batch_size=None,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(
                    size=1, max_tasks_in_flight_per_actor=queued, max_concurrent_calls_per_actor=queued
                ),
                num_cpus=0,
            )
            for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                outcomes = outcomes_of(block)
                if not outcomes:
                    continue
                store.write(outcomes)
                for o in outcomes:
                    t.add(o.ok, o.prompt_tokens, o.completion_tokens, o.gpu_seconds)
                progress = progress.model_copy(
                    update={
                        "done": t.rows,
                        "errors": t.errors,
                        "prompt_tokens": t.prompt_tokens,
                        "completion_tokens": t.completion_tokens,
                        "gpu_seconds": t.gpu_seconds,
                        "elapsed_s": time.monotonic() - t0,
                        "shards": progress.shards + 1,
                    }
                )
                say(progress.line())
        if t.rows != scan.total:
            raise JobError(f"the run ended with {t.rows} of {scan.total} rows answered; resubmit with the same --out")
        progress = progress.model_copy(update={"state": "finished", "elapsed_s": time.monotonic() - t0})
        say(progress.line())
        say(f"finished: {progress.summary()}; output in {store.folder}")
        (store.folder / "_SUCCESS").write_text(json.dumps(progress.model_dump(), indent=2))
        return progress
