"""`supervisor_worker`: the supervisor assigns sub-tasks to named workers (JSON under a closed
schema), the workers run them concurrently, the supervisor reviews the results (accept, or
revise with feedback per task) for at most `max_rounds` rounds of work, then writes the answer.

Bounded and forgiving: an unusable assignment gives every worker the whole request; an unusable
or failed review accepts what there is; a failed worker's task is redone in the next round if
there is one. Decision: `SupervisorWorkerDecision`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cluster.errors import PatternFailed, StepFailed
from cluster.spec import Strict
from orchestrator.core.context import Context
from orchestrator.core.decisions import FailedMember, PatternDecisionBase
from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.spending import can_afford
from serving.types import JsonSchema


class Worker(Strict):
    role: str = Field(description="Role that does this worker's tasks.")
    about: str = Field("", max_length=500, description="What this worker is good at; shown to the supervisor.")


class SupervisorWorkerSpec(PatternSpecBase):
    kind: Literal["supervisor_worker"]
    supervisor: str = Field("planner", description="Role that assigns, reviews and writes the answer.")
    workers: dict[str, Worker] = Field(min_length=1, max_length=8, description="Worker name → its role.")
    max_rounds: int = Field(2, ge=1, le=4, description="Rounds of work; a review follows each round but the last.")
    max_assignments: int = Field(3, ge=1, le=8, description="Most sub-tasks per request.")
    task_chars: int = Field(160, ge=16, le=1000, description="Longest sub-task or feedback text the schemas allow.")
    json_max_tokens: int = Field(384, ge=32, le=4096, description="Token limit for assignments and reviews.")

    @model_validator(mode="after")
    def _names(self) -> SupervisorWorkerSpec:
        for name in self.workers:
            if not name or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(
                    f"worker name {name!r} must be letters, digits, '-' or '_' (it becomes a JSON enum value)"
                )
        return self

    def roles(self) -> set[str]:
        return {self.supervisor, *(w.role for w in self.workers.values())}

    def max_calls(self) -> int:
        return 1 + self.max_rounds * self.max_assignments + (self.max_rounds - 1) + 1

    def build(self, env: BuildEnv | None = None) -> SupervisorWorkerPattern:
        return SupervisorWorkerPattern(self)


class Assignment(BaseModel):
    """A sub-task the supervisor gave a worker."""

    worker: str = Field(description="The worker's name (a key of the spec's workers).")
    task: str = Field(description="The sub-task.")


class Assignments(BaseModel):
    assignments: list[Assignment]


class Feedback(BaseModel):
    task: int
    note: str


class Review(BaseModel):
    verdict: Literal["accept", "revise"]
    feedback: list[Feedback] = []


ReviewOutcome = Literal[
    "accepted", "revising", "nothing_to_revise", "review_unusable", "no_budget_for_review", "no_budget_for_revision"
]


class ReviewRecord(BaseModel):
    """What came of the review after one round of work."""

    model_config = ConfigDict(extra="forbid")

    round: int = Field(description="The round of work reviewed (1-based).")
    verdict: Literal["accept", "revise"] | None = Field(
        default=None, description="What the supervisor said; null when there was no usable review."
    )
    revise: list[int] = Field(default_factory=list, description="1-based tasks to redo.")
    outcome: ReviewOutcome = Field(
        description="accepted: work stops; revising: the named tasks are redone next round; nothing_to_revise: "
        "'revise' named no task, work stops; review_unusable: the review failed or was invalid, what there is "
        "is accepted; no_budget_for_review / no_budget_for_revision: the budget could not pay for it, work stops."
    )


class SupervisorWorkerDecision(PatternDecisionBase):
    """The assignments, each review, and how many rounds of work ran."""

    kind: Literal["supervisor_worker"] = "supervisor_worker"
    assignments: list[Assignment] = Field(default_factory=list, description="The sub-tasks, in order.")
    unusable_assignment: str | None = Field(
        default=None,
        description="The supervisor's unusable assignment (first 200 characters), when every worker got the "
        "whole request instead; null when the assignment was used.",
    )
    reviews: list[ReviewRecord] = Field(default_factory=list, description="One per review, in order.")
    rounds: int = Field(default=0, description="Rounds of work that ran.")


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def assignment_schema(workers: list[str], most: int, chars: int) -> dict[str, Any]:
    item = _closed(
        {"worker": {"type": "string", "enum": workers}, "task": {"type": "string", "minLength": 1, "maxLength": chars}}
    )
    return _closed({"assignments": {"type": "array", "minItems": 1, "maxItems": most, "items": item}})


def review_schema(tasks: int, chars: int) -> dict[str, Any]:
    item = _closed(
        {"task": {"type": "integer", "minimum": 1, "maximum": tasks}, "note": {"type": "string", "maxLength": chars}}
    )
    return _closed(
        {
            "verdict": {"type": "string", "enum": ["accept", "revise"]},
            "feedback": {"type": "array", "maxItems": tasks, "items": item},
        }
    )


def _rows(tasks: list[Assignment], results: list[str | None]) -> list[tuple[str, str, str]]:
    """(worker, task, result) per task, as the supervisor reads them."""
    return [(t.worker, t.task, r if r is not None else "(failed)") for t, r in zip(tasks, results, strict=True)]


@dataclass(frozen=True)
class SupervisorWorkerPattern:
    spec: SupervisorWorkerSpec

    async def _assign(self, ctx: Context, question: str, decision: SupervisorWorkerDecision) -> list[Assignment]:
        spec = self.spec
        names = list(spec.workers)
        schema = JsonSchema(json_schema=assignment_schema(names, spec.max_assignments, spec.task_chars))
        out = await ctx.call(
            spec.supervisor,
            prompts.assign_messages({n: w.about for n, w in spec.workers.items()}, question),
            name="assign",
            constraint=schema,
            max_tokens=spec.json_max_tokens,
            temperature=0.0,
        )
        try:
            tasks = Assignments.model_validate(json.loads(out.text, strict=False)).assignments
            tasks = [t for t in tasks if t.worker in spec.workers and t.task.strip()][: spec.max_assignments]
        except (json.JSONDecodeError, ValidationError):
            tasks = []
        if not tasks:
            # An unusable assignment should not end the request: every worker takes the whole request.
            decision.unusable_assignment = out.text[:200]
            tasks = [Assignment(worker=n, task=question) for n in names][: spec.max_assignments]
        return tasks

    async def _review(
        self, ctx: Context, question: str, rows: list[tuple[str, str, str]], round_: int
    ) -> Review | None:
        spec = self.spec
        schema = JsonSchema(json_schema=review_schema(len(rows), spec.task_chars))
        try:
            out = await ctx.call(
                spec.supervisor,
                prompts.review_messages(question, rows),
                name=f"review{round_}",
                constraint=schema,
                max_tokens=spec.json_max_tokens,
                temperature=0.0,
            )
            return Review.model_validate(json.loads(out.text, strict=False))
        except (StepFailed, json.JSONDecodeError, ValidationError):
            return None

    async def _work(
        self,
        ctx: Context,
        question: str,
        tasks: list[Assignment],
        which: dict[int, str | None],
        results: list[str | None],
        round_: int,
        decision: SupervisorWorkerDecision,
    ) -> None:
        """Run tasks `which` (index → feedback or None) concurrently, updating `results` in place."""

        async def one(k: int, feedback: str | None) -> str:
            t = tasks[k]
            messages = prompts.worker_messages(t.worker, question, t.task, results[k], feedback)
            out = await ctx.call(self.spec.workers[t.worker].role, messages, name=f"round{round_}:{t.worker}[{k + 1}]")
            return out.text

        order = sorted(which)
        outs = await ctx.gather(*(one(k, which[k]) for k in order))
        for k, out in zip(order, outs, strict=True):
            if isinstance(out, StepFailed):  # a failed redo keeps the previous result, if any
                t = tasks[k]
                decision.failed_members.append(
                    FailedMember(
                        step=f"round{round_}:{t.worker}[{k + 1}]", role=self.spec.workers[t.worker].role, error=str(out)
                    )
                )
            else:
                results[k] = out

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        spec = self.spec
        question = request.question
        decision = ctx.decide(SupervisorWorkerDecision())
        tasks = await self._assign(ctx, question, decision)
        decision.assignments = tasks
        results: list[str | None] = [None] * len(tasks)
        reviews = decision.reviews
        todo: dict[int, str | None] = dict.fromkeys(range(len(tasks)))
        rounds = 0
        for round_ in range(1, spec.max_rounds + 1):
            await self._work(ctx, question, tasks, todo, results, round_, decision)
            rounds = decision.rounds = round_
            if round_ == spec.max_rounds:
                break
            if not can_afford(ctx, 3):  # a review, at least one redo, the answer
                reviews.append(ReviewRecord(round=round_, outcome="no_budget_for_review"))
                break
            review = await self._review(ctx, question, _rows(tasks, results), round_)
            if review is None:
                reviews.append(ReviewRecord(round=round_, outcome="review_unusable"))
                break
            todo = {f.task - 1: f.note for f in review.feedback if 1 <= f.task <= len(tasks)}
            todo.update({k: "Your previous attempt failed; try again." for k, r in enumerate(results) if r is None})
            if review.verdict == "accept" or not todo:
                outcome: ReviewOutcome = "accepted" if review.verdict == "accept" else "nothing_to_revise"
                reviews.append(ReviewRecord(round=round_, verdict=review.verdict, outcome=outcome))
                break
            revise = sorted(k + 1 for k in todo)
            if not can_afford(ctx, len(todo) + 1):  # the redos and the answer
                reviews.append(
                    ReviewRecord(round=round_, verdict="revise", revise=revise, outcome="no_budget_for_revision")
                )
                break
            reviews.append(ReviewRecord(round=round_, verdict="revise", revise=revise, outcome="revising"))
        if all(r is None for r in results):
            raise PatternFailed(f"every worker's task failed ({len(tasks)} tasks, {rounds} rounds)")
        out = await ctx.call(spec.supervisor, prompts.write_messages(question, _rows(tasks, results)), name="write", final=True)
        return Answer(text=out.text, finish_reason=out.result.finish_reason)
