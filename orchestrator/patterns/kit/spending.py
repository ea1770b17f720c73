"""What a request may still spend: lets a pattern skip an optional stage (escalation, another
layer, a revision round) instead of failing halfway when the budget would run out."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.core.context import Context


def calls_left(ctx: Context) -> int | None:
    """Model calls the budget still allows; None when unlimited. Every call is a trace step."""
    cap = ctx.budget.max_model_calls
    return None if cap is None else max(0, cap - len(ctx.trace.steps))


def tokens_left(ctx: Context) -> int | None:
    cap = ctx.budget.max_tokens
    if cap is None:
        return None
    return max(0, cap - sum(s.prompt_tokens + s.completion_tokens for s in ctx.trace.steps))


def can_afford(ctx: Context, calls: int) -> bool:
    """True when `calls` more model calls fit the call budget and tokens are not used up."""
    left = calls_left(ctx)
    tokens = tokens_left(ctx)
    return (left is None or left >= calls) and (tokens is None or tokens > 0)
