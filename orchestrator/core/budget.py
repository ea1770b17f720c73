"""What one request may spend: model calls and tokens. Set in the config, overridden per request."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Budget(BaseModel):
    """Limits one request may spend; `None` means unlimited."""

    # A value: shared as a default and between requests, so never changed in place.
    model_config = ConfigDict(frozen=True)

    max_model_calls: int | None = Field(None, ge=1, le=10_000)
    max_tokens: int | None = Field(None, ge=1, description="Prompt + completion tokens over all steps.")
