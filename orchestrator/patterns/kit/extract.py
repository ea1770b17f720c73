"""Reading the final answer out of a model's free text: a number, or a choice letter.

Real answers end in many ways (see ../shared/quality): `#### 18`, `\\boxed{18}`, "The answer is
$18.00", "Answer: (C)", or only a sentence. Each extractor looks for an explicit final-answer
marker first, strongest first, and only then falls back to a weaker guess; `*_with_source`
says which rule fired, so callers can tell a stated value from a guess (semantic voting does).

Numbers, in order of trust:
1. the last `#### <number>` line (the GSM8K format chorus asks members for);
2. the last `\\boxed{...}` (LaTeX; `\\frac{a}{b}` and `\\dfrac` read as a/b);
3. the last "the (final) answer is …" / "Answer: …" statement, first number after it;
4. the last sentence that holds a number: the number in it that the solution computed last,
   else the one after its own last '=', else its last (see `_concluding_number`).
Numbers drop currency signs, thousands separators, trailing zeros and a trailing `%`; `a/b`
fractions become decimals; so `$1,200.50`, `1200.5` and `\\frac{2401}{2}` all key as `1200.5`.

Choices (letters A–J, or any configured labels), in order of trust:
1. the first "answer is (C)" / "answer is C" statement (5-shot completions often run on into an
   invented next question with an answer of its own; the first statement is the model's);
2. the last "Answer: C" / "Answer: (C)" line;
3. an answer that is only the label ("C", "(C)", "C.").
No guess beyond that: a letter somewhere in prose is too often an article or a pronoun.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Literal

NumberSource = Literal["hashes", "boxed", "statement", "last_sentence"]
ChoiceSource = Literal["statement", "answer_line", "bare"]

LETTERS: tuple[str, ...] = tuple("ABCDEFGHIJ")

# A number as written in prose: optional sign and currency, thousands separators, decimals,
# an optional '/denominator'. Commas are only thousands separators when followed by 3 digits.
_NUM = r"[-−+]?\s?[$€£]?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?/\s?\d+(?:\.\d+)?)?|[-−+]?\.\d+"
_NUMBER = re.compile(_NUM)
_HASHES = re.compile(r"####\s*([^\n]*)")
_STATEMENT = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=|would be|will be)\s*:?\s*([^\n]*)", re.IGNORECASE
)
# Sentence ends: a line break, or '.', '!' or '?' followed by a space (not a decimal point).
_SENTENCE_END = re.compile(r"\n+|(?<=[.!?])\s+")
_RESULT = re.compile(r"=\s*([^=\n]*)")
# GSM8K calculator annotations ("<<48/6=8>>8") repeat a result, sometimes with another sign.
_CALCULATOR = re.compile(r"<<[^<>]*>>")
_LEADING_NUMBER = re.compile(r"\s*[-−+]?\s?[$€£]?\s?\.?\d|\s*\\(?:d?t?frac|boxed)")
_FRAC = re.compile(r"\\d?t?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}|\\[,;!: ]|\\%|\\\$|\\left|\\right")


def normalize_number(token: str) -> str | None:
    """'$1,200.50' → '1200.5'; '3/4' → '0.75'; '-0.0' → '0'; text with no number → None."""
    cleaned = (
        token.replace(",", "").replace("$", "").replace("€", "").replace("£", "").replace("−", "-")
        .replace(" ", "").rstrip("%").lstrip("+").strip()
    )
    try:
        if "/" in cleaned:
            num, den = cleaned.split("/", 1)
            if float(den) == 0:
                return None
            value = float(Fraction(num) / Fraction(den))
        else:
            value = float(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(value):
        return None
    if value == int(value):
        return str(int(value))
    return f"{value:.10f}".rstrip("0").rstrip(".")


def _boxed_contents(text: str) -> list[str]:
    """The contents of every `\\boxed{...}` (or `\\fbox{...}`), braces balanced, in order."""
    out = []
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    out.append(text[start:i])
                    break
    return out


def _delatex(text: str) -> str:
    """Turn the LaTeX a number may be wrapped in into plain text: fractions, \\text{}, spacing."""
    text = _FRAC.sub(lambda m: f"{m.group(1)}/{m.group(2)}", text)
    text = _LATEX_NOISE.sub(lambda m: m.group(1) or " ", text)
    return text.replace("{", "").replace("}", "")


def _first_number(fragment: str) -> str | None:
    match = _NUMBER.search(_delatex(fragment))
    return normalize_number(match.group(0)) if match else None


def number_with_source(text: str) -> tuple[str | None, NumberSource | None]:
    """The final number of a solution and the rule that found it (see the module doc)."""
    text = _CALCULATOR.sub("", text)
    hashes = list(_HASHES.finditer(text))
    if hashes:
        value = _first_number(hashes[-1].group(1))
        if not text[hashes[-1].end() :].strip():
            # The final line states the answer: "#### 4", "#### Jackson is 4 years old", or
            # "#### Cannot be shared equally" (no number: nothing to vote for).
            return (value, "hashes") if value is not None else (None, None)
        if value is not None and _LEADING_NUMBER.match(hashes[-1].group(1)):
            return value, "hashes"
        # A '####' line that does not start with a number, with text after it, is a markdown heading.
    boxed = _boxed_contents(text)
    if boxed:
        # "\boxed{13 - 8 = 5}": the result is after the last '='.
        value = _first_number(boxed[-1].rsplit("=", 1)[-1])
        if value is not None:
            return value, "boxed"
    for statement in reversed(_STATEMENT.findall(text)):
        value = _first_number(statement)
        if value is not None:
            return value, "statement"
    value = _concluding_number(_delatex(text))
    return (value, "last_sentence") if value is not None else (None, None)


def _numbers(fragment: str) -> list[str]:
    return [v for v in (normalize_number(t) for t in _NUMBER.findall(fragment)) if v is not None]


def _concluding_number(text: str) -> str | None:
    """The answer a solution states in prose, from its last sentence that holds a number.

    Solutions compute their answer last and then restate it ("So, 5 springs would create 72000
    jellyfish in 4 hours."), often beside other numbers from the question. So: the sentence's
    number equal to the solution's last computed result (after its last '='), else the number
    after the sentence's own last '=', else the sentence's last number.
    """
    sentences = [s for s in _SENTENCE_END.split(text) if _NUMBER.search(s)]
    if not sentences:
        return None
    last = sentences[-1]
    numbers = _numbers(last)
    if not numbers:
        return None
    results = [_numbers(tail) for tail in _RESULT.findall(text)]
    computed = next((r[0] for r in reversed(results) if r), None)
    if computed is not None and computed in numbers:
        return computed
    own = [_numbers(tail) for tail in _RESULT.findall(last)]
    own_result = next((r[0] for r in reversed(own) if r), None)
    return own_result if own_result is not None else numbers[-1]


def extract_number(text: str) -> str | None:
    """The final number of a solution, normalized (see `normalize_number`)."""
    return number_with_source(text)[0]


@lru_cache(maxsize=64)
def _choice_patterns(labels: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    alts = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    # Letters must stand alone ("(C)", "C.", "C)", "C" then a space or end), so "answer is Carbon" is not C.
    label = rf"[\(\[\*]*\s*({alts})\s*(?:[\)\]\*.:,<]|\s|$)"
    statement = re.compile(rf"answer\s+is\s*:?\s*(?:option\s+|choice\s+)?\$?\\?(?:boxed\{{|text\{{)?{label}", re.IGNORECASE)
    line = re.compile(rf"answer\s*:\s*\**\s*(?:option\s+|choice\s+)?{label}", re.IGNORECASE)
    bare = re.compile(rf"^\s*[\(\[]?\s*({alts})\s*[\)\]]?\s*\.?\s*$", re.IGNORECASE)
    return statement, line, bare


def _canonical(found: str, labels: Sequence[str]) -> str:
    return next(label for label in labels if label.lower() == found.lower())


def choice_with_source(text: str, labels: Sequence[str] = LETTERS) -> tuple[str | None, ChoiceSource | None]:
    """The choice an answer states and the rule that found it (see the module doc)."""
    if not labels:
        return None, None
    statement, line, bare = _choice_patterns(tuple(labels))
    # A statement's label must match case exactly for one-letter labels ("the answer is a ..." is prose).
    for match in statement.finditer(text):
        if len(match.group(1)) > 1 or match.group(1) in labels:
            return _canonical(match.group(1), labels), "statement"
    lines = [m for m in line.finditer(text) if len(m.group(1)) > 1 or m.group(1) in labels]
    if lines:
        return _canonical(lines[-1].group(1), labels), "answer_line"
    only = bare.match(text)
    if only:
        return _canonical(only.group(1), labels), "bare"
    return None, None


def extract_choice(text: str, labels: Sequence[str] = LETTERS) -> str | None:
    """The label an answer states ('The answer is (C).' → 'C'), or None when it states none."""
    return choice_with_source(text, labels)[0]
