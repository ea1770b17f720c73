"""The recorded engine: replaying real answers by finding the recorded question in the prompt."""

from __future__ import annotations

import json

import pytest

from cluster.errors import EngineError, NotRecorded
from cluster.spec import ModelSpec
from orchestrator.eval.data import load_items
from orchestrator.patterns.kit import prompts
from serving.engines.recorded import RecordedEngine
from serving.types import Choice, GenerationRequest, Message
from tests.unit.quality_data import GSM8K, MMLU_PRO, needs_quality, rows


def request(*messages: Message, constraint=None) -> GenerationRequest:
    return GenerationRequest(messages=list(messages), constraint=constraint)


def user(text: str) -> Message:
    return Message(role="user", content=text)


async def engine(path, model: str, answers_of: str | None = None) -> RecordedEngine:
    spec = ModelSpec(
        name=model, source=str(path), engine="recorded",
        recorded={"answers_of": answers_of, "tokens_per_s": 50, "gpus": 2} if answers_of else None,
    )
    e = RecordedEngine(spec)
    await e.start()
    return e


@pytest.fixture
def records(tmp_path):
    path = tmp_path / "records.jsonl"
    lines = [
        {"question": "What is 2 + 2?", "answers": {"m": "2 + 2 = 4\n#### 4", "n": None}},
        {"question": "What is 2 + 2? Then double it.", "answers": {"m": "#### 8"}},
        {"question": "Pick one.", "options": ["red", "blue"], "answers": {"m": "The answer is (B)."}},
        {"question": "Pick one.", "options": ["cat", "dog"], "answers": {"m": "The answer is (A)."}},
        {"question": "Batch row", "model": "m", "text": "from a batch job"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


async def test_answers_by_the_question_in_the_prompt(records):
    e = await engine(records, "m")
    assert (await e.generate(request(user("What is 2 + 2?")))).text.endswith("#### 4")
    # A longer question that starts with a shorter one gets its own answer.
    assert (await e.generate(request(user("What is 2 + 2? Then double it.")))).text == "#### 8"
    # Inside an escalation prompt (question quoted after 'Question:', with a format instruction).
    esc = prompts.with_answer_format(prompts.references_messages(prompts.ESCALATE_SYSTEM, "What is 2 + 2?", ["#### 5"]))
    assert (await e.generate(GenerationRequest(messages=esc))).text.endswith("#### 4")
    # Same question, different options: the options decide.
    assert (await e.generate(request(user("Pick one.\n\nOptions:\n(A) cat\n(B) dog")))).text == "The answer is (A)."
    assert (await e.generate(request(user("Batch row")))).text == "from a batch job"


async def test_a_missing_answer_is_empty_and_cost_is_estimated(records):
    e = await engine(records, "n", answers_of="n")
    result = await e.generate(request(user("What is 2 + 2?")))
    assert result.text == "" and result.usage.completion_tokens == 0
    m = await engine(records, "m")
    result = await m.generate(request(user("What is 2 + 2?")))
    assert result.usage.completion_tokens == round(len("2 + 2 = 4\n#### 4") / 4)
    assert result.engine_seconds == pytest.approx(result.usage.completion_tokens / 50)


async def test_what_was_not_recorded_fails_clearly(records):
    e = await engine(records, "m")
    with pytest.raises(NotRecorded, match="no recorded answer"):
        await e.generate(request(user("Something else entirely")))
    with pytest.raises(NotRecorded, match="constrained"):
        await e.generate(request(user("What is 2 + 2?"), constraint=Choice(options=["yes", "no"])))
    with pytest.raises(EngineError, match="holds no answers of 'nobody'"):
        await engine(records, "nobody")


@needs_quality
async def test_every_recorded_question_is_found_from_its_eval_prompt():
    for path, model in ((GSM8K, "gpt-4o-mini"), (MMLU_PRO, "gemini-1.5-pro-002")):
        e = await engine(path, model)
        recorded = rows(path)
        items = load_items(path)
        for item, row in zip(items, recorded, strict=True):
            out = await e.generate(request(user(item.prompt())))
            assert out.text == (row["answers"][model] or "")


async def test_a_pattern_calling_a_live_model_is_reported_not_evaluable(records):
    from orchestrator.eval.data import Item
    from orchestrator.eval.runner import Evaluator
    from orchestrator.service.config import parse_config

    config = parse_config(
        {
            "models": [{"name": "m", "source": str(records), "engine": "recorded"}, {"name": "live", "source": "/models/x"}],
            "roles": {"a": "m", "b": "live"},
            "patterns": {"mixed": {"kind": "vote", "members": ["a", "b"]}, "offline": {"kind": "single", "role": "a"}},
        },
        "test.yaml",
    )
    ev = await Evaluator.create(config)
    mixed, offline = await ev.run(["mixed", "offline"], [Item(id="1", question="What is 2 + 2?", gold="4")], "numeric")
    assert mixed.error is not None and "live model(s) live" in mixed.error
    assert offline.error is None and offline.accuracy() == 1.0


async def test_a_recorded_model_answers_http_chat_as_a_one_call_pattern(records):
    """A recorded model has no vLLM OpenAI layer: its chat completions are answered by replay."""
    import httpx

    from orchestrator.api.app import build_app
    from orchestrator.routing.fleet import Fleet
    from orchestrator.routing.replicas import LocalReplica
    from orchestrator.service.chorus import Chorus
    from orchestrator.service.config import parse_config

    config = parse_config({"models": [{"name": "m", "source": str(records), "engine": "recorded"}], "roles": {"a": "m"},
                           "patterns": {"solo": {"kind": "single", "role": "a"}}}, "test.yaml")  # fmt: skip
    chorus = Chorus(config, Fleet({"m": [LocalReplica(await engine(records, "m"))]}))
    assert [e.openai_layer for e in await chorus.catalog() if e.kind == "model"] == [False]
    transport = httpx.ASGITransport(app=build_app(chorus))
    async with httpx.AsyncClient(transport=transport, base_url="http://chorus/v1") as http:
        r = await http.post("/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "What is 2 + 2?"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "2 + 2 = 4\n#### 4"
