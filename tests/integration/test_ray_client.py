"""The Python client reaches the Serve application through Ray Client (`ray://`) too: a Ray Client
server on the session cluster, a driver in another process that connects with a `ray://` address."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_client_address(chorus_server):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ray.util.client.server", f"--address={chorus_server.address}", "--host=127.0.0.1",
         f"--port={port}", "--mode=legacy"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:  # readiness: the port accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("the Ray Client server did not start")
            time.sleep(0.2)  # polling with a deadline
    yield f"ray://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


def test_ask_through_ray_client(ray_client_address):
    script = textwrap.dedent(
        f"""
        import json
        from orchestrator.client import connect
        chorus = connect({ray_client_address!r})
        reply = chorus.ask("single", "Hi", max_tokens=3)
        print(json.dumps({{"model": reply.model, "calls": reply.trace.totals.model_calls,
                           "completion": reply.usage.completion_tokens}}))
        """
    )
    env = {**os.environ, "CHORUS_HOME": "/nonexistent-chorus-home"}
    out = subprocess.run(check=False, args=[sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data == {"model": "single", "calls": 1, "completion": 3}
