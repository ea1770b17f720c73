"""The commands a user runs, as separate processes: `chorus up` (its keeper starts a loopback Ray
cluster, the engine and the Serve app, and returns once ready), `chorus ask`, `chorus status`,
`chorus down` — what `make run` does, on SmolLM2 with the HTTP server on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from orchestrator.runtime.state import read_state

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def chorus(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "orchestrator.cli.main", *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def test_up_ask_status_down_as_separate_commands(tmp_path, monkeypatch):
    data = yaml.safe_load((ROOT / "configs" / "cpu-demo.yaml").read_text())
    data["models"][0]["source"] = str(ROOT / ".cache" / "models" / "smollm2-135m")
    data["server"] = {**data.get("server", {}), "port": 0}
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(data))
    # A user's shell: no Ray variables of the test session's cluster, chorus's home of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"CHORUS_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    monkeypatch.setenv("CHORUS_HOME", env["CHORUS_HOME"])

    up = chorus("up", "-c", str(config), env=env, timeout=600)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert "chorus is up: http://127.0.0.1:" in up.stdout
        state = read_state()
        assert state is not None and state.url is not None and state.pid is not None

        ask = chorus("ask", "--pattern", "single", "--max-tokens", "8", "Say hello.", env=env, timeout=300)
        assert ask.returncode == 0, ask.stderr[-2000:]
        assert "trace of 'single'" in ask.stdout and "smollm2" in ask.stdout
        assert "Traceback" not in ask.stderr

        status = chorus("status", env=env, timeout=120)
        assert status.returncode == 0 and "healthy" in status.stdout, status.stdout + status.stderr[-2000:]

        # The OpenAI API answers at the recorded address, on loopback.
        r = httpx.post(
            f"{state.url}/chat/completions",
            json={"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            timeout=120,
        )
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    finally:
        down = chorus("down", env=env, timeout=300)
    assert down.returncode == 0 and "chorus is down" in down.stdout, down.stdout + down.stderr[-2000:]
    assert read_state() is None
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{state.url}/models", timeout=5)
