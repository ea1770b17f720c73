"""A plan as the planner writes it: steps with a type, an instruction and the steps they come
`after`; the closed JSON schema that constrains the planner, and the checks a plan must pass
(references in range, no step after itself, no cycles) before anything runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class PlanError(ValueError):
    """The planner's output is not a usable plan; the message says what to fix."""


class PlanStep(BaseModel):
    """One step of a plan, as the planner wrote it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="The step type; selects the executor role.")
    instruction: str = Field(description="What the step is to do.")
    after: list[int] = Field(default_factory=list, description="1-based numbers of the steps whose results it needs.")


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[PlanStep]


def plan_schema(types: Sequence[str], max_steps: int, instruction_chars: int) -> dict[str, Any]:
    """Closed: enum types, bounded strings, bounded integers and arrays, so a weak model terminates.

    Each position has its own item schema (`prefixItems`) whose `after` may only name earlier
    steps, so the grammar itself rules out self-references, forward references and cycles.
    `parse_plan` still checks, for output cut off at the token limit and for unconstrained engines.
    """

    def step(k: int) -> dict[str, Any]:
        after: dict[str, Any] = {"type": "array", "maxItems": k - 1}
        if k > 1:
            after["items"] = {"type": "integer", "minimum": 1, "maximum": k - 1}
        return {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": list(types)},
                "instruction": {"type": "string", "minLength": 1, "maxLength": instruction_chars},
                "after": after,
            },
            "required": ["type", "instruction", "after"],
            "additionalProperties": False,
        }

    return {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_steps,
                "prefixItems": [step(k) for k in range(1, max_steps + 1)],
                "items": False,
            }
        },
        "required": ["steps"],
        "additionalProperties": False,
    }


def order(plan: Plan) -> list[int]:
    """Step numbers (1-based) in an order that respects `after`; PlanError on a cycle."""
    pending = {i: set(s.after) for i, s in enumerate(plan.steps, start=1)}
    done: list[int] = []
    while pending:
        ready = sorted(i for i, deps in pending.items() if deps <= set(done))
        if not ready:
            raise PlanError(
                f"steps {sorted(pending)} depend on each other in a cycle; each step may only come after earlier steps"
            )
        done += ready
        for i in ready:
            del pending[i]
    return done


def parse_plan(text: str, types: Sequence[str], max_steps: int) -> Plan:
    """The plan in `text`, checked; PlanError naming the first problem otherwise."""
    try:
        # strict=False: grammar-constrained strings may hold raw control characters (newlines, tabs).
        plan = Plan.model_validate(json.loads(text, strict=False))
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"not valid JSON ({exc.msg} at character {exc.pos}); the output may have been cut off"
        ) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise PlanError(f"not a plan: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    n = len(plan.steps)
    if not 1 <= n <= max_steps:
        raise PlanError(f"the plan has {n} steps; it needs 1 to {max_steps}")
    for i, step in enumerate(plan.steps, start=1):
        if step.type not in types:
            raise PlanError(f"step {i} has type '{step.type}'; use one of: {', '.join(types)}")
        if not step.instruction.strip():
            raise PlanError(f"step {i} has an empty instruction")
        bad = [d for d in step.after if not 1 <= d <= n or d == i]
        if bad:
            raise PlanError(f"step {i} comes after {bad}, which are not other steps of the plan (1..{n})")
    order(plan)
    return plan
