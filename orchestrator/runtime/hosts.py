"""The GPU tier on Ray: reserve the placement, start the ModelHost actors wave by wave, stop them.

ModelHosts stay plain Ray actors in chorus's placement groups, named `chorus.host.<model>.<i>`
in the chorus namespace so every orchestrator replica (and any driver) finds them.

`create_hosts` and `start_engines` are what `chorus up` runs from its driver, with the one
supervisor (`chorus.supervisor`, `orchestrator.runtime.supervisor_actor`) that probes and restarts
the engines. `ensure_hosts` is what an orchestrator
replica runs when the application was deployed with `serve deploy` and the hosts are absent: one
named `FleetKeeper` actor starts them exactly once however many replicas ask at the same time;
`stop_keeper` (run by `chorus down --address`) has it stop them and free their placement groups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from cluster.errors import DeployError
from cluster.inventory import from_nvml
from cluster.placement.cpus import nodes_of, plan_cpus, with_cpus
from cluster.runtime.leases import ReplicaSlot
from cluster.runtime.reservation import Reservation, reserve
from orchestrator.runtime.ray_replica import host_name, ray_placement
from orchestrator.runtime.supervisor_actor import start_supervisor, stop_supervisor
from orchestrator.service.config import ChorusConfig
from serving.engines.base import Engine
from serving.engines.recorded import RecordedEngine
from serving.engines.vllm_engine import EngineSettings, VLLMEngine
from serving.host.model_host import ModelHost, StartTimes

NAMESPACE = "chorus"
KEEPER = "chorus.fleet"

Progress = Callable[[str], None]
EngineChoice = Callable[[ChorusConfig, ReplicaSlot], tuple[type[Engine], dict[str, Any]]]

log = logging.getLogger("chorus.hosts")


def vllm_engine_for(config: ChorusConfig, slot: ReplicaSlot) -> tuple[type[Engine], dict[str, Any]]:
    """The engine a ModelHost runs for `slot`: vLLM, or for `engine: recorded` the recorded engine."""
    if config.model(slot.model).engine == "recorded":
        return RecordedEngine, {}  # replays recorded answers (offline evaluation beside live models)
    placement = config.placement_of(slot.model)
    settings = EngineSettings(
        on_gpu=placement.on_gpu,
        gpu_memory_utilization=slot.gpu_memory_utilization,
        tensor_parallel_size=placement.tensor_parallel_size,
        ray_metrics=True,
        cpus=placement.cpus[slot.replica] if placement.cpus is not None else None,
    )
    return VLLMEngine, {"settings": settings}


@dataclass
class HostSet:
    """The ModelHost actors of one config and the placement groups they run in."""

    reservation: Reservation
    hosts: dict[str, list[Any]] = field(default_factory=dict)
    supervisor: Any = None  # the named SupervisorActor over these hosts
    created: float = field(default_factory=time.time)  # the timeline's zero (wall clock)

    def shutdown(self) -> None:
        """Stops the supervisor (so nothing restarts an engine being stopped), the engines (and
        their processes) and frees the GPUs. Idempotent."""
        if self.supervisor is not None:
            stop_supervisor(self.supervisor)
            self.supervisor = None
        handles = [h for replicas in self.hosts.values() for h in replicas]
        _quietly(lambda: ray.get([h.shutdown.remote() for h in handles], timeout=60))
        for h in handles:
            ray.kill(h)
        self.hosts = {}
        self.reservation.release()


def host_options(config: ChorusConfig) -> dict[str, Any]:
    """Ray restarts a dead ModelHost in its placement bundle, a bounded number of times; a call
    in flight when it died is never re-run by Ray (chorus retries it on another replica, only
    if no token had reached the caller)."""
    return {"max_restarts": config.healing.max_restarts, "max_task_retries": 0}


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # best effort while tearing down: the actor is killed right after
        log.warning("a ModelHost did not shut its engine down cleanly", exc_info=True)


def create_hosts(
    config: ChorusConfig,
    *,
    engine: EngineChoice = vllm_engine_for,
    detached: bool = False,
    progress: Progress = lambda _: None,
    deadline: float,
    namespace: str = NAMESPACE,
) -> HostSet:
    """Reserve the placement and create every ModelHost actor at once (an actor's __init__
    touches no GPU memory); their engines are not started yet (`start_engines`). On a failure
    what was reserved or created is torn down."""
    lifetime = {"lifetime": "detached"} if detached else {}
    progress(f"reserving resources for {sum(config.placement_of(m.name).replicas for m in config.models)} replica(s)")
    reservation = reserve(
        config.models,
        config.placement,
        timeout_s=max(1.0, min(120.0, deadline - time.monotonic())),
        lifetime="detached" if detached else None,
    )
    hostset = HostSet(reservation=reservation)
    remote_host: Any = ray.remote(ModelHost)
    made: dict[tuple[str, int], Any] = {}
    try:
        for slot in reservation.slots:
            engine_cls, engine_kwargs = engine(config, slot)
            handle = remote_host.options(
                **slot.options,
                **host_options(config),
                name=host_name(slot.model, slot.replica),
                namespace=namespace,
                **lifetime,
            ).remote(config.model(slot.model), slot.replica, engine_cls, engine_kwargs, gpus=slot.gpus, placement=ray_placement)
            made[(slot.model, slot.replica)] = handle
            hostset.hosts.setdefault(slot.model, []).append(handle)  # so a failure tears it down
    except BaseException:
        hostset.shutdown()
        raise
    # Slots may list a model's replicas out of order; list them by replica index.
    hostset.hosts = {
        m.name: [made[(m.name, r)] for r in range(config.placement_of(m.name).replicas)] for m in config.models
    }
    return hostset


def start_engines(
    hostset: HostSet, *, deadline: float, progress: Progress = lambda _: None, issued: threading.Event | None = None
) -> None:
    """Start the engines wave by wave (engines sharing a GPU never start together: vLLM sizes
    its KV cache from the memory free at start) and wait for them, printing each one's timeline.
    `issued` is set once the last wave has been asked to start. A start that fails or misses
    the deadline raises a DeployError naming the model; tearing the hosts down is the caller's."""
    waves = hostset.reservation.waves
    for n, wave in enumerate(waves, 1):
        scheduled = time.time()
        started = {hostset.hosts[slot.model][slot.replica].start.remote(): slot for slot in wave}
        progress(f"wave {n}/{len(waves)}: starting " + ", ".join(f"{s.model}[{s.replica}]" for s in wave))
        if n == len(waves) and issued is not None:
            issued.set()
        _await_starts(started, deadline, progress, hostset.created, scheduled)


