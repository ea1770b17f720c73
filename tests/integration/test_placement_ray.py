"""Plans applied on a real Ray with declared (fake) GPUs: replicas land where the plan says.

One node: the session cluster of tests/integration/conftest.py (4 fake GPUs). Two nodes: a
`ray.cluster_utils.Cluster` (2 nodes × 2 fake GPUs) started in a child process, because one
driver cannot join two Ray clusters; run `python -m tests.integration.test_placement_ray` to
see its report. No vLLM here: a probe actor created with each slot's options reports
`ray.get_gpu_ids()` and its node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cluster.errors import PlacementError
from cluster.inventory import GiB
from cluster.placement.demand import ModelDemand
from cluster.placement.planner import plan_placement
from cluster.runtime.nodes import gpu_nodes, ray_inventory
from cluster.runtime.reservation import Reservation, release_leftover_groups, reserve
from cluster.sizing.memory import estimate
from cluster.spec import GpuSlot, ModelSpec, PlacementSpec

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CPUS_PER_REPLICA = 0.25  # the session cluster has 8 logical CPUs; the probes only wait


@ray.remote
class Probe:
    def where(self) -> dict:
        return {
            "gpu_ids": [int(g) for g in ray.get_gpu_ids()],
            "node_id": ray.get_runtime_context().get_node_id(),
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "bundles": os.environ.get("VLLM_RAY_BUNDLE_INDICES"),
        }


@ray.remote(num_cpus=0)
def _gpu_of_bundle() -> list[int]:
    return [int(g) for g in ray.get_gpu_ids()]


def models_for(names_sources: dict[str, str]) -> list[ModelSpec]:
    return [ModelSpec(name=n, source=s, dtype="bfloat16", max_model_len=8192, max_num_seqs=8) for n, s in names_sources.items()]


def planned(models: list[ModelSpec], gpu_gib: int, name: str, **targets) -> dict[str, PlacementSpec]:
    """Plan `models` for the connected cluster's GPUs and return the placement section."""
    demands = [ModelDemand(m.name, estimate(m), seqs=targets.get("seqs", 4), context=targets.get("context", 8192)) for m in models]
    p = plan_placement(demands, ray_inventory(gpu_gib * GiB, name))
    base = {m.name: PlacementSpec(num_cpus=CPUS_PER_REPLICA) for m in models}
    return p.placement_specs(base)


def landings(res: Reservation) -> list[dict]:
    """Start a probe per slot and report where each landed, next to where it should have."""
    actors = [Probe.options(**s.options).remote() for s in res.slots]
    seen = ray.get([a.where.remote() for a in actors], timeout=60)
    out = []
    for slot, got in zip(res.slots, seen):
        if slot.gpu_ids and len(slot.gpu_ids) > 1:
            # Tensor parallel: the actor holds no GPU; the ranks' bundles hold the planned GPUs.
            pg = slot.options["scheduling_strategy"].placement_group
            idx = [int(b) for b in got["bundles"].split(",")]
            got["gpu_ids"] = ray.get(
                [
                    _gpu_of_bundle.options(
                        num_gpus=0.0001, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, b)
                    ).remote()
                    for b in idx
                ],
                timeout=60,
            )
            got["gpu_ids"] = [g[0] for g in got["gpu_ids"]]
        out.append({"model": slot.model, "replica": slot.replica, "want_gpus": list(slot.gpu_ids),
                    "want_node": slot.node_id, "share": slot.gpu_memory_utilization, **got})
    for a in actors:
        ray.kill(a)
    return out


