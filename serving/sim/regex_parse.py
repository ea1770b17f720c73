"""Parsing the regex subset the simulator generates text for (see `serving.sim.regex_gen`).

A small recursive-descent parser into frozen dataclass nodes. The stdlib exposes no public
parser (`re._parser` is private), so chorus carries its own for the subset it needs; anything
outside it raises `ValueError` naming the construct and its position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CATEGORIES = "dDwWsS"  # the classes an escape names: \d \D \w \W \s \S
_CATEGORY_RE = {c: re.compile("\\" + c) for c in CATEGORIES}
_CONTROL = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a", "0": "\0"}
_ANCHOR_ESCAPES = set("AZbB")
_NEGATED_CANDIDATES = "aZ0_ x-.#!~é"  # what a negated set generates: the first it lets through
_GROUP_NAME = re.compile(r"P<([A-Za-z_]\w*)>")
_FLAGS = re.compile(r"[aiLmsux]*(?:-[imsx]*)?[:)]")
_REPEAT = re.compile(r"\{(\d*)(,?)(\d*)\}")


@dataclass(frozen=True)
class Literal:
    char: str


@dataclass(frozen=True)
class Range:
    low: str
    high: str


@dataclass(frozen=True)
class Category:
    code: str  # one of d D w W s S


SetItem = Literal | Range | Category


@dataclass(frozen=True)
class CharSet:
    items: tuple[SetItem, ...]


@dataclass(frozen=True)
class AnyChar:
    pass


@dataclass(frozen=True)
class Anchor:
    pass


@dataclass(frozen=True)
class Concat:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Alternation:
    branches: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    node: Node
    low: int
    high: int | None  # None: unbounded
    possessive: bool = False  # never gives back what it matched: what follows may then fail


Node = Literal | CharSet | AnyChar | Anchor | Concat | Alternation | Repeat


def parse_regex(pattern: str) -> Node:
    """The parsed pattern; ValueError for an invalid pattern or one outside the subset."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"regex {pattern!r} is not a valid regular expression: {exc}") from None
    return _Parser(pattern).parse()


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.src = pattern
        self.pos = 0

    def parse(self) -> Node:
        node = self._alternation()
        if self.pos < len(self.src):  # only an unbalanced ')' stops early; re.compile refuses it
            raise self._unsupported("an unbalanced ')'")
        return node

    def _unsupported(self, what: str) -> ValueError:
        return ValueError(
            f"regex {self.src!r}: {what} at position {self.pos} is outside the subset the simulator "
            "generates (literals, sets, groups, alternation, repeats, anchors; see serving/sim/regex_gen.py)"
        )

    def _peek(self, text: str) -> bool:
        return self.src.startswith(text, self.pos)

    def _alternation(self) -> Node:
        branches = [self._concat()]
        while self._peek("|"):
            self.pos += 1
            branches.append(self._concat())
        return branches[0] if len(branches) == 1 else Alternation(tuple(branches))

    def _concat(self) -> Node:
        parts: list[Node] = []
        while self.pos < len(self.src) and not self._peek("|") and not self._peek(")"):
            parts.append(self._repeat(self._atom()))
        return parts[0] if len(parts) == 1 else Concat(tuple(parts))

    def _repeat(self, node: Node) -> Node:
        while self.pos < len(self.src):
            char = self.src[self.pos]
            bounds = _REPEAT.match(self.src, self.pos) if char == "{" else None
            if char in "*+?":
                low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[char]
                self.pos += 1
            elif bounds is not None and (bounds[1] or bounds[2]):  # `{}` and `{x}` are literal text
                low = int(bounds[1] or 0)
                high = (int(bounds[3]) if bounds[3] else None) if bounds[2] else low
                self.pos = bounds.end()
            else:
                return node
            possessive = self._peek("+")
            if possessive or self._peek("?"):  # lazy: the same strings match
                self.pos += 1
            node = Repeat(node, low, high, possessive)
        return node

    def _atom(self) -> Node:
        char = self.src[self.pos]
        self.pos += 1
        if char == "(":
            return self._group()
        if char == "[":
            return self._set()
        if char == ".":
            return AnyChar()
        if char in "^$":
            return Anchor()
        if char == "\\":
            escaped = self._escape(in_set=False)
            return CharSet((escaped,)) if isinstance(escaped, Category) else escaped
        return Literal(char)

    def _group(self) -> Node:
        if not self._peek("?"):
            return self._group_body()
        self.pos += 1
        flags = _FLAGS.match(self.src, self.pos)
        named = _GROUP_NAME.match(self.src, self.pos)
        if self._peek(":"):
            self.pos += 1
        elif named is not None:
            self.pos = named.end()
        elif any(self._peek(p) for p in ("=", "!", "<=", "<!")):
            # A look-around generates nothing; `regex_example` checks the text against it.
            self.pos += 1 if self.src[self.pos] in "=!" else 2
            self._group_body()
            return Anchor()
        elif flags is not None and "x" not in flags[0]:
            # Flags other than verbose do not change which text the literal parts generate;
            # `regex_example` checks the result.
            self.pos = flags.end()
            return Anchor() if flags[0].endswith(")") else self._group_body()
        else:
            kinds = {"P=": "a back-reference", "#": "a comment", "(": "a conditional", ">": "an atomic group"}
            raise self._unsupported(next((k for p, k in kinds.items() if self._peek(p)), "the verbose flag"))
        return self._group_body()

    def _group_body(self) -> Node:
        node = self._alternation()
        self.pos += 1  # the ')': re.compile checked the balance
        return node

    def _set(self) -> Node:
        negated = self._peek("^")
        self.pos += int(negated)
        items: list[SetItem] = []
        first = True
        while first or not self._peek("]"):
            first = False
            item = self._set_member()
            if isinstance(item, Literal) and self._peek("-") and not self._peek("-]"):
                self.pos += 1
                high = self._set_member()
                if not isinstance(high, Literal):
                    raise self._unsupported("a range ending in a class")
                item = Range(item.char, high.char)
            items.append(item)
        self.pos += 1  # the ']'
        if negated:
            return Literal(_outside(items, self))
        if len(items) == 1 and isinstance(items[0], Literal):
            return items[0]  # `[.]` is one character, no draw
        return CharSet(tuple(items))

    def _set_member(self) -> SetItem:
        char = self.src[self.pos]
        self.pos += 1
        if char != "\\":
            return Literal(char)
        escaped = self._escape(in_set=True)
        if isinstance(escaped, Anchor):  # re.compile refuses \A and \Z in a set already
            raise self._unsupported("an anchor in a set")
        return escaped

    def _escape(self, *, in_set: bool) -> Literal | Category | Anchor:
        char = self.src[self.pos]
        self.pos += 1
        if char in CATEGORIES:
            return Category(char)
        if char == "b" and in_set:
            return Literal("\b")
        if char in _ANCHOR_ESCAPES:
            return Anchor()
        if char in _CONTROL and not (char == "0" and self.src[self.pos : self.pos + 1].isdigit()):
            return Literal(_CONTROL[char])
        if char in "xuU":
            digits = {"x": 2, "u": 4, "U": 8}[char]
            self.pos += digits
            return Literal(chr(int(self.src[self.pos - digits : self.pos], 16)))
        if char.isdigit():
            self.pos -= 1
            raise self._unsupported("a back-reference or an octal escape")
        if char.isalnum():
            self.pos -= 1
            raise self._unsupported(f"the escape \\{char}")
        return Literal(char)


def _outside(items: list[SetItem], parser: _Parser) -> str:
    """The first plain character a negated set lets through."""
    for char in _NEGATED_CANDIDATES:
        if not any(_contains(item, char) for item in items):
            return char
    raise parser._unsupported("a negated set that excludes every plain character")


def _contains(item: SetItem, char: str) -> bool:
    match item:
        case Literal(c):
            return c == char
        case Range(low, high):
            return low <= char <= high
        case Category(code):
            return _CATEGORY_RE[code].fullmatch(char) is not None
