"""What `reserve()` asks Ray for, worked out without Ray: replicas sorted by kind, one lease per
node, a group per unpinned replica, over-subscription and bad pins refused, start waves."""

from __future__ import annotations

import re

import pytest

from cluster.errors import PlacementError
from cluster.runtime.leases import (
    NODE_LABEL,
    ReplicaSlot,
    lease_groups,
    refuse_oversubscribed,
    sort_replicas,
    start_waves,
)
from cluster.spec import GpuSlot, ModelSpec, PlacementSpec


def model(name: str) -> ModelSpec:
    return ModelSpec(name=name, source="Qwen/Qwen2.5-1.5B-Instruct")


def pinned(*slots: tuple[int, list[int]], share: float = 0.4, tp: int = 1, cpus: float = 1.0, **kw: object) -> PlacementSpec:
    gpus = [GpuSlot(node=n, gpu_ids=ids) for n, ids in slots]
    return PlacementSpec(replicas=len(gpus), gpu_share=share, tensor_parallel_size=tp, num_cpus=cpus, gpus=gpus, **kw)


MODELS = [model("small"), model("big"), model("cpu"), model("free")]
PLACEMENT = {
    "small": pinned((0, [0]), (0, [2]), cpus=0.5),
    "big": pinned((0, [0, 1]), tp=2, share=0.5),
    "cpu": PlacementSpec(replicas=2, num_cpus=2.0),
    "free": PlacementSpec(replicas=1, gpu_share=0.3, tensor_parallel_size=2, num_cpus=1.5),
}


def test_replicas_are_sorted_into_cpu_pinned_and_unpinned():
    requests = sort_replicas(MODELS, PLACEMENT, node_gpus=[4])
    assert [(s.model, s.replica, s.options) for s in requests.on_cpu] == [
        ("cpu", 0, {"num_cpus": 2.0, "num_gpus": 0}),
        ("cpu", 1, {"num_cpus": 2.0, "num_gpus": 0}),
    ]
    assert [(p.label, p.node, p.gpu_ids) for p in requests.pinned] == [
        ("small#0", 0, (0,)),
        ("small#1", 0, (2,)),
        ("big#0", 0, (0, 1)),
    ]
    assert [u.label for u in requests.unpinned] == ["free#0"]


def test_a_slot_share_overrides_the_deployments_for_that_replica():
    spec = PlacementSpec(
        replicas=2, gpu_share=0.3, gpus=[GpuSlot(node=0, gpu_ids=[0]), GpuSlot(node=0, gpu_ids=[1], gpu_share=0.9)]
    )
    requests = sort_replicas([model("m")], {"m": spec}, node_gpus=[2])
    assert [p.spec.gpu_share for p in requests.pinned] == [0.3, 0.9]


@pytest.mark.parametrize(
    ("slot", "said"),
    [
        (GpuSlot(node=1, gpu_ids=[0]), "placed on node 1, but the Ray cluster has 1 node(s)"),
        (GpuSlot(node=0, gpu_ids=[4]), "names GPU id(s) [4] on node 0, which has 4 GPU(s) (ids 0-3)"),
    ],
)
def test_pins_beyond_the_cluster_are_refused_before_asking_ray(slot: GpuSlot, said: str):
    with pytest.raises(PlacementError, match=re.escape(said)) as err:
        sort_replicas([model("m")], {"m": PlacementSpec(gpu_share=0.5, gpus=[slot])}, node_gpus=[4])
    assert err.value.model == "m" and err.value.fixes


def test_a_gpu_listed_twice_is_refused():
    spec = PlacementSpec(gpu_share=0.5, tensor_parallel_size=2, gpus=[GpuSlot(node=0, gpu_ids=[1, 1])])
    with pytest.raises(PlacementError, match="lists a GPU twice"):
        sort_replicas([model("m")], {"m": spec}, node_gpus=[4])


def test_oversubscribed_gpu_is_named_with_its_shares():
    requests = sort_replicas(
        [model("a"), model("b")],
        {"a": pinned((0, [1]), share=0.6), "b": pinned((0, [1]), share=0.5)},
        node_gpus=[2],
    )
    with pytest.raises(PlacementError, match=r"node 0 GPU 1 is over-subscribed: shares sum to 1\.100 \(a#0 0\.6, b#0 0\.5\)"):
        refuse_oversubscribed(requests.pinned)
    refuse_oversubscribed(sort_replicas(MODELS, PLACEMENT, node_gpus=[4]).pinned)  # 0.4 + 0.5 on GPU 0 fits


def test_one_lease_per_node_and_a_group_per_unpinned_replica():
    requests = sort_replicas(MODELS, PLACEMENT, node_gpus=[4])
    groups, pending = lease_groups(requests, node_ids=["node-a"])
    lease, own = groups
    # GPUs 0..2 (the highest pinned id), CPUs on each replica's first rank: small#0 and big#0 on 0.
    assert lease.bundles == [{"GPU": 1.0, "CPU": 1.5}, {"GPU": 1.0}, {"GPU": 1.0, "CPU": 0.5}]
    assert (lease.name, lease.node, lease.users) == ("chorus-node0-gpus", 0, ("big#0", "small#0", "small#1"))
    assert lease.label_selector == [{NODE_LABEL: "node-a"}] * 3
    # Tensor parallel 2 without pins: the first rank takes the CPUs, every rank a whole GPU.
    assert own.bundles == [{"GPU": 1.0, "CPU": 1.5}, {"GPU": 1.0}]
    assert (own.name, own.node, own.users, own.label_selector) == ("chorus-free-0", None, ("free#0",), None)
    assert [(p.model, p.replica, p.group, p.ranks, p.pinned) for p in pending] == [
        ("small", 0, 0, (0,), True),
        ("small", 1, 0, (2,), True),
        ("big", 0, 0, (0, 1), True),
        ("free", 0, 1, (0, 1), False),
    ]


def test_an_unpinned_single_gpu_replica_asks_for_its_share():
    requests = sort_replicas([model("m")], {"m": PlacementSpec(gpu_share=0.25, num_cpus=1.0)}, node_gpus=[])
    (group,), _ = lease_groups(requests, node_ids=[])
    assert group.bundles == [{"GPU": 0.25, "CPU": 1.0}]


def test_engines_sharing_a_gpu_start_in_separate_waves():
    def slot(name: str, node: str | None, *gpus: int) -> ReplicaSlot:
        return ReplicaSlot(name, 0, {}, 0.0, None, node, tuple(gpus))

    a, b, c, d, cpu = slot("a", "n1", 0), slot("b", "n1", 0, 1), slot("c", "n2", 0), slot("d", "n1", 2), slot("cpu", None)
    assert start_waves([a, b, c, d, cpu]) == [[a, c, d, cpu], [b]]