@pytest.mark.usefixtures("ray_cluster")
class TestOneNode:
    def test_ray_inventory_lists_the_gpu_nodes(self):
        inv = ray_inventory(80 * GiB, "H100-80GB")
        assert inv.source == "ray" and inv.gpu_count == 4
        (node,) = inv.nodes
        assert node.ray_node_id == gpu_nodes()[0]["NodeID"] == ray.get_runtime_context().get_node_id()
        assert [g.index for g in node.gpus] == [0, 1, 2, 3] and node.gpus[0].total_bytes == 80 * GiB

    def test_replicas_land_on_the_planned_gpus(self):
        models = models_for({
            "classifier": "Qwen/Qwen2.5-1.5B-Instruct",
            "generalist": "Qwen/Qwen2.5-7B-Instruct",
            "coder": "Qwen/Qwen2.5-Coder-7B-Instruct",
            "reasoner": "Qwen/Qwen2.5-14B-Instruct",
        })
        placement = planned(models, 40, "A100-40GB")  # 4 × 40 GB: several engines share GPUs
        res = reserve(models, placement, timeout_s=30)
        try:
            node_id = gpu_nodes()[0]["NodeID"]
            seen = landings(res)
            assert len(seen) == 4
            for s in seen:
                want = placement[s["model"]].gpus[s["replica"]].gpu_ids
                assert s["want_gpus"] == want
                assert s["gpu_ids"] == want, s
                assert s["node_id"] == s["want_node"] == node_id
                assert s["cuda"] == ",".join(map(str, want))
            shared = {}
            for slot in res.slots:
                for g in slot.gpu_ids:
                    shared.setdefault(g, []).append(slot)
            assert any(len(v) > 1 for v in shared.values()), "the plan should pack engines onto one GPU"
            for wave in res.waves:  # engines sharing a GPU never start together
                used = [g for s in wave for g in s.gpu_ids]
                assert len(used) == len(set(used))
            assert sum(len(w) for w in res.waves) == len(res.slots)
        finally:
            res.release()

    def test_hand_pinned_gpus_fractional_shares_and_tensor_parallel(self):
        models = models_for({"a": "Qwen/Qwen2.5-1.5B-Instruct", "b": "Qwen/Qwen2.5-1.5B-Instruct",
                             "tp": "Qwen/Qwen2.5-7B-Instruct", "cpu": "Qwen/Qwen2.5-0.5B-Instruct"})
        c = CPUS_PER_REPLICA
        placement = {
            "a": PlacementSpec(gpu_share=0.4, num_cpus=c, gpus=[GpuSlot(gpu_ids=[3])]),
            "b": PlacementSpec(replicas=2, gpu_share=0.5, num_cpus=c,
                               gpus=[GpuSlot(gpu_ids=[3]), GpuSlot(gpu_ids=[0], gpu_share=0.9)]),
            "tp": PlacementSpec(tensor_parallel_size=2, gpu_share=0.9, num_cpus=c, gpus=[GpuSlot(gpu_ids=[2, 1])]),
            "cpu": PlacementSpec(num_cpus=c),
        }
        res = reserve(models, placement, timeout_s=30)
        try:
            by = {(s.model, s.replica): s for s in res.slots}
            assert by[("b", 1)].gpu_memory_utilization == 0.9 and by[("b", 0)].gpu_memory_utilization == 0.5
            assert by[("tp", 0)].gpus == pytest.approx(1.8) and by[("cpu", 0)].options == {"num_cpus": c, "num_gpus": 0}
            seen = {(s["model"], s["replica"]): s for s in landings(res)}
            assert seen[("a", 0)]["gpu_ids"] == [3] and seen[("b", 0)]["gpu_ids"] == [3]
            assert seen[("b", 1)]["gpu_ids"] == [0]
            assert seen[("tp", 0)]["gpu_ids"] == [2, 1]
            assert seen[("cpu", 0)]["gpu_ids"] == []
            waves = [{(s.model, s.replica) for s in w} for w in res.waves]
            assert not any({("a", 0), ("b", 0)} <= w for w in waves)
        finally:
            res.release()

    def test_a_group_that_cannot_be_placed_is_reported_by_the_deadline(self):
        models = models_for({"huge": "Qwen/Qwen2.5-72B-Instruct"})
        placement = {"huge": PlacementSpec(tensor_parallel_size=8, gpu_share=0.9, num_cpus=CPUS_PER_REPLICA)}
        before = {k for k, v in ray.util.placement_group_table().items() if v["state"] != "REMOVED"}
        start = time.monotonic()
        with pytest.raises(PlacementError) as info:
            reserve(models, placement, timeout_s=2)
        assert time.monotonic() - start < 15
        assert info.value.model == "huge" and "not ready after 2s" in str(info.value)
        after = {k for k, v in ray.util.placement_group_table().items() if v["state"] != "REMOVED"}
        assert after <= before  # nothing left pending

    def test_pinned_gpu_held_by_another_workload_is_named(self):
        holder = ray.util.placement_group([{"GPU": 1}])
        ray.get(holder.ready(), timeout=30)  # takes GPU 0
        try:
            models = models_for({"a": "Qwen/Qwen2.5-1.5B-Instruct"})
            placement = {"a": PlacementSpec(gpu_share=0.5, num_cpus=CPUS_PER_REPLICA, gpus=[GpuSlot(gpu_ids=[0])])}
            with pytest.raises(PlacementError, match=r"needs GPU\(s\) \[0\] on node 0, but Ray leased GPUs \[1\]"):
                reserve(models, placement, timeout_s=10)
        finally:
            ray.util.remove_placement_group(holder)

    def test_gpu_ids_and_nodes_beyond_the_cluster_are_refused_at_once(self):
        models = models_for({"a": "Qwen/Qwen2.5-1.5B-Instruct"})
        with pytest.raises(PlacementError, match="GPU id\\(s\\) \\[7\\] on node 0, which has 4"):
            reserve(models, {"a": PlacementSpec(gpu_share=0.5, gpus=[GpuSlot(gpu_ids=[7])])}, timeout_s=5)
        with pytest.raises(PlacementError, match="node 1, but the Ray cluster has 1 node"):
            reserve(models, {"a": PlacementSpec(gpu_share=0.5, gpus=[GpuSlot(node=1, gpu_ids=[0])])}, timeout_s=5)
        two = models_for({"a": "Qwen/Qwen2.5-1.5B-Instruct", "b": "Qwen/Qwen2.5-0.5B-Instruct"})
        over = {"a": PlacementSpec(gpu_share=0.6, gpus=[GpuSlot(gpu_ids=[1])]),
                "b": PlacementSpec(gpu_share=0.6, gpus=[GpuSlot(gpu_ids=[1])])}
        with pytest.raises(PlacementError, match=r"node 0 GPU 1 is over-subscribed: shares sum to 1.200 \(a#0 0.6, b#0 0.6\)"):
            reserve(two, over, timeout_s=5)
        assert not [v for v in ray.util.placement_group_table().values() if v["state"] not in ("REMOVED",)
                    and v["name"].startswith("chorus-")]


