"""The batch job's entry point: `python -m orchestrator.jobs.run INPUT --out DIR [--model NAME]`.

`chorus submit` submits exactly this command as a Ray Job; `ray job submit -- python -m
orchestrator.jobs.run ...` does the same. Exit status: 0 when every row has an output line,
2 when the job could not start or go on (the message says why; finished rows stay done).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from cluster.errors import ChorusError
from orchestrator.jobs.runner import JobSpec, run_job


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator.jobs.run", description="Run a chorus batch job.")
    p.add_argument("input", help="JSONL (OpenAI batch lines or plain rows) or Parquet file")
    p.add_argument("--out", required=True, help="output folder (shards); the same folder resumes a job")
    p.add_argument("--model", help="pattern or hosted model for rows that name none")
    p.add_argument("--shard-rows", type=int, default=64, help="rows per output shard (default 64)")
    p.add_argument("--max-in-flight", type=int, help="requests in flight (default: the fleet's capacity)")
    p.add_argument("--max-body-bytes", type=int, help="row bodies above this get a 413 line (default: the server's)")
    p.add_argument("--address", help="Ray address (default: the job's cluster)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = JobSpec(
            input=args.input,
            out=args.out,
            model=args.model,
            shard_rows=args.shard_rows,
            max_in_flight=args.max_in_flight,
            max_body_bytes=args.max_body_bytes,
            address=args.address,
        )
        run_job(spec, say=lambda s: print(s, flush=True))
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"chorus job: --{'-'.join(str(p) for p in err['loc']).replace('_', '-')}: {err['msg']}", file=sys.stderr)
        return 2
    except ChorusError as exc:
        print(f"chorus job: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
