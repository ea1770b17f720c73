"""The running Ray cluster's GPU nodes, in plan order, and as an inventory to plan for.

Plan node index → Ray node: nodes with GPUs, head node first, then by address and node id.
"""

from __future__ import annotations

from typing import Any

import ray

from cluster.inventory import Gpu, Inventory, Node


def gpu_nodes() -> list[dict[str, Any]]:
    """Alive Ray nodes with GPUs, in plan order: head node first, then address, then node id."""
    every: list[dict[str, Any]] = ray.nodes()
    nodes = [n for n in every if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0]
    head_of = {n["NodeID"]: any(k.startswith("node:__internal_head__") for k in n["Resources"]) for n in nodes}
    return sorted(nodes, key=lambda n: (not head_of[n["NodeID"]], n.get("NodeManagerAddress", ""), n["NodeID"]))


def ray_inventory(gpu_memory_bytes: int, gpu_name: str = "GPU") -> Inventory:
    """The running cluster's GPU nodes as an inventory.

    Ray knows how many GPUs a node has, not their memory: the caller gives it (e.g. from NVML on
    this machine or from a spec string), and `gpu_name` labels them.
    """
    nodes = []
    for k, n in enumerate(gpu_nodes()):
        count = int(n["Resources"]["GPU"])
        gpus = tuple(Gpu(i, gpu_name, gpu_memory_bytes, gpu_memory_bytes) for i in range(count))
        nodes.append(Node(k, f"{n.get('NodeManagerAddress', '?')} {n['NodeID'][:12]}", gpus, ray_node_id=n["NodeID"]))
    if not nodes:
        return Inventory((), source="ray", reason="the Ray cluster has no node with GPUs")
    return Inventory(tuple(nodes), source="ray")
