"""The Ray Data stage that answers rows: parse, call chorus at batch priority, build output lines.

One instance runs in one Ray Data actor; Ray Data hands it blocks (one per split) and runs
several of its coroutines at once. A single semaphore in the instance bounds the requests in
flight across all of them to the job's `in_flight`, so the bound holds for the whole job.

A row never fails the stage: every chorus error (a bad request, an unknown model, a failed
pattern) becomes that row's error line. Two things do stop it, because answering them with an
error line would mark rows done that were never tried: chorus becoming unavailable
(`UnavailableError`; a model with no healthy replica is waited for first, up to
`REPLICA_WAIT_S`), and a programming error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pyarrow as pa  # type: ignore[import-untyped]

from cluster.errors import ChorusError, NoHealthyReplica, OverloadedError, UnavailableError
from orchestrator.api.errors import status_of
from orchestrator.jobs.formats import HostedRow, RowProblem, RowRules, parse_row
from orchestrator.jobs.link import Asker, ChorusLink, HostedAnswer
from orchestrator.jobs.output import RowOutcome, answered, answered_hosted, refused

OVERLOAD_RETRIES = 3  # a row refused for overload is tried again after the server's Retry-After
# A row whose model has no healthy replica waits for one this long in all (Retry-After at a time):
# an engine restart takes a minute or two on CPU, longer for a large model on a GPU. Past it the
# stage stops, leaving the row for a resubmit.
REPLICA_WAIT_S = 600.0

T = TypeVar("T")


class RowAnswerer:
    """Turns one row into its output line; the transport-free heart of the stage."""

    def __init__(self, asker: Asker, rules: RowRules, in_flight: int) -> None:
        self.asker = asker
        self.rules = rules
        self.in_flight = in_flight
        self._slots: asyncio.Semaphore | None = None  # made inside the loop that uses it

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.in_flight)
        return self._slots

    async def answer(self, line: int, raw: str) -> RowOutcome:
        parsed = parse_row(raw, line, self.rules)
        if isinstance(parsed, RowProblem):
            return _outcome(line, refused(line, parsed), ok=False)
        try:
            if isinstance(parsed, HostedRow):
                hosted: HostedAnswer = await self._ask(lambda: self.asker.hosted(parsed.request))
                record = answered_hosted(line, parsed.custom_id, hosted, parsed.trace)
                totals, usage = hosted.trace.totals, hosted.body.get("usage") or {}
                prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            else:
                reply = await self._ask(lambda: self.asker.chat(parsed.request))
                record = answered(line, parsed.custom_id, reply)
                totals = reply.trace.totals
                prompt, completion = reply.usage.prompt_tokens, reply.usage.completion_tokens
        except UnavailableError:
            raise  # chorus is gone: stop, leaving this row without output so a resubmit runs it
        except ChorusError as exc:
            status, kind = status_of(exc)
            problem = RowProblem(custom_id=parsed.custom_id, status=status, code=kind, message=str(exc))
            return _outcome(line, refused(line, problem), ok=False)
        return RowOutcome(
            line=line,
            text=json.dumps(record, separators=(",", ":")),
            ok=True,
            prompt_tokens=prompt,
            completion_tokens=completion,
            gpu_seconds=totals.gpu_seconds,
        )

    async def _ask(self, call: Callable[[], Awaitable[T]]) -> T:
        retries, waited = 0, 0.0
        while True:
            async with self.slots:
                try:
                    return await call()
                except OverloadedError as exc:
                    if retries == OVERLOAD_RETRIES:
                        raise
                    retries += 1
                    wait = exc.retry_after_s
                except NoHealthyReplica as exc:
                    # A model's replicas are restarting: the job waits for them, up to a bound.
                    if waited + exc.retry_after_s > REPLICA_WAIT_S:
                        raise
                    wait = exc.retry_after_s
                    waited += wait
            # Back off outside the slot, for as long as the server asked.
            await asyncio.sleep(wait)

    async def answer_all(self, lines: list[int], raws: list[str]) -> list[RowOutcome]:
        return list(await asyncio.gather(*(self.answer(n, r) for n, r in zip(lines, raws, strict=True))))


def _outcome(line: int, record: dict[str, Any], ok: bool) -> RowOutcome:
    return RowOutcome(line=line, text=json.dumps(record, separators=(",", ":")), ok=ok)


def outcomes_table(outcomes: list[RowOutcome]) -> pa.Table:
    return pa.table(
        {
            "line": pa.array([o.line for o in outcomes], pa.int64()),
            "text": pa.array([o.text for o in outcomes], pa.string()),
            "ok": pa.array([o.ok for o in outcomes], pa.bool_()),
            "prompt_tokens": pa.array([o.prompt_tokens for o in outcomes], pa.int64()),
            "completion_tokens": pa.array([o.completion_tokens for o in outcomes], pa.int64()),
            "gpu_seconds": pa.array([o.gpu_seconds for o in outcomes], pa.float64()),
        }
    )


def outcomes_of(table: pa.Table) -> list[RowOutcome]:
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    return [RowOutcome(**{k: cols[k][i] for k in cols}) for i in range(table.num_rows)]


class CallChorus:
    """The Ray Data UDF (`map_batches(CallChorus, ...)`): a batch of (line, raw) → output lines."""

    def __init__(self, rules: RowRules, in_flight: int, link: Callable[[], Asker] = ChorusLink.find) -> None:
        self.answerer = RowAnswerer(link(), rules, in_flight)

    async def __call__(self, batch: pa.Table) -> pa.Table:
        lines = batch.column("line").to_pylist()
        raws = batch.column("raw").to_pylist()
        return outcomes_table(await self.answerer.answer_all(lines, raws))
