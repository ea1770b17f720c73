"""Feedback on answers, for the adaptive pattern to learn from.

    POST /v1/chorus/feedback   {"response_id": "chatcmpl-…", "score": 0.0–1.0}   → 200 {"ok": true}

An adaptive pattern's replies are remembered (label, pattern chosen, GPU-seconds, calls) in the
outcome store as they leave (`remember`); a score for one of them is stored durably and joins
that pattern's policy entry when the pattern has `learn: true`. An id chorus did not remember
(another pattern's reply, or an unknown one) is a 404.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from cluster.errors import UnknownResponse
from orchestrator.core.outcomes import OutcomeStore
from orchestrator.core.schema import Reply
from orchestrator.patterns import AdaptiveDecision, decision_of
from orchestrator.patterns.kit.policy import ALL

router = APIRouter()


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(min_length=1, max_length=200, description="The `id` of the chat completion.")
    score: float = Field(ge=0.0, le=1.0, description="1: right / helpful, 0: wrong; anything between.")


def store_of(state: Any) -> OutcomeStore:
    """The app's outcome store, opened on first use (the default file under the chorus home)."""
    store = getattr(state, "outcomes", None)
    if store is None:
        store = state.outcomes = OutcomeStore()
    return store


async def remember(state: Any, reply: Reply) -> None:
    """Keep what an adaptive reply chose, so feedback on it can be attributed: under the
    classifier's label (so the label's own policy entry grows), `*` when the classifier failed."""
    decision = decision_of(reply.trace)
    if not isinstance(decision, AdaptiveDecision):
        return
    totals = reply.trace.totals
    # SQLite waits on other writers' locks: keep that off the event loop.
    await asyncio.to_thread(
        store_of(state).remember, reply.id, decision.label or ALL, decision.chosen, totals.gpu_seconds, totals.model_calls
    )


@router.post("/v1/chorus/feedback")
async def feedback(body: Feedback, request: Request) -> dict[str, Any]:
    if not await asyncio.to_thread(store_of(request.app.state).score, body.response_id, body.score):
        raise UnknownResponse(body.response_id)
    return {"ok": True, "response_id": body.response_id, "score": body.score}
