"""Asking several roles the same thing at once, and keeping the answers of those that replied.

A member that fails is recorded under the trace decision `failed_members` (accumulated over the
whole request) and left out; the pattern answers from the others and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from serving.types import Constraint, Message

from cluster.errors import PatternFailed, StepFailed

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
            failed.append({"step": step, "role": role, "error": str(out)})
        else:
            answers.append(MemberAnswer(i, role, out.text, out.result.finish_reason))
    record_failures(ctx, failed)
    return Poll(answers, failed)


def require_answers(poll: Poll, what: str) -> list[MemberAnswer]:
    """The answers, or PatternFailed naming every member's error when none answered."""
    if not poll.answers:
        errors = "; ".join(str(f["error"]) for f in poll.failed)
        raise PatternFailed(f"every member of {what} failed: {errors}")
    return poll.answers
