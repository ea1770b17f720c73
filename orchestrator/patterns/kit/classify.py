"""One `classify` step: a classifier role picks a label under a `Choice` constraint, so it cannot
answer off the list. Router (label → role) and adaptive (label → pattern) both classify this way."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.patterns.kit import prompts
from serving.types import Choice

if TYPE_CHECKING:
    from orchestrator.core.context import Context, StepOutput


async def classify(
    ctx: Context, classifier: str, labels: dict[str, str], question: str, *, logprobs: int | None = None
) -> StepOutput:
    """`classifier` picks one of `labels` (label → when to pick it) for `question`; raises
    StepFailed when the call fails."""
    return await ctx.call(
        classifier,
        prompts.router_messages(labels, question),
        name="classify",
        constraint=Choice(options=list(labels)),
        max_tokens=32,
        temperature=0.0,
        logprobs=logprobs,
    )
