"""CLI commands report a failure in one line, never a traceback (the traceback goes to the log)."""

from __future__ import annotations

import orchestrator.client
from orchestrator.cli.main import main


def test_status_prints_one_line_and_logs_the_traceback(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CHORUS_HOME", str(tmp_path))

    def broken(address=None):
        raise RuntimeError("GCS at 10.1.2.3:6379 did not answer\nmore internal detail")

    monkeypatch.setattr(orchestrator.client, "connect", broken)
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("chorus status: RuntimeError: GCS at 10.1.2.3:6379 did not answer")
    assert "Traceback" in (tmp_path / "chorus.log").read_text()
