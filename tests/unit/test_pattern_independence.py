"""Patterns never import each other, and the kit never imports a pattern: what two patterns share
lives in `orchestrator/patterns/kit/`, so each pattern module can be read (and changed) alone."""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrator.patterns

PATTERNS = Path(orchestrator.patterns.__file__).parent
PATTERN_MODULES = sorted(p.stem for p in PATTERNS.glob("*.py") if p.stem != "__init__")


def imported(path: Path) -> set[str]:
    """Every module `path` imports, names from `from x import y` included as `x.y`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return found


def pattern_imports(path: Path) -> list[str]:
    modules = {f"orchestrator.patterns.{m}" for m in PATTERN_MODULES}
    return sorted(imported(path) & modules)


def test_there_are_patterns_to_check():
    assert {"vote", "consensus", "council", "router", "adaptive"} <= set(PATTERN_MODULES)


def test_no_pattern_module_imports_another():
    offenders = {m: pattern_imports(PATTERNS / f"{m}.py") for m in PATTERN_MODULES}
    assert {m: found for m, found in offenders.items() if found} == {}


def test_the_kit_imports_no_pattern():
    offenders = {p.name: pattern_imports(p) for p in sorted((PATTERNS / "kit").glob("*.py"))}
    assert {m: found for m, found in offenders.items() if found} == {}


def test_the_check_sees_an_import_between_patterns(tmp_path):
    module = tmp_path / "x.py"
    module.write_text("from orchestrator.patterns.vote import VoteSpec\nfrom orchestrator.patterns import router\n")
    assert pattern_imports(module) == ["orchestrator.patterns.router", "orchestrator.patterns.vote"]
