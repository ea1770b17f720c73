"""The pattern registry: a config's `kind` selects the spec class, and the spec builds its pattern.

To add a pattern: a module with `XSpec(PatternSpecBase)` (a `kind: Literal["x"]` field) and its
pattern class, then add `XSpec` to `PatternSpec` below.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import Answer, Pattern, PatternRequest, PatternSpecBase
from .router import RouterSpec
from .single import SingleSpec

PatternSpec = Annotated[SingleSpec | RouterSpec, Field(discriminator="kind")]

__all__ = ["Answer", "Pattern", "PatternRequest", "PatternSpec", "PatternSpecBase", "RouterSpec", "SingleSpec"]
