"""Tool calls constrained by a structural tag terminate: chorus bounds the whitespace of their
JSON as the engine's `disable_any_whitespace` bounds plain JSON outputs (vLLM compiles structural
tags without it). Checked on vLLM's own hermes parser and xgrammar, decoding greedily with the
tiny random Qwen2 through transformers (no engine): unbounded, it writes whitespace until
`max_tokens` and the call cannot be read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm")
torch = pytest.importorskip("torch")
xgr = pytest.importorskip("xgrammar")

from serving.engines.vllm_openai import TOOL_JSON_MAX_WHITESPACE, whitespace_bounded  # noqa: E402

TINY = Path(__file__).resolve().parents[2] / ".cache" / "models" / "tiny-qwen2"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
MAX_TOKENS = 200

pytestmark = pytest.mark.skipif(not TINY.exists(), reason="tiny-qwen2 is not prepared (make models)")


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY), AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32)


def _request() -> Any:
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    return ChatCompletionRequest.model_validate(
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "What is the weather in Rome?"}],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }
    )


def _tag(tokenizer: Any, bounded: bool) -> Any:
    from vllm.parser.parser_manager import ParserManager
    from vllm.tool_parsers.tool_strict_level import ToolStrictLevel

    parser_cls = ParserManager.get_parser(tool_parser_name="hermes", enable_auto_tools=True, tool_strict_level="parameter")
    if bounded:
        parser_cls = whitespace_bounded(parser_cls)
    tool_parser = parser_cls.tool_parser_cls(tokenizer, [WEATHER])
    return tool_parser.get_structural_tag(_request(), strict_level=ToolStrictLevel.PARAMETER)


def _greedy(tokenizer: Any, model: Any, tag: Any) -> tuple[str, bool]:
    """The text greedy decoding writes under the tag's grammar, and whether it ended by itself."""
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)
    matcher = xgr.GrammarMatcher(xgr.GrammarCompiler(info).compile_structural_tag(tag))
    prompt = tokenizer.apply_chat_template(_request().model_dump()["messages"], add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    mask = xgr.allocate_token_bitmask(1, info.vocab_size)
    out: list[int] = []
    with torch.no_grad():
        while len(out) < MAX_TOKENS and not matcher.is_terminated():
            logits = model(ids).logits[:, -1, :]
            matcher.fill_next_token_bitmask(mask)
            xgr.apply_token_bitmask_inplace(logits, mask)
            token = int(logits.argmax(-1))
            assert matcher.accept_token(token)
            if matcher.is_terminated():
                break  # the grammar's end: the engine stops on this stop token
            out.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return tokenizer.decode(out), matcher.is_terminated()


def test_the_bound_reaches_every_json_part_of_the_tool_call_grammar(tiny: tuple[Any, Any]) -> None:
    tag = _tag(tiny[0], bounded=True)
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, xgr.structural_tag.JSONSchemaFormat):
            found.append(node)
        for value in getattr(node, "__dict__", {}).values():
            for child in value if isinstance(value, list) else [value]:
                walk(child)

    walk(tag.format)
    assert found and all(f.max_whitespace_cnt == TOOL_JSON_MAX_WHITESPACE for f in found)
    assert _tag(tiny[0], bounded=False).format != tag.format  # vLLM's own leaves it unbounded


def test_a_named_tool_call_of_a_random_model_ends_and_parses(tiny: tuple[Any, Any]) -> None:
    from vllm.tool_parsers.hermes_tool_parser import Hermes2ProToolParser

    tokenizer, model = tiny
    text, ended = _greedy(tokenizer, model, _tag(tokenizer, bounded=False))
    assert not ended  # unbounded: whitespace until max_tokens, the call cut off
    text, ended = _greedy(tokenizer, model, _tag(tokenizer, bounded=True))
    assert ended, text
    calls = Hermes2ProToolParser(tokenizer, [WEATHER]).extract_tool_calls(text, _request())  # type: ignore[arg-type]
    assert calls.tools_called and calls.tool_calls[0].function.name == "get_weather"
    assert json.loads(calls.tool_calls[0].function.arguments)["city"] in {"Paris", "Rome"}
