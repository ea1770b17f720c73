"""council: merge / vote / best_of_n combination, stated agreement, divergence, member failure."""

from __future__ import annotations

import pytest

from cluster.errors import EngineError
from orchestrator.patterns import CouncilDecision
from tests.unit.pattern_kit import InFlight, TopicEmbedder, ask, build, decision, last

MEMBERS = ["generalist", "coder", "reasoner"]


def setup(texts, combine="merge", probe=None, **fields):
    scripts = {role: (lambda req, t=t: t) for role, t in zip(MEMBERS, texts, strict=True)}
    scripts["synthesizer"] = lambda req: "merged answer"
    scripts["judge"] = lambda req: "9" if "Answer to rate:\nblue sky" in last(req) else "3"
    spec = {"kind": "council", "members": MEMBERS, "combine": combine, **fields}
    return build(
        scripts, {"council": spec}, embedder=TopicEmbedder(["sky", "sea"]), probe=probe, delay_s=0.05 if probe else 0.0
    )


async def test_merge_synthesizes_from_numbered_answers_and_states_agreement():
    probe = InFlight()
    chorus, engines = setup(["blue sky", "the sky is blue", "a sea"], probe=probe)
    reply = await chorus.chat(ask("what colour?", "council"))
    assert probe.peak == 3
    assert reply.text.startswith("merged answer\n\nCouncil agreement: 2 of 3 members agree (67%).")
    assert "uncertain" not in reply.text
    prompt = last(engines["synthesizer"].calls[0])
    assert prompt.index("[reference 1]\nblue sky") < prompt.index("[reference 3]\na sea")
    d = decision(reply, CouncilDecision)
    assert (d.combine, d.uncertain, d.answered, d.merge_failed) == ("merge", False, 3, None)


async def test_divergence_is_flagged_as_uncertain():
    chorus, _ = setup(["sky", "sea", "rocks"], diverge_below=0.5)
    reply = await chorus.chat(ask("?", "council"))
    assert "1 of 3 members agree (33%). The members diverge: treat this answer as uncertain." in reply.text
    assert decision(reply, CouncilDecision).uncertain is True


async def test_vote_combination_makes_no_synthesizer_call():
    chorus, engines = setup(["#### 4", "#### 4", "#### 5"], combine="vote", extract="numeric")
    reply = await chorus.chat(ask("?", "council"))
    assert reply.text.startswith("#### 4\n\nCouncil agreement: 2 of 3")
    assert engines["synthesizer"].calls == [] and reply.trace.totals.model_calls == 3


async def test_best_of_n_combination_takes_the_judges_favourite():
    chorus, _ = setup(["grey sea", "blue sky", "sky"], combine="best_of_n")
    reply = await chorus.chat(ask("?", "council"))
    assert reply.text.startswith("blue sky\n\n")
    assert [s.score for s in decision(reply, CouncilDecision).scores] == [3, 9, 3]


async def test_a_failed_member_is_said_in_the_answer():
    chorus, _ = setup(["sky", EngineError("down"), "sky!"])
    reply = await chorus.chat(ask("?", "council"))
    assert "2 of 2 members agree (100%); 1 of 3 members failed to answer." in reply.text
    assert decision(reply, CouncilDecision).failed_members[0].role == "coder"


async def test_the_agreement_line_can_be_left_out():
    chorus, _ = setup(["sky", "sky", "sky"], state_agreement=False)
    reply = await chorus.chat(ask("?", "council"))
    assert reply.text == "merged answer"


@pytest.mark.parametrize(("combine", "roles"), [("merge", {"synthesizer"}), ("best_of_n", {"judge"}), ("vote", set())])
def test_roles_follow_the_combination(combine, roles):
    from orchestrator.patterns.council import CouncilSpec

    spec = CouncilSpec(kind="council", members=MEMBERS, combine=combine)
    assert spec.roles() == set(MEMBERS) | roles


async def test_a_failed_synthesizer_leaves_the_representative_answer():
    chorus, _ = build(
        {
            "generalist": lambda r: "sky",
            "coder": lambda r: "sea",
            "reasoner": lambda r: "blue sky",
            "synthesizer": lambda r: EngineError("synth down"),
        },
        {"council": {"kind": "council", "members": MEMBERS}},
        embedder=TopicEmbedder(["sky", "sea"]),
    )
    reply = await chorus.chat(ask("?", "council"))
    assert reply.text.split("\n\n")[0] in {"sky", "blue sky"}
    assert "synth down" in (decision(reply, CouncilDecision).merge_failed or "")
    assert reply.text.endswith("2 of 3 members agree (67%).")
