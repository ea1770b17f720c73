"""Is an answer right? `numeric`, `choice`, `exact` compare the extracted answer with the gold
one; `judge` asks a live model to grade the answer against the gold one (1–10, right at ≥ 7)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from orchestrator.eval.data import Item
from orchestrator.patterns.kit.extract import extract_choice, extract_number, normalize_number
from orchestrator.patterns.kit.tally import extract_exact

ScorerName = Literal["numeric", "choice", "exact", "judge"]

JUDGE_PASS = 7

JUDGE_PROMPT = (
    "You grade an answer against the reference answer. Question:\n{question}\n\nReference answer:\n{gold}\n\n"
    "Answer to grade:\n{answer}\n\nRate from 1 (wrong) to 10 (fully right, same result as the reference). "
    "Reply with the number only."
)

Grade = Callable[[str], Awaitable[str]]  # sends a prompt to the judge model, returns its reply


def default_scorer(items: list[Item]) -> ScorerName:
    """choice for items with options, numeric when every gold answer is a number, else exact."""
    if all(i.options for i in items):
        return "choice"
    if all(normalize_number(i.gold) is not None for i in items):
        return "numeric"
    return "exact"


def right(scorer: ScorerName, item: Item, answer: str) -> bool:
    """The offline scorers; `judge` goes through `judge_right`."""
    if scorer == "numeric":
        return extract_number(answer) == normalize_number(item.gold)
    if scorer == "choice":
        return extract_choice(answer, item.labels()) == item.gold.strip()
    if scorer == "exact":
        return extract_exact(answer) == extract_exact(item.gold)
    raise ValueError("the judge scorer needs a judge model: use judge_right")


async def judge_right(grade: Grade, item: Item, answer: str) -> bool:
    reply = await grade(JUDGE_PROMPT.format(question=item.prompt(), gold=item.gold, answer=answer))
    score = normalize_number(reply.strip().split()[0]) if reply.strip() else None
    return score is not None and float(score) >= JUDGE_PASS
