"""A reference grader for GSM8K answers, written independently of chorus's extractor.

It does not pick one number: it finds the span where the answer states its result and calls
the answer right when the gold value is among the numbers of that span (compared as exact
decimals). The span is the text after the last '####'; else the last \\boxed{...}; else the
line of the last "answer is"/"answer:" statement; else the last sentence holding a digit.
Agreement between this grader and `extract_number(answer) == gold` is what tests measure.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

_DIGITS = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def _values(span: str) -> set[Fraction]:
    plain = span.replace(",", "").replace("−", "-")
    plain = re.sub(r"\\d?frac\{(\d+)\}\{(\d+)\}", r"\1/\2", plain)
    out = set()
    for token in _DIGITS.findall(plain):
        try:
            if "/" in token:
                num, den = token.split("/")
                if int(den) != 0:
                    out.add(Fraction(Decimal(num)) / Fraction(int(den)))
            else:
                out.add(Fraction(Decimal(token)))
        except (InvalidOperation, ValueError):
            continue
    return out


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    open_at = text.find("{", start)
    if open_at < 0:
        return None
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1 : i]
    return text[open_at + 1 :]


def answer_span(text: str) -> str:
    """Where the answer states its result; a marker whose span holds no digit is passed over
    (a '#### Step 2' heading), except a final '#### <words>' line, which states a non-number."""
    text = re.sub(r"<<.*?>>", "", text)  # calculator annotations repeat results
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
        line = tail.split("\n", 1)[0]
        if re.match(r"\s*[-$]?\s*\d", line) or (not tail.strip("\n ").count("\n") and not re.search(r"\d", line)):
            return line
    boxed = _last_boxed(text)
    if boxed is not None and re.search(r"\d", boxed):
        return boxed
    lowered = text.lower()
    at = max(lowered.rfind("answer is"), lowered.rfind("answer:"))
    if at >= 0:
        return text[at:].split("\n", 1)[0]
    pieces = [p for p in re.split(r"\n|(?<=[.!?])\s", text) if re.search(r"\d", p)]
    return pieces[-1] if pieces else ""


def reference_correct(text: str | None, gold: str) -> bool:
    if not text:
        return False
    return Fraction(Decimal(gold.replace(",", ""))) in _values(answer_span(text))