DETACHED_RESERVER = """
import sys, ray
from cluster.runtime.reservation import reserve
from cluster.spec import ModelSpec, PlacementSpec
ray.init(address=sys.argv[1], namespace=sys.argv[2])
spec = ModelSpec(name="left", source="Qwen/Qwen2.5-1.5B-Instruct", dtype="bfloat16", max_model_len=8192, max_num_seqs=8)
res = reserve([spec], {"left": PlacementSpec(gpu_share=0.5, num_cpus=0.25, replicas=2)}, lifetime="detached", timeout_s=30)
print(len(res.groups))
"""


def test_groups_a_departed_driver_left_detached_are_released_in_its_namespace_only(ray_cluster: str):
    """`chorus up --address` reserves detached groups and exits; `chorus down --address` must free
    them, and only those of its own namespace (another deployment's group of the same name stays)."""
    def alive(name: str) -> list[str]:
        return [g["placement_group_id"] for g in ray.util.placement_group_table().values()
                if g["name"] == name and g["state"] != "REMOVED"]

    other = subprocess.run([sys.executable, "-c", DETACHED_RESERVER, ray_cluster, "another-deployment"],
                           check=False, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    ours = subprocess.run([sys.executable, "-c", DETACHED_RESERVER, ray_cluster, ray.get_runtime_context().namespace],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert other.returncode == 0 and ours.returncode == 0, other.stderr[-2000:] + ours.stderr[-2000:]
    assert ours.stdout.split()[-1] == "2"
    assert len(alive("chorus-left-0")) == len(alive("chorus-left-1")) == 2  # both drivers' groups outlived them

    assert release_leftover_groups() == ["chorus-left-0", "chorus-left-1"]
    assert len(alive("chorus-left-0")) == len(alive("chorus-left-1")) == 1  # the other namespace's stay
    assert release_leftover_groups() == []
    subprocess.run([sys.executable, "-c", "import sys, ray\nfrom cluster.runtime.reservation import release_leftover_groups\n"
                    "ray.init(address=sys.argv[1], namespace='another-deployment'); print(release_leftover_groups())",
                    ray_cluster], cwd=ROOT, check=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert not alive("chorus-left-0") and not alive("chorus-left-1")


def two_node_report() -> list[dict]:
    """In a fresh process: a 2-node simulated cluster, a plan over both nodes, where things landed."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2, num_gpus=2)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        cluster.wait_for_nodes()
        # 14B over 40 GB GPUs needs tensor parallel 2 → one group per node; the 1.5B shares a GPU.
        models = models_for({"reasoner": "Qwen/Qwen2.5-14B-Instruct", "classifier": "Qwen/Qwen2.5-1.5B-Instruct"})
        demands = [ModelDemand("reasoner", estimate(models[0]), replicas=2, seqs=8, context=8192),
                ModelDemand("classifier", estimate(models[1]), replicas=2, seqs=8, context=2048)]
        p = plan_placement(demands, ray_inventory(40 * GiB, "A100-40GB"))
        placement = p.placement_specs({m.name: PlacementSpec(num_cpus=0.25) for m in models})
        res = reserve(models, placement, timeout_s=60)
        try:
            nodes = [n["NodeID"] for n in gpu_nodes()]
            out = landings(res)
            for s in out:
                s["plan_node"] = nodes[placement[s["model"]].gpus[s["replica"]].node]
                s["plan_gpus"] = placement[s["model"]].gpus[s["replica"]].gpu_ids
            return out
        finally:
            res.release()
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_two_nodes_replicas_land_on_the_planned_node_and_gpus():
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_DEDUP_LOGS="0")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.test_placement_ray"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(seen) == 4
    assert len({s["node_id"] for s in seen}) == 2, "the plan spreads over both nodes"
    for s in seen:
        assert s["node_id"] == s["plan_node"] == s["want_node"], s
        assert s["gpu_ids"] == s["plan_gpus"], s
    tp = [s for s in seen if s["model"] == "reasoner"]
    assert all(len(s["gpu_ids"]) == 2 for s in tp) and {s["node_id"] for s in tp} == {s["node_id"] for s in seen}


if __name__ == "__main__":
    print(json.dumps(two_node_report()))
