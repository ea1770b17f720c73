"""What a simulated engine answers: filler text, or text that honours the request's constraint.

Every draw comes from a generator seeded by (engine seed, model name, prompt text, sampling seed,
temperature), so the same request gets the same answer in every run and every process.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from serving.sim.regex_gen import regex_example
from serving.sim.tokens import prompt_text, stable_hash, text_pieces
from serving.types import Choice, GenerationRequest, JsonSchema, Regex, TokenLogprob

logger = logging.getLogger(__name__)

Finish = Literal["stop", "length"]
NUMERIC_MARK = "####"  # GSM8K-style final answer line that numeric voting reads
CHOICE_CONFIDENCE = 0.85  # probability reported for the chosen option of a Choice
LENGTH_SIGMA = 0.6  # spread of free-text answer lengths (log-normal)
# Short words (≤ CHARS_PER_TOKEN characters) so a generated text counts one token per word.
WORDS = (
    "the", "a", "of", "and", "to", "in", "is", "it", "that", "for", "on", "with", "as", "be", "by",
    "this", "are", "we", "can", "use", "more", "one", "each", "step", "then", "so", "if", "not",
    "all", "new", "data", "time", "fast", "run", "two", "set", "its", "than", "our", "also", "when",
    "only", "both", "case", "sum", "key", "way", "map", "list", "node", "part", "rate", "cost",
    "load", "work", "test", "plan", "code", "fact", "view", "form", "goal", "rule"
)


@dataclass(frozen=True)
class Answer:
    """A drawn completion: one text piece per token (they concatenate to the text)."""

    pieces: list[str]
    finish_reason: Finish
    logprobs: list[TokenLogprob] | None


def draw_answer(
    request: GenerationRequest, *, seed: int, model: str, median_tokens: int, room: int
) -> Answer:
    """The answer to `request`, cut at `max_tokens` or at the `room` the context leaves."""
    s = request.sampling
    rng = random.Random(stable_hash(seed, model, prompt_text(request), s.seed, s.temperature))
    c = request.constraint
    logprobs = None
    if isinstance(c, Choice):
        answer = rng.choice(c.options)
        if s.logprobs is not None:
            logprobs = [choice_logprob(answer, c.options)]
        pieces = text_pieces(answer)
    elif isinstance(c, JsonSchema):
        pieces = text_pieces(json.dumps(json_example(c.json_schema, rng), separators=(",", ":")))
    elif isinstance(c, Regex):
        pieces = text_pieces(_regex_or_filler(c.pattern, rng))
    else:
        pieces = text_pieces(_free_text(request, rng, median_tokens))
    pieces = pieces or [""]  # an empty answer still takes one step (end of sequence)
    cap = min(s.max_tokens, room)
    if len(pieces) > cap:
        return Answer(pieces[:cap], "length", logprobs)
    return Answer(pieces, "stop", logprobs)


def _free_text(request: GenerationRequest, rng: random.Random, median_tokens: int) -> str:
    length = max(1, round(rng.lognormvariate(math.log(median_tokens), LENGTH_SIGMA)))
    mark = NUMERIC_MARK in prompt_text(request)  # the prompt asks for a final '#### <number>' line
    if mark:  # an answer that follows the format ends within max_tokens
        length = max(1, min(length, request.sampling.max_tokens - 4))
    text = " ".join(rng.choice(WORDS) for _ in range(length))
    if mark:
        text += f"\n{NUMERIC_MARK} {rng.randint(40, 43)}"
    return text


def _regex_or_filler(pattern: str, rng: random.Random) -> str:
    """A match for `pattern`; filler words (not matching, logged) when the generator cannot make one."""
    try:
        return regex_example(pattern, rng)
    except ValueError as exc:
        logger.warning("simulated answer does not honour the regex constraint: %s", exc)
        return " ".join(rng.choice(WORDS) for _ in range(8))


def choice_logprob(answer: str, options: list[str]) -> TokenLogprob:
    """The chosen option at CHOICE_CONFIDENCE, the others sharing the rest."""
    others = [o for o in options if o != answer]
    top = {answer: math.log(CHOICE_CONFIDENCE if others else 1.0)}
    for o in others:
        top[o] = math.log((1.0 - CHOICE_CONFIDENCE) / len(others))
    return TokenLogprob(token=answer, logprob=top[answer], top=top)


def json_example(schema: dict[str, Any] | bool, rng: random.Random, root: dict[str, Any] | None = None) -> Any:
    """A minimal instance of a JSON schema: required-looking fields filled, arrays at their
    minimum length, enums and bounds honoured. Covers the closed schemas chorus's patterns use
    (object, array with items/prefixItems, string, integer, number, boolean, null, enum, const,
    anyOf/oneOf, local $ref, boolean schemas)."""
    if isinstance(schema, bool):
        return None  # `true` accepts anything; `false` nothing (callers never ask for an item then)
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            if part:
                target = target[part]
        return json_example(target, rng, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return json_example(schema[key][0], rng, root)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: json_example(sub, rng, root) for name, sub in props.items()}
    if kind == "array":
        prefix = schema.get("prefixItems", [])
        items = schema.get("items", {})
        n = int(schema.get("minItems", 0))
        if items is False:
            n = min(n, len(prefix))
        return [json_example(prefix[i] if i < len(prefix) else items, rng, root) for i in range(n)]
    if kind == "string":
        return _json_string(schema, rng)
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + (1 if "exclusiveMinimum" in schema else 0))
        high = schema.get("maximum", max(low, 0) + 10)
        value = rng.randint(math.ceil(low), math.floor(high)) if high >= low else low
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def _json_string(schema: dict[str, Any], rng: random.Random) -> str:
    if "pattern" in schema:
        try:
            return regex_example(schema["pattern"], rng)
        except ValueError as exc:  # fall back to words within the length bounds
            logger.warning("simulated JSON string does not honour its pattern: %s", exc)
    low, high = int(schema.get("minLength", 1)), int(schema.get("maxLength", 60))
    words = " ".join(rng.choice(WORDS) for _ in range(12))[:high].strip()
    return words if len(words) >= low else (words + " " + "a" * low)[:high]
