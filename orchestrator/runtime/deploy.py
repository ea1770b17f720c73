"""Bring a config up on a Ray cluster: the ModelHosts (the GPU tier, `orchestrator.runtime.hosts`)
and, while their engines start, the Ray Serve application of the request tier
(`orchestrator.runtime.serve_app`); and take it down again.

ModelHosts are named actors in the chorus namespace (`chorus.host.<model>.<replica>`); the Serve
application is `chorus` (or `chorus-<namespace>` for another namespace), its ingress deployment
`Orchestrator`; Serve's HTTP proxy binds `server.host:server.port`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import serve

from cluster.errors import DeployError, NotRunning
from cluster.runtime.reservation import Reservation, release_leftover_groups
from orchestrator.runtime.hosts import (
    KEEPER,
    NAMESPACE,
    EngineChoice,
    HostSet,
    Progress,
    create_hosts,
    start_engines,
    stop_keeper,
    vllm_engine_for,
    with_planned_cpus,
)
from orchestrator.runtime.serve_app import app_name, build_app_for
from orchestrator.runtime.supervisor_actor import SUPERVISOR, drain_all, start_supervisor, stop_supervisor
from orchestrator.service.config import ChorusConfig, ServerSpec

log = logging.getLogger("chorus.deploy")

__all__ = ["NAMESPACE", "LiveDeployment", "deploy", "find_orchestrator", "teardown_named", "vllm_engine_for"]

DRAIN_TIMEOUT_S = 30.0  # `chorus down --address` on a shared cluster (no config at hand)
SETTLE_TIMEOUT_S = 30.0  # for the orchestrator replicas to take the board once the engines are ready


@dataclass
class LiveDeployment:
    config: ChorusConfig
    reservation: Reservation
    hosts: dict[str, list[Any]] = field(default_factory=dict)
    app: str | None = None
    orchestrator: Any = None  # the Serve handle of the ingress deployment
    url: str | None = None
    namespace: str = NAMESPACE
    _hostset: HostSet | None = None

    def drain(self, timeout_s: float) -> int:
        """Every orchestrator replica refuses new requests (503 with Retry-After) while the
        running ones finish, up to `timeout_s`; how many were still running then."""
        return drain_all(self.namespace, timeout_s)

    def shutdown(self) -> None:
        """Drains (up to the config's `healing.drain_timeout_s`), deletes the Serve application,
        stops the supervisor and the engines and frees the GPUs. Idempotent."""
        if self.app is not None:
            left = self.drain(self.config.healing.drain_timeout_s)
            if left:
                log.warning("%d request(s) still running after the drain; stopping anyway", left)
            serve.delete(self.app)
            self.app, self.orchestrator = None, None
        if self._hostset is not None:
            self._hostset.shutdown()
            self._hostset = None
        self.hosts = {}


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def route_prefix(namespace: str) -> str:
    """Where an application's HTTP routes live on Serve's proxy: `/` for the default chorus, its
    own prefix for another namespace's, so several chorus applications share one Serve cluster."""
    return "/" if app_name(namespace) == app_name() else f"/{app_name(namespace)}"


def _url(server: ServerSpec, port: int, prefix: str = "/") -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(server.host, server.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{prefix.rstrip('/')}/v1"


def start_serve(server: ServerSpec) -> int:
    """Start Serve's proxy on `server.host:server.port` (0: a free port); returns the port.

    Serve's HTTP options are cluster-wide: when Serve already runs, its proxy's port is kept."""
    client = serve.context._get_global_client(raise_if_no_controller_running=False)
    if client is not None:
        return int(client.http_config.port)
    port = server.port or _free_port(server.host)
    serve.start(proxy_location="EveryNode", http_options={"host": server.host, "port": port})
    return port


def deploy(
    config: ChorusConfig,
    *,
    engine: EngineChoice = vllm_engine_for,
    http: bool = True,
    detached: bool = False,
    progress: Progress = lambda _: None,
    timeout_s: float = 900.0,
    namespace: str = NAMESPACE,
) -> LiveDeployment:
    """Start everything `config` describes on the connected Ray cluster: the ModelHosts and,
    once the last wave of engines is starting, the supervisor and the Serve application
    (`http=False`: reachable through handles only, no HTTP route). Returns when all are ready."""
    deadline = time.monotonic() + timeout_s
    config = with_planned_cpus(config, progress)  # engines on their own cores (cluster.placement.cpus)
    hostset = create_hosts(
        config, engine=engine, detached=detached, progress=progress, deadline=deadline, namespace=namespace
    )
    dep = LiveDeployment(
        config=config, reservation=hostset.reservation, hosts=hostset.hosts, namespace=namespace, _hostset=hostset
    )
    # The request tier starts while the engines do (it needs only the host actors, found by
    # name): `chorus up` is ready about when its slowest engine is, not the tier's start later.
    issued = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chorus-engines")
    engines = pool.submit(start_engines, hostset, deadline=deadline, progress=progress, issued=issued)
    engines.add_done_callback(lambda _: issued.set())  # also when an earlier wave failed
    try:
        issued.wait()  # the supervisor must never find an engine nobody asked to start yet

        def raise_if_failed() -> None:
            """An engine start that already failed raises its DeployError here, before the next
            piece of the tier starts only to be taken down (a finished start returns None)."""
            if engines.done():
                engines.result()

        raise_if_failed()
        progress("starting the supervisor")
        hostset.supervisor = start_supervisor(config, namespace, detached=detached)
        raise_if_failed()
        # Without HTTP, Serve still needs a proxy setting; keep it on loopback, on a free port.
        serve_port = start_serve(config.server if http else ServerSpec(port=0))
        dep.app = app_name(namespace)
        progress(f"starting {config.server.num_replicas if config.server.autoscaling is None else 'autoscaled'} orchestrator replica(s)")
        dep.orchestrator = serve.run(
            build_app_for(config, namespace), name=dep.app, route_prefix=route_prefix(namespace) if http else None
        )
        progress("orchestrator ready")
        engines.result()
        # The replicas started while the engines were "starting": have them see the engines ready.
        if not ray.get(hostset.supervisor.settle.remote(SETTLE_TIMEOUT_S), timeout=SETTLE_TIMEOUT_S + 60):
            log.warning("an orchestrator replica did not take the fleet's health within %g s", SETTLE_TIMEOUT_S)
        if http:
            dep.url = _url(config.server, serve_port, route_prefix(namespace))
            progress(f"serving the OpenAI API at {dep.url}")
    except BaseException:
        dep.shutdown()  # stops the hosts too: an engine start still awaited fails at once
        raise
    finally:
        pool.shutdown(wait=True)
    if time.monotonic() > deadline:
        dep.shutdown()
        raise DeployError(f"chorus did not start within {timeout_s:g} s")
    return dep


def find_orchestrator(namespace: str = NAMESPACE) -> Any:
    """The Serve handle of the running orchestrator (requires a connected Ray)."""
    try:
        return serve.get_app_handle(app_name(namespace))
    except Exception as exc:  # noqa: BLE001 - Serve raises its own RayServeException (or a ValueError) when absent
        raise NotRunning(f"no chorus application '{app_name(namespace)}' on this Ray cluster ({type(exc).__name__})") from None


def teardown_named(namespace: str = NAMESPACE) -> list[str]:
    """Delete the Serve application and kill every chorus actor in the namespace (`chorus down`
    on a shared cluster)."""
    killed = []
    name = app_name(namespace)
    if name in serve.status().applications:
        drain_all(namespace, DRAIN_TIMEOUT_S)  # running requests finish, new ones get 503
        serve.delete(name)
        killed.append(f"serve application {name}")
    # Hosts a `serve deploy` had started: their keeper holds their placement groups (detached),
    # which killing the actors would leave reserved.
    if stop_keeper(namespace):
        killed.append(KEEPER)
    try:  # before the hosts, so it restarts no engine while they stop
        stop_supervisor(ray.get_actor(SUPERVISOR, namespace=namespace))
        killed.append(SUPERVISOR)
    except ValueError:
        pass  # no supervisor in this namespace
    for info in ray.util.list_named_actors(all_namespaces=True):
        if info.get("namespace") != namespace or not info["name"].startswith("chorus.") or info["name"] == SUPERVISOR:
            continue
        try:
            handle = ray.get_actor(info["name"], namespace=namespace)
        except ValueError:
            continue  # it died since it was listed (a host the keeper just stopped)
        if info["name"].startswith("chorus.host."):
            try:
                ray.get(handle.shutdown.remote(), timeout=60)
            except Exception:
                log.warning("ModelHost %s did not shut its engine down cleanly", info["name"], exc_info=True)
        ray.kill(handle)
        killed.append(info["name"])
    # The hosts' groups of a `chorus up --address`: detached, and their driver has exited.
    killed += [f"placement group {name}" for name in release_leftover_groups()]
    return killed
