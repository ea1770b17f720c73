"""Asking several roles the same thing at once, and keeping the answers of those that replied.

A member that fails is recorded under the trace decision `failed_members` (accumulated over the
whole request) and left out; the pattern answers from the others and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cluster.errors import PatternFailed, StepFailed
from serving.types import Constraint, Message

if TYPE_CHECKING:
    from orchestrator.core.context import Context


@dataclass(frozen=True)
class MemberAnswer:
    index: int  # position in the member list the pattern asked
    role: str
    text: str
    finish_reason: str


@dataclass(frozen=True)
class Poll:
    answers: list[MemberAnswer]  # successful members, in member order
    failed: list[dict[str, object]]  # {"step", "role", "error"} for each member that failed


def record_failures(ctx: Context, failed: Sequence[dict[str, object]]) -> None:
    if failed:
        ctx.note("failed_members", [*ctx.trace.decisions.get("failed_members", []), *failed])


async def ask_all(
    ctx: Context,
    roles: Sequence[str],
    messages: list[Message],
    *,
    name: str,
    constraint: Constraint | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> Poll:
    """Every role answers `messages` concurrently; steps are named `name[i]`."""
    names = [f"{name}[{i}]" for i in range(len(roles))]
    outs = await ctx.gather(
        *(
            ctx.call(role, messages, name=step, constraint=constraint, temperature=temperature, max_tokens=max_tokens)
            for role, step in zip(roles, names, strict=True)
        )
    )
    answers, failed = [], []
    for i, (role, step, out) in enumerate(zip(roles, names, outs, strict=True)):
        if isinstance(out, StepFailed):
            failed.append({"step": step, "role": role, "error": str(out)})
        else:
            answers.append(MemberAnswer(i, role, out.text, out.result.finish_reason))
    record_failures(ctx, failed)
    return Poll(answers, failed)


Settled = Callable[[Sequence[MemberAnswer]], bool]


async def ask_until(
    ctx: Context,
    roles: Sequence[str],
    messages: list[Message],
    settled: Settled,
    *,
    name: str,
    constraint: Constraint | None = None,
    temperature: float | None = None,
) -> Poll:
    """Like `ask_all`, but as soon as the answers so far `settled` the question, the members
    still running are cancelled (their engine requests are aborted, their GPU time saved) and
    listed under the trace decision `stopped_members`."""
    names = [f"{name}[{i}]" for i in range(len(roles))]
    tasks = [
        asyncio.ensure_future(ctx.call(role, messages, name=step, constraint=constraint, temperature=temperature))
        for role, step in zip(roles, names, strict=True)
    ]
    answers: dict[int, MemberAnswer] = {}
    failed: dict[int, dict[str, object]] = {}
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                i = tasks.index(task)
                error = task.exception()
                if isinstance(error, StepFailed):
                    failed[i] = {"step": names[i], "role": roles[i], "error": str(error)}
                elif error is not None:
                    raise error  # budget errors and bugs end the request
                else:
                    out = task.result()
                    answers[i] = MemberAnswer(i, roles[i], out.text, out.result.finish_reason)
            if pending and settled([answers[i] for i in sorted(answers)]):
                ctx.note("stopped_members", [names[tasks.index(t)] for t in sorted(pending, key=tasks.index)])
                break
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    record_failures(ctx, [failed[i] for i in sorted(failed)])
    return Poll([answers[i] for i in sorted(answers)], [failed[i] for i in sorted(failed)])


def require_answers(poll: Poll, what: str) -> list[MemberAnswer]:
    """The answers, or PatternFailed naming every member's error when none answered."""
    if not poll.answers:
        errors = "; ".join(str(f["error"]) for f in poll.failed)
        raise PatternFailed(f"every member of {what} failed: {errors}")
    return poll.answers
