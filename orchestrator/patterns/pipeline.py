"""`pipeline`: a chain of steps; each is a role and a named prompt template (`prompts.PIPELINE_
TEMPLATES`) applied to the request and the previous step's output. The last output is the answer.

Steps depend on each other, so they run one after another; a failed step ends the request.
Decision: `PipelineDecision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cluster.spec import Strict
from orchestrator.core.context import Context
from orchestrator.core.decisions import PatternDecisionBase
from orchestrator.patterns.kit import prompts
from orchestrator.patterns.kit.base import Answer, BuildEnv, PatternRequest, PatternSpecBase

Template = Literal["answer", "draft", "critique", "refine", "summarize", "custom"]
NEEDS_PREVIOUS = {"critique", "refine", "summarize"}


class PipelineStep(Strict):
    role: str = Field(description="Role that runs this step.")
    template: Template = Field("refine", description="Named prompt template (see docs/patterns.md).")
    instruction: str = Field("", max_length=2000, description="Extra instruction appended to the template.")


class PipelineSpec(PatternSpecBase):
    kind: Literal["pipeline"]
    steps: list[PipelineStep] = Field(min_length=1, max_length=8, description="Run in order.")

    @model_validator(mode="after")
    def _chain(self) -> PipelineSpec:
        first = self.steps[0].template
        if first in NEEDS_PREVIOUS:
            raise ValueError(
                f"steps[0] uses template '{first}', which works on a previous output; the first step "
                f"has none: use answer, draft or custom"
            )
        for i, step in enumerate(self.steps):
            if step.template == "custom" and not step.instruction.strip():
                raise ValueError(f"steps[{i}] uses template 'custom' without an instruction; add instruction: ...")
        return self

    def roles(self) -> set[str]:
        return {s.role for s in self.steps}

    def max_calls(self) -> int:
        return len(self.steps)

    def build(self, env: BuildEnv | None = None) -> PipelinePattern:
        return PipelinePattern(self)


class StepRun(BaseModel):
    """One pipeline step that ran."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="The step's role.")
    template: Template = Field(description="The step's prompt template.")


class PipelineDecision(PatternDecisionBase):
    """The steps the pipeline ran, in order."""

    kind: Literal["pipeline"] = "pipeline"
    steps: list[StepRun] = Field(description="Each step, in order.")


@dataclass(frozen=True)
class PipelinePattern:
    spec: PipelineSpec

    async def run(self, request: PatternRequest, ctx: Context) -> Answer:
        previous: str | None = None
        finish = "stop"
        for i, step in enumerate(self.spec.steps):
            messages = prompts.pipeline_messages(step.template, step.instruction, request.question, previous)
            last = i == len(self.spec.steps) - 1
            out = await ctx.call(step.role, messages, name=f"step[{i}]:{step.template}", final=last)
            previous, finish = out.text, out.result.finish_reason
        ctx.decide(PipelineDecision(steps=[StepRun(role=s.role, template=s.template) for s in self.spec.steps]))
        return Answer(text=previous or "", finish_reason=finish)