def _await_starts(
    started: dict[Any, ReplicaSlot], deadline: float, progress: Progress, began: float, scheduled: float
) -> None:
    """Waits for a wave's engines; prints each one's timeline (seconds since the hosts began)."""
    pending = list(started)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            late = ", ".join(f"{started[r].model}[{started[r].replica}]" for r in pending)
            raise DeployError(f"engine(s) {late} did not start before the deadline")
        slot = started[ready[0]]
        try:
            times: StartTimes = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 - any start failure becomes a DeployError naming the model
            cause = getattr(exc, "cause", None) or exc
            raise DeployError(f"model '{slot.model}' replica {slot.replica} failed to start: {cause}") from None
        marks = [("scheduled", scheduled), ("process up", times.process_up), *times.phases.items(), ("ready", times.ready)]
        line = ", ".join(f"{name} {at - began:.1f}s" for name, at in marks)
        progress(f"  {slot.model}[{slot.replica}]: {line} (engine start {times.ready - times.engine_start:.1f}s)")


def with_planned_cpus(config: ChorusConfig, progress: Progress = lambda _: None) -> ChorusConfig:
    """`config` with a CPU set for every replica whose placement has none, on a one-node cluster.

    Without one, vLLM-CPU binds every engine to the same core. The plan uses this machine's
    cores and its GPUs' NUMA affinity (cluster.placement.cpus); on a multi-node cluster only
    `chorus plan`'s explicit `cpus:` apply, since the driver cannot see the other nodes' cores.
    """
    missing = [m.name for m in config.models if config.placement_of(m.name).cpus is None]
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if not missing or len(alive) != 1:
        return config
    placement = {m.name: config.placement_of(m.name) for m in config.models}
    # This machine's cores, and its GPUs' NUMA cores where NVML reports them (none on a CPU machine).
    planned = with_cpus(placement, plan_cpus([m.name for m in config.models], placement, nodes_of(from_nvml())))
    merged = {m: (planned[m] if m in missing else p) for m, p in placement.items()}
    progress("engine cores: " + ", ".join(f"{m} {'|'.join(merged[m].cpus or [])}" for m in missing))
    return config.model_copy(update={"placement": merged})


def hosts_running(config: ChorusConfig, namespace: str) -> bool:
    for m in config.models:
        for r in range(config.placement_of(m.name).replicas):
            try:
                ray.get_actor(host_name(m.name, r), namespace=namespace)
            except ValueError:
                return False
    return True


class FleetKeeper:
    """Starts a config's ModelHosts once, for the orchestrator replicas of a `serve deploy`."""

    def __init__(self, config: ChorusConfig, namespace: str, timeout_s: float = 1800.0) -> None:
        self.config, self.namespace, self.timeout_s = config, namespace, timeout_s
        self.hostset: HostSet | None = None

    def ensure(self) -> None:
        # One call at a time (max_concurrency=1): the first starts the hosts, the rest see them.
        # The engines, then the supervisor, in turn: the replicas asking wait for all of it.
        if self.hostset is not None or hosts_running(self.config, self.namespace):
            return
        deadline = time.monotonic() + self.timeout_s
        config = with_planned_cpus(self.config, log.info)  # engines on their own cores, as `chorus up` does
        hostset = create_hosts(config, detached=True, namespace=self.namespace, progress=log.info, deadline=deadline)
        try:
            start_engines(hostset, deadline=deadline, progress=log.info)
            hostset.supervisor = start_supervisor(config, self.namespace, detached=True)
        except BaseException:
            hostset.shutdown()
            raise
        self.hostset = hostset

    def shutdown(self) -> None:
        """Stops what `ensure` started: the supervisor, the engines, and the placement groups,
        which are detached and so would hold their GPUs after the keeper is gone."""
        if self.hostset is not None:
            self.hostset.shutdown()
            self.hostset = None


async def ensure_hosts(config: ChorusConfig, namespace: str = NAMESPACE) -> None:
    """Have the config's ModelHosts running (started once, by the named FleetKeeper, if absent)."""
    if hosts_running(config, namespace):
        return
    keeper_cls: Any = ray.remote(FleetKeeper)
    keeper = (
        keeper_cls
        .options(name=KEEPER, namespace=namespace, lifetime="detached", get_if_exists=True, num_cpus=0, max_concurrency=1)
        .remote(config, namespace)
    )
    await keeper.ensure.remote()


def stop_keeper(namespace: str = NAMESPACE, timeout_s: float = 300.0) -> bool:
    """Stops the ModelHosts the FleetKeeper of `namespace` started (placement groups included),
    then the keeper; False when there is no keeper (nothing was deployed with `serve deploy`)."""
    try:
        keeper = ray.get_actor(KEEPER, namespace=namespace)
    except ValueError:
        return False
    ray.get(keeper.shutdown.remote(), timeout=timeout_s)
    ray.kill(keeper)
    return True
