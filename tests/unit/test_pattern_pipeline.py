"""pipeline: each step sees the previous output through its named template; errors end the chain."""

from __future__ import annotations

import pytest

from cluster.errors import ConfigError, EngineError, PatternFailed
from orchestrator.patterns.kit.prompts import PIPELINE_TEMPLATES
from orchestrator.service.config import parse_config
from tests.unit.pattern_kit import ask, build, last

STEPS = [
    {"role": "generalist", "template": "draft"},
    {"role": "reasoner", "template": "critique"},
    {"role": "coder", "template": "refine", "instruction": "Keep it short."},
]


def setup(coder=None):
    scripts = {
        "generalist": lambda req: "DRAFT",
        "reasoner": lambda req: "CRITIQUE of " + last(req).split("Previous output:\n")[1],
        "coder": coder or (lambda req: "FINAL from " + last(req).split("Previous output:\n")[1]),
    }
    return build(scripts, {"pipe": {"kind": "pipeline", "steps": STEPS}})


async def test_each_step_works_on_the_previous_output():
    chorus, engines = setup()
    reply = await chorus.chat(ask("task", "pipe"))
    assert reply.text == "FINAL from CRITIQUE of DRAFT"
    assert [s.name for s in reply.trace.steps] == ["step[0]:draft", "step[1]:critique", "step[2]:refine"]
    assert [s.role for s in reply.trace.steps] == ["generalist", "reasoner", "coder"]
    first = engines["generalist"].calls[0]
    assert first.messages[0].content == PIPELINE_TEMPLATES["draft"] and "Previous output" not in last(first)
    coder = engines["coder"].calls[0]
    assert coder.messages[0].content == PIPELINE_TEMPLATES["refine"] + "\nKeep it short."
    assert last(coder).startswith("Request:\ntask\n\nPrevious output:\n")


async def test_a_failed_step_ends_the_chain():
    chorus, _ = setup(coder=lambda req: EngineError("down"))
    with pytest.raises(PatternFailed, match="step\\[2\\]:refine"):
        await chorus.chat(ask("task", "pipe"))


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"role": "a", "template": "refine"}], "the first step has none"),
        ([{"role": "a", "template": "custom"}], "without an instruction"),
        ([{"role": "a", "template": "poem"}], "Input should be"),
    ],
)
def test_bad_chains_are_config_errors(steps, message):
    data = {
        "models": [{"name": "m", "source": "x"}],
        "roles": {"a": "m"},
        "patterns": {"p": {"kind": "pipeline", "steps": steps}},
    }
    with pytest.raises(ConfigError, match=message):
        parse_config(data, "c.yaml")
