"""Building a config's patterns: leaves first, then the patterns that run other patterns.

Only `adaptive` runs other patterns today. It may name any configured pattern that itself runs
none, so the build is two passes and a cycle cannot occur; a name that is missing or that runs
other patterns is a `ConfigError` naming the field and the choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cluster.errors import ConfigError
from orchestrator.patterns.kit.base import BuildEnv, Pattern, PatternSpecBase
from orchestrator.patterns.kit.embedding import Embedder


def check_references(specs: Mapping[str, PatternSpecBase], file: str = "<config>") -> None:
    """Every pattern a pattern `uses()` exists and runs no patterns of its own."""
    leaves = sorted(n for n, s in specs.items() if not s.uses())
    for name, spec in specs.items():
        for used in sorted(spec.uses()):
            if used not in specs:
                raise ConfigError(
                    file,
                    f"patterns.{name}",
                    f"names pattern '{used}', which is not under patterns: (choose from {', '.join(leaves)})",
                )
            if specs[used].uses():
                raise ConfigError(
                    file,
                    f"patterns.{name}",
                    f"names pattern '{used}', which itself runs other patterns; name one of {', '.join(leaves)}",
                )


def build_patterns(
    specs: Mapping[str, PatternSpecBase], embedder: Embedder | None = None, file: str = "<config>"
) -> dict[str, Pattern]:
    """name → built pattern, every pattern sharing one `embedder` (None: each builds a lazy default)."""
    check_references(specs, file)
    built: dict[str, Pattern] = {}
    leaf_env = BuildEnv(embedder=embedder)
    for name, spec in specs.items():
        if not spec.uses():
            built[name] = spec.build(leaf_env)
    env = BuildEnv(patterns=MappingProxyType(dict(built)), specs=MappingProxyType(dict(specs)), embedder=embedder)
    for name, spec in specs.items():
        if spec.uses():
            built[name] = spec.build(env)
    return {name: built[name] for name in specs}
