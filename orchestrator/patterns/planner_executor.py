"""`planner_executor`: the planner writes a plan (JSON under a closed schema); each step runs on the
executor role its type maps to, as soon as the steps it comes after are done (independent steps
run concurrently); the planner then writes the answer from the results.

A malformed or cyclic plan gets one repair attempt (the planner sees its plan and the problem);
a second bad plan ends the request with an error that names the problem. A failed step is
recorded and the steps after it are skipped; the planner answers from what finished.
Decision: `PlannerExecutorDecision`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from cluster.errors import PatternFailed, StepFailed
from orchestrator.core.context import Context
from orchestrator.core.decisions import FailedMember, PatternDecisionBase
from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase
from orchestrator.patterns.kit.spending import can_afford
from orchestrator.patterns.kit.task_graph import Plan, PlanError, PlanStep, parse_plan, plan_schema
from serving.types import JsonSchema, Message


class PlannerExecutorSpec(PatternSpecBase):
    kind: Literal["planner_executor"]
    planner: str = Field("planner", description="Role that plans and writes the final answer.")
    executors: dict[str, str] = Field(
        min_length=1, max_length=8, description="Step type → the role that runs steps of that type."
    )
    max_steps: int = Field(4, ge=1, le=8, description="Most steps a plan may have.")
    instruction_chars: int = Field(160, ge=16, le=1000, description="Longest step instruction the schema allows.")
    plan_max_tokens: int = Field(512, ge=32, le=4096, description="Token limit for writing (or repairing) a plan.")

    @model_validator(mode="after")
    def _types(self) -> PlannerExecutorSpec:
        for t in self.executors:
            if not t or not t.replace("_", "").isalnum():
                raise ValueError(f"step type {t!r} must be letters, digits or '_' (it becomes a JSON enum value)")
        return self

    def roles(self) -> set[str]:
        return {self.planner, *self.executors.values()}

    def max_calls(self) -> int:
        return 2 + self.max_steps + 1  # plan, one repair, the steps, the synthesis

    def build(self, env: BuildEnv | None = None) -> PlannerExecutorPattern:
        return PlannerExecutorPattern(self)


class PlannerExecutorDecision(PatternDecisionBase):
    """The plan that ran, whether it needed a repair, and the steps that did not run."""

    kind: Literal["planner_executor"] = "planner_executor"
    plan: list[PlanStep] = Field(default_factory=list, description="The plan's steps (type, instruction, after).")
    plan_repaired: bool = Field(default=False, description="The first plan was invalid and the planner repaired it.")
    plan_problem: str | None = Field(default=None, description="What was wrong with the first plan.")
    skipped_steps: list[int] = Field(
        default_factory=list, description="1-based steps skipped because a step they come after failed."
    )


@dataclass(frozen=True)
class PlannerExecutorPattern:
    spec: PlannerExecutorSpec

    async def _plan(self, ctx: Context, question: str, decision: PlannerExecutorDecision) -> Plan:
        spec = self.spec
        types = list(spec.executors)
        schema = JsonSchema(json_schema=plan_schema(types, spec.max_steps, spec.instruction_chars))

        async def ask(messages: list[Message], name: str) -> str:
            out = await ctx.call(
                spec.planner, messages, name=name, constraint=schema, max_tokens=spec.plan_max_tokens, temperature=0.0
            )
            return out.text

        text = await ask(prompts.plan_messages(types, spec.max_steps, question), "plan")
        try:
            return parse_plan(text, types, spec.max_steps)
        except PlanError as exc:
            first = str(exc)
        decision.plan_repaired, decision.plan_problem = True, first
        if not can_afford(ctx, 3):  # the repair, at least one step, the synthesis
            raise PatternFailed(f"the planner's plan was invalid ({first}) and the budget leaves no room to repair it")
        text = await ask(prompts.plan_repair_messages(types, spec.max_steps, question, text, first), "plan_repair")
        try:
            return parse_plan(text, types, spec.max_steps)
        except PlanError as exc:
            raise PatternFailed(
                f"the planner's plan was invalid ({first}) and so was its repair ({exc}); "
                f"a stronger planner role or a larger plan_max_tokens may help"
            ) from None

    async def _execute(
        self, ctx: Context, question: str, plan: Plan, decision: PlannerExecutorDecision
    ) -> list[str | None]:
        """Each step's result (None: failed or skipped), in plan order."""
        loop = asyncio.get_running_loop()
        done = [loop.create_future() for _ in plan.steps]
        skipped: list[int] = []

        async def run(i: int) -> None:
            step = plan.steps[i]
            role = self.spec.executors[step.type]
            text: str | None = None
            try:
                inputs = [await done[d - 1] for d in step.after]
                if any(x is None for x in inputs):
                    skipped.append(i + 1)
                    return
                messages = prompts.plan_step_messages(question, step.instruction, inputs)
                out = await ctx.call(role, messages, name=f"step[{i + 1}]:{step.type}")
                text = out.text
            except StepFailed as exc:
                decision.failed_members.append(
                    FailedMember(step=f"step[{i + 1}]:{step.type}", role=role, error=str(exc))
                )
            finally:
                done[i].set_result(text)  # always: the steps after this one wait on it

        await ctx.gather(*(run(i) for i in range(len(plan.steps))))
        decision.skipped_steps = sorted(skipped)
        return [f.result() for f in done]

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        question = request.question
        decision = ctx.decide(PlannerExecutorDecision())
        plan = await self._plan(ctx, question, decision)
        decision.plan = list(plan.steps)
        results = await self._execute(ctx, question, plan, decision)
        if all(r is None for r in results):
            raise PatternFailed(f"every step of the {len(results)}-step plan failed or was skipped")
        shown = [
            f"step {i} ({s.type}): {s.instruction}\n{r if r is not None else '(this step failed)'}"
            for i, (s, r) in enumerate(zip(plan.steps, results, strict=True), start=1)
        ]
        out = await ctx.call(self.spec.planner, prompts.plan_synthesis_messages(question, shown), name="synthesize", final=True)
        return Answer(text=out.text, finish_reason=out.result.finish_reason)
