"""Strings that match a regular expression, for the simulator's `Regex` constraints.

A generator that walks a pattern parsed by `serving.sim.regex_parse` with a seeded
`random.Random`. The stdlib exposes no public regex parser (`re._parser` is private), and the
PyPI generators (`exrex`, `rstr`) are built on that same private module, so chorus carries its
own, for the subset of Python's syntax that structured outputs use.

The subset:

* literals and escaped punctuation; `\\n \\t \\r \\f \\v \\xhh \\uhhhh`;
* `.` and the classes `\\d \\D \\w \\W \\s \\S`; sets `[...]` and `[^...]` with ranges, escapes
  and those classes inside;
* groups `(...)`, `(?:...)`, `(?P<name>...)`, with inline flags other than verbose (`x`);
  alternation `|`;
* repeats `* + ? {n} {n,} {,m} {n,m}`, greedy, lazy (`?`) or possessive (`+`);
* anchors `^ $ \\A \\Z \\b \\B` and look-arounds (they generate nothing; the generated text is
  then checked against the whole pattern, as it is for possessive repeats).

Anything else (back-references, conditionals, atomic groups, comments, verbose mode) raises
`ValueError` naming the construct and its position, as does a pattern that is not a valid
regular expression. How text is drawn: an alternation picks a branch at random, a set picks one
of its members (a range one character of it), a repeat runs its minimum count but at least once
where it may (so an optional part shows), `.` gives `a`, `\\d` gives `7`, `\\s` a space and
`\\w` `a`; a negated set gives the first of a few plain characters it does not exclude.
"""

from __future__ import annotations

import random
import re

from serving.sim.regex_parse import (
    Alternation,
    Anchor,
    AnyChar,
    Category,
    CharSet,
    Concat,
    Literal,
    Node,
    Range,
    Repeat,
    SetItem,
    parse_regex,
)

# The character each class generates.
_CATEGORY_TEXT = {"d": "7", "D": "a", "w": "a", "W": " ", "s": " ", "S": "a"}


def regex_example(pattern: str, rng: random.Random) -> str:
    """A short string that fully matches `pattern`; ValueError outside the subset above."""
    tree = parse_regex(pattern)
    text = generate(tree, rng)
    # The text follows one path through the pattern, so it matches, unless a zero-width
    # assertion or a possessive repeat excludes that path: only then ask `re` (a check that
    # can backtrack for a long time on nested repeats, so it is not made when not needed).
    if _may_exclude(tree) and re.fullmatch(pattern, text) is None:
        raise ValueError(
            f"regex {pattern!r}: the text generated for it ({text!r}) does not match; its anchors, "
            "look-arounds or possessive repeats exclude it"
        )
    return text


def generate(node: Node, rng: random.Random) -> str:
    match node:
        case Literal(char):
            return char
        case AnyChar():
            return "a"
        case Anchor():
            return ""
        case CharSet(items):
            return rng.choice([_draw(item, rng) for item in items])
        case Concat(parts):
            return "".join(generate(p, rng) for p in parts)
        case Alternation(branches):
            return generate(rng.choice(branches), rng)
        case Repeat(inner, low, high):
            count = low if low > 0 else min(1, 1 if high is None else high)
            return "".join(generate(inner, rng) for _ in range(count))


def _may_exclude(node: Node) -> bool:
    """Whether the pattern has parts that can reject the text the generator walks out."""
    match node:
        case Anchor():
            return True
        case Concat(parts) | Alternation(parts):
            return any(_may_exclude(p) for p in parts)
        case Repeat(inner, _, _, possessive):
            return possessive or _may_exclude(inner)
        case _:
            return False


def _draw(item: SetItem, rng: random.Random) -> str:
    match item:
        case Literal(char):
            return char
        case Range(low, high):
            return chr(rng.randint(ord(low), ord(high)))
        case Category(code):
            return _CATEGORY_TEXT[code]
