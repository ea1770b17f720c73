"""CLI commands report a failure in one line, never a traceback (the traceback goes to the log)."""

from __future__ import annotations

import os

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


def test_a_driver_joins_the_cluster_chorus_up_started_on_its_loopback_address(tmp_path, monkeypatch):
    from orchestrator.cli.main import build_parser, join_local_cluster
    from orchestrator.runtime.ray_env import LOOPBACK
    from orchestrator.runtime.state import RunState, write_state

    monkeypatch.setenv("CHORUS_HOME", str(tmp_path))
    monkeypatch.delenv(LOOPBACK[0], raising=False)
    join_local_cluster(build_parser().parse_args(["status"]))
    assert LOOPBACK[0] not in os.environ  # nothing started here: Ray's own address resolution
    write_state(RunState(address="127.0.0.1:6379", config="c.yaml", pid=os.getpid()))
    join_local_cluster(build_parser().parse_args(["status", "--address", "10.0.0.5:6379"]))
    assert LOOPBACK[0] not in os.environ  # another cluster named: left alone
    join_local_cluster(build_parser().parse_args(["status"]))
    assert os.environ[LOOPBACK[0]] == LOOPBACK[1]
