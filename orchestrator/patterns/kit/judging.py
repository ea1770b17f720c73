"""A judge role scoring an answer 1–10 under a regex constraint (always valid, even from a weak
model), used by best_of_n, council and cascade. Candidates are judged in parallel, one call each,
with the question before the candidate so the calls share a cached prefix."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import Field

from cluster.errors import StepFailed
from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.members import MemberAnswer, MemberRef
from serving.types import Regex

if TYPE_CHECKING:
    from orchestrator.core.context import Context

SCORE = Regex(pattern="10|[1-9]")
SCORE_MAX_TOKENS = 3
_SCORE_TEXT = re.compile(r"^\s*(10|[1-9])\b")


def parse_score(text: str) -> int | None:
    """The score a judge wrote (1–10), or None when its text holds none."""
    match = _SCORE_TEXT.match(text)
    return int(match.group(1)) if match else None


async def score(ctx: Context, judge: str, question: str, candidate: str, *, name: str) -> int:
    """One judged score; raises StepFailed when the call fails or the text holds no score."""
    out = await ctx.call(
        judge,
        prompts.judge_messages(question, candidate),
        name=name,
        constraint=SCORE,
        max_tokens=SCORE_MAX_TOKENS,
        temperature=0.0,
    )
    value = parse_score(out.text)
    if value is None:
        raise StepFailed(f"judge step '{name}' gave no 1-10 score: {out.text!r}")
    return value


async def score_all(
    ctx: Context, judge: str, question: str, candidates: Sequence[str], *, name: str
) -> list[int | None]:
    """Scores for every candidate, judged concurrently; a failed judgement is None."""
    outs = await ctx.gather(*(score(ctx, judge, question, c, name=f"{name}[{i}]") for i, c in enumerate(candidates)))
    return [None if isinstance(o, StepFailed) else o for o in outs]


class JudgedAnswer(MemberRef):
    """A member's answer and the score the judge gave it."""

    score: int | None = Field(description="The judge's score, 1-10; null when the judgement failed.")


def judged(answers: Sequence[MemberAnswer], scores: Sequence[int | None]) -> list[JudgedAnswer]:
    """The scores as a decision records them, one per answer."""
    return [JudgedAnswer(index=a.index, role=a.role, score=s) for a, s in zip(answers, scores, strict=True)]


def best(scores: Sequence[int | None]) -> int | None:
    """Position of the highest score, earliest on ties; None when nothing was scored."""
    scored = [(s, i) for i, s in enumerate(scores) if s is not None]
    if not scored:
        return None
    top = max(s for s, _ in scored)
    return min(i for s, i in scored if s == top)
