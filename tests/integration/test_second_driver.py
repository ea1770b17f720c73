"""Another process finds the named orchestrator through Ray: the Python client and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration


def run(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHORUS_HOME": "/nonexistent-chorus-home"}  # use --address, not a recorded run
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_client_api_from_another_driver(chorus_server):
    script = textwrap.dedent(
        f"""
        import json
        from orchestrator.client import connect
        from orchestrator.patterns import RouterDecision
        chorus = connect({chorus_server.address!r})
        reply = chorus.ask("router", "What is 2 + 2?", max_tokens=4)
        models = [e.id for e in chorus.models()]
        assert isinstance(reply.trace.decision, RouterDecision)  # through Ray, as its pattern's model
        print(json.dumps({{"route": reply.trace.decision.model_dump(), "calls": reply.trace.totals.model_calls,
                           "completion": reply.trace.steps[-1].completion_tokens, "models": models}}))
        """
    )
    out = run([sys.executable, "-c", script])
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["route"]["label"] in {"code", "math", "general"}
    assert data["calls"] == 2 and data["completion"] <= 4
    assert {"router", "single", "tiny", "tiny-b"} <= set(data["models"])


def test_cli_ask_prints_answer_and_trace(chorus_server):
    out = run([sys.executable, "-m", "orchestrator.cli.main", "ask", "--address", chorus_server.address, "-m", "single", "Hi"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "trace of 'single' (single)" in out.stdout
    assert any(line.split()[:4] == ["answer", "generalist", "tiny", "0"] for line in out.stdout.splitlines())


def test_cli_ask_json_is_the_whole_reply(chorus_server):
    out = run(
        [sys.executable, "-m", "orchestrator.cli.main", "ask", "--address", chorus_server.address, "--json", "-m", "tiny", "Hi"]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    reply = json.loads(out.stdout)
    assert reply["model"] == "tiny" and reply["trace"]["steps"][0]["model"] == "tiny"


def test_cli_status_lists_replicas(chorus_server):
    out = run([sys.executable, "-m", "orchestrator.cli.main", "status", "--address", chorus_server.address])
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert any(line.split()[:3] == ["tiny", "0", "healthy"] for line in lines)
    assert any(line.split()[:3] == ["tiny-b", "0", "healthy"] for line in lines)


def test_cli_ask_unknown_pattern_fails_clearly(chorus_server):
    out = run([sys.executable, "-m", "orchestrator.cli.main", "ask", "--address", chorus_server.address, "-m", "nope", "Hi"])
    assert out.returncode == 1
    assert "The model 'nope' does not exist" in out.stderr
