"""Asking several roles the same thing at once, and keeping the answers of those that replied.

A member that fails is left out and returned as a `FailedMember`; the pattern answers from the
others and records the failure in its decision's `failed_members`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from cluster.errors import PatternFailed, StepFailed
from orchestrator.core.decisions import FailedMember
from serving.types import Constraint, Message

if TYPE_CHECKING:
    from orchestrator.core.context import Context


@dataclass(frozen=True)
class MemberAnswer:
    index: int  # position in the member list the pattern asked
    role: str
    text: str
    finish_reason: str


class MemberRef(BaseModel):
    """A member as a decision names it: its position in the pattern's member list and its role."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="Position in the member list the pattern asked (0-based).")
    role: str = Field(description="The member's role.")

    @classmethod
    def of(cls, answer: MemberAnswer) -> MemberRef:
        return cls(index=answer.index, role=answer.role)


@dataclass(frozen=True)
class Poll:
    answers: list[MemberAnswer]  # successful members, in member order
    failed: list[FailedMember]  # each member that failed, in member order
    stopped: list[str] = field(default_factory=list)  # steps cancelled once the answers settled it


async def ask_all(
    ctx: Context,
    roles: Sequence[str],
    messages: list[Message],
    *,
    name: str,
    constraint: Constraint | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    candidate: bool = False,
) -> Poll:
    """Every role answers `messages` concurrently; steps are named `name[i]`. `candidate`: an
    answer may become the pattern's answer as it is (see `Context.call`)."""
    names = [f"{name}[{i}]" for i in range(len(roles))]
    outs = await ctx.gather(
        *(
            ctx.call(
                role,
                messages,
                name=step,
                constraint=constraint,
                temperature=temperature,
                max_tokens=max_tokens,
                candidate=candidate,
            )
            for role, step in zip(roles, names, strict=True)
        )
    )
    answers, failed = [], []
    for i, (role, step, out) in enumerate(zip(roles, names, outs, strict=True)):
        if isinstance(out, StepFailed):
            failed.append(FailedMember(step=step, role=role, error=str(out)))
        else:
            answers.append(MemberAnswer(i, role, out.text, out.result.finish_reason))
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
    candidate: bool = False,
) -> Poll:
    """Like `ask_all`, but as soon as the answers so far `settled` the question, the members
    still running are cancelled (their engine requests are aborted, their GPU time saved) and
    returned by step name in `Poll.stopped`."""
    names = [f"{name}[{i}]" for i in range(len(roles))]
    tasks = [
        asyncio.ensure_future(
            ctx.call(role, messages, name=step, constraint=constraint, temperature=temperature, candidate=candidate)
        )
        for role, step in zip(roles, names, strict=True)
    ]
    answers: dict[int, MemberAnswer] = {}
    failed: dict[int, FailedMember] = {}
    stopped: list[str] = []
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                i = tasks.index(task)
                error = task.exception()
                if isinstance(error, StepFailed):
                    failed[i] = FailedMember(step=names[i], role=roles[i], error=str(error))
                elif error is not None:
                    raise error  # budget errors and bugs end the request
                else:
                    out = task.result()
                    answers[i] = MemberAnswer(i, roles[i], out.text, out.result.finish_reason)
            if pending and settled([answers[i] for i in sorted(answers)]):
                stopped = [names[tasks.index(t)] for t in sorted(pending, key=tasks.index)]
                break
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return Poll([answers[i] for i in sorted(answers)], [failed[i] for i in sorted(failed)], stopped)


def require_answers(poll: Poll, what: str) -> list[MemberAnswer]:
    """The answers, or PatternFailed naming every member's error when none answered."""
    if not poll.answers:
        errors = "; ".join(f.error for f in poll.failed)
        raise PatternFailed(f"every member of {what} failed: {errors}")
    return poll.answers
