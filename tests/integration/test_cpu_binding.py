"""Engines run on the cores the CPU plan gives them, not all on core 0 (vLLM-CPU's default)."""

from __future__ import annotations

import os
import time

import psutil
import ray

from cluster.inventory import local_cpus, parse_cpu_list
from cluster.placement.cpus import CpuNode, plan_cpus


def _pid(handle) -> int:  # type: ignore[no-untyped-def]
    return int(ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=30))


def _workers(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if p.name().startswith("VLLM::Worker")]


def _ready_workers(handle, deadline_s: float = 300) -> list[psutil.Process]:  # type: ignore[no-untyped-def]
    """The host's engine workers once its engine is ready: an earlier test's load may have had the
    supervisor restart it (a slow probe on 2 busy cores), and a starting engine has no worker yet."""
    deadline = time.monotonic() + deadline_s
    while True:
        status = ray.get(handle.status.remote(), timeout=30)
        workers = _workers(_pid(handle)) if status.engine == "ready" else []
        if workers or time.monotonic() > deadline:
            return workers
        time.sleep(1)  # readiness polling of another process's engine start, bounded by the deadline


def test_each_engines_threads_are_bound_to_its_planned_cores(chorus_server):
    config = chorus_server.config
    names = [m.name for m in config.models]
    expected = plan_cpus(names, {n: config.placement_of(n) for n in names}, [CpuNode(0, local_cpus())])
    seen: dict[str, set[int]] = {}
    for model, hosts in chorus_server.deployment.hosts.items():
        for replica, handle in enumerate(hosts):
            workers = _ready_workers(handle)
            pid = _pid(handle)
            children = [(c.pid, c.name()) for c in psutil.Process(pid).children(recursive=True)]
            assert workers, f"{model}[{replica}] (pid {pid}) has no VLLM::Worker process with its engine ready: {children}"
            want = set(parse_cpu_list(expected.of(model, replica).cpu_list))
            for w in workers:
                threads = {t.id for t in w.threads()}
                bound = {frozenset(os.sched_getaffinity(t)) for t in threads}
                assert bound == {frozenset(want)}, f"{model}[{replica}] worker threads on {bound}, planned {want}"
            seen[model] = want
    if len(local_cpus()) > 1:
        # The point of the plan: more than one core computes.
        assert len(set().union(*seen.values())) > 1
