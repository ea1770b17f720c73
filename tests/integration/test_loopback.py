"""`chorus up` without `--address` starts a Ray cluster that listens on loopback only: the same
start-up code (`start_local_ray`, then Serve's proxy as `deploy` starts it) in a fresh process,
then every listening socket of that cluster's processes is checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    import json, psutil
    from orchestrator.cli.keeper import start_local_ray
    start_local_ray(num_cpus=1, num_gpus=0)
    import ray
    from orchestrator.runtime.deploy import start_serve
    from orchestrator.service.config import ServerSpec
    start_serve(ServerSpec(port=0))
    session = ray._private.worker._global_node.get_session_dir_path()
    me = psutil.Process()
    mine = {p.pid for p in [me, *me.children(recursive=True)]}
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid in mine or session in " ".join(p.cmdline()):
                found += [[p.name(), c.laddr.ip, c.laddr.port] for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    print(json.dumps(found))
    ray.shutdown()
    """
)


def test_a_local_chorus_listens_on_loopback_only():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    out = subprocess.run(check=False, args=[sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    sockets = json.loads(out.stdout.strip().splitlines()[-1])
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names and any("Proxy" in n for n in names), names
    exposed = [s for s in sockets if s[1] not in {"127.0.0.1", "::1", "::ffff:127.0.0.1"}]
    assert not exposed, exposed
