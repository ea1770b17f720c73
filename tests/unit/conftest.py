"""Unit tests keep chorus's home (run state, the adaptive outcome store) in a temporary folder:
an app that serves feedback, or an adaptive pattern with `learn: true`, must never write to the
developer's own `~/.chorus`."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def chorus_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "chorus-home"
    monkeypatch.setenv("CHORUS_HOME", str(home))
    return home
