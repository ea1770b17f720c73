"""The GPUs chorus can place models on: from NVML on this machine, or from a spec string.

Pure data plus two readers:

* `from_nvml()` asks the NVIDIA driver (pynvml / nvidia-ml-py) for each GPU's name, total and
  free memory, compute capability and NVLink peers. No driver or no GPU gives an empty
  inventory whose `reason` says why, never a traceback.
  It also asks each GPU's CPU affinity (`nvmlDeviceGetCpuAffinity`: the cores of the NUMA node
  the GPU hangs off), so an engine's CPU threads can follow its GPU.
* `local_cpus()` lists the cores this process may run on (its affinity mask), the CPUs a
  one-node plan divides among engines and the request tier.
* `from_spec("2x4xA100-40GB")` describes GPUs to plan for ahead of time: NODESxGPUSxNAME-MEMGB
  (NODES defaults to 1); different nodes are joined with commas ("1xH100-80GB,1xRTX4090-24GB").

A running Ray cluster's nodes come from `cluster.runtime.nodes.ray_inventory()` (`cluster/runtime/`
is the only folder of `cluster/` that imports ray).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import GpuSpecError

GiB = 1 << 30
MiB = 1 << 20

# Memory NVML reports for common cards (a "80GB" H100 shows 81559 MiB), so spec strings plan
# with the real figure; other names take MEM GiB as written. Also: compute capability and
# whether the card is sold in NVLink-connected nodes (SXM / HGX boards link all GPUs).
KNOWN_GPUS: dict[tuple[str, int], tuple[int, tuple[int, int], bool]] = {
    ("H100", 80): (81559 * MiB, (9, 0), True),
    ("H100", 94): (95830 * MiB, (9, 0), True),
    ("H200", 141): (143771 * MiB, (9, 0), True),
    ("A100", 80): (81920 * MiB, (8, 0), True),
    ("A100", 40): (40960 * MiB, (8, 0), True),
    ("L40S", 48): (46068 * MiB, (8, 9), False),
    ("L4", 24): (23034 * MiB, (8, 9), False),
    ("A10G", 24): (23028 * MiB, (8, 6), False),
    ("RTX4090", 24): (24564 * MiB, (8, 9), False),
    ("RTX3090", 24): (24576 * MiB, (8, 6), False),
    ("RTX6000ADA", 48): (49140 * MiB, (8, 9), False),
}
MAX_NODES = 1024
MAX_GPUS_PER_NODE = 64
_SPEC = re.compile(r"^(?:(\d+)x)?(\d+)x([A-Za-z0-9_.]+)-(\d+(?:\.\d+)?)GB$", re.IGNORECASE)


@dataclass(frozen=True)
class Gpu:
    index: int  # id on its node, as CUDA_VISIBLE_DEVICES counts
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int] | None = None
    nvlink: frozenset[int] = field(default_factory=frozenset)  # GPU indices on the same node linked by NVLink
    cpus: tuple[int, ...] = ()  # cores close to this GPU (NVML CPU affinity); empty: unknown


@dataclass(frozen=True)
class Node:
    index: int
    name: str
    gpus: tuple[Gpu, ...]
    ray_node_id: str | None = None
    cpus: tuple[int, ...] = ()  # the node's cores (OS CPU ids); empty: unknown (a spec string)


@dataclass(frozen=True)
class Inventory:
    nodes: tuple[Node, ...]
    source: str  # "nvml", "spec:<text>", "ray"
    reason: str = ""  # why it is empty, when it is

    @property
    def gpu_count(self) -> int:
        return sum(len(n.gpus) for n in self.nodes)

    def gpu(self, node: int, index: int) -> Gpu | None:
        if 0 <= node < len(self.nodes) and 0 <= index < len(self.nodes[node].gpus):
            return self.nodes[node].gpus[index]
        return None

    def describe(self) -> str:
        if not self.nodes:
            return f"no GPUs ({self.reason})"
        parts = []
        for n in self.nodes:
            names = sorted({f"{g.name} {g.total_bytes / GiB:.1f} GiB" for g in n.gpus})
            parts.append(f"node {n.index}: {len(n.gpus)}× {', '.join(names)}")
        return "; ".join(parts)


def from_spec(spec: str) -> Inventory:
    """Reads NODESxGPUSxNAME-MEMGB[,…] into an inventory with all memory free."""
    text = spec.strip()
    if not text:
        raise GpuSpecError(spec, "empty")
    nodes: list[Node] = []
    for part in text.split(","):
        m = _SPEC.match(part.strip())
        if not m:
            raise GpuSpecError(spec, f"cannot read {part.strip()!r}")
        n_nodes = int(m.group(1) or 1)
        n_gpus = int(m.group(2))
        name = m.group(3).upper()
        mem_gb = float(m.group(4))
        if not 1 <= n_nodes <= MAX_NODES:
            raise GpuSpecError(spec, f"node count {n_nodes} must be 1-{MAX_NODES}")
        if not 1 <= n_gpus <= MAX_GPUS_PER_NODE:
            raise GpuSpecError(spec, f"GPUs per node {n_gpus} must be 1-{MAX_GPUS_PER_NODE}")
        if not 1 <= mem_gb <= 4096:
            raise GpuSpecError(spec, f"GPU memory {mem_gb:g} GB must be 1-4096")
        total, cc, linked = KNOWN_GPUS.get((name, round(mem_gb)), (int(mem_gb * GiB), None, False))
        for _ in range(n_nodes):
            peers = frozenset(range(n_gpus)) if linked else frozenset()
            gpus = tuple(Gpu(i, f"{name}-{mem_gb:g}GB", total, total, cc, peers - {i}) for i in range(n_gpus))
            nodes.append(Node(len(nodes), f"node{len(nodes)}", gpus))
    return Inventory(tuple(nodes), source=f"spec:{text}")


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """"0,2-4" → (0, 2, 3, 4): the Linux CPU list taskset, cpusets and vLLM read."""
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        out += range(int(low), int(high or low) + 1)
    return tuple(sorted(set(out)))


def format_cpu_list(cpus: Iterable[int]) -> str:
    """(0, 2, 3, 4) → "0,2-4"; the inverse of `parse_cpu_list`."""
    ids = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(parts)


def local_cpus() -> tuple[int, ...]:
    """The cores this process may run on (its affinity mask, which a container or cpuset limits)."""
    return tuple(sorted(os.sched_getaffinity(0)))


def _mask_cpus(words: Sequence[int], bits: int = 64) -> tuple[int, ...]:
    """NVML's CPU affinity bitmask (64-bit words, lowest CPU in the lowest bit) → CPU ids."""
    return tuple(w * bits + b for w, word in enumerate(words) for b in range(bits) if int(word) >> b & 1)


def from_nvml(nvml: Any = None) -> Inventory:
    """This machine's NVIDIA GPUs. `nvml` replaces the pynvml module (tests pass a fake)."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return Inventory((), source="nvml", reason="nvidia-ml-py is not installed")
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return Inventory((), source="nvml", reason=f"no NVIDIA GPU visible (NVML: {_text(exc)})")
    try:
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        gpus = []
        for i, h in enumerate(handles):
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            gpus.append(
                Gpu(
                    index=i,
                    name=_text(nvml.nvmlDeviceGetName(h)),
                    total_bytes=int(mem.total),
                    free_bytes=int(mem.free),
                    compute_capability=_capability(nvml, h),
                    nvlink=_nvlink_peers(nvml, i, handles),
                    cpus=_cpu_affinity(nvml, h),
                )
            )
    except nvml.NVMLError as exc:
        return Inventory((), source="nvml", reason=f"NVML could not list the GPUs: {_text(exc)}")
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass  # shutting down after a failed listing: the listing's error is the one to report
    if not gpus:
        return Inventory((), source="nvml", reason="the NVIDIA driver reports no GPU")
    return Inventory((Node(0, "local", tuple(gpus), cpus=local_cpus()),), source="nvml")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _capability(nvml: Any, handle: Any) -> tuple[int, int] | None:
    try:
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        return int(major), int(minor)
    except nvml.NVMLError:
        return None


def _cpu_affinity(nvml: Any, handle: Any) -> tuple[int, ...]:
    """Cores NVML says are close to the GPU (its NUMA node's), within this process's own mask.

    Empty where NVML cannot tell (old driver, or a board that reports no affinity): the CPU
    plan then treats every core of the node as equally close.
    """
    ask = getattr(nvml, "nvmlDeviceGetCpuAffinity", None)
    if ask is None:  # an nvidia-ml-py without it
        return ()
    words = -(-(os.cpu_count() or 1) // 64)  # 64-bit words to cover every CPU id
    try:
        mask = ask(handle, words)
    except nvml.NVMLError:
        return ()
    allowed = set(local_cpus())
    return tuple(c for c in _mask_cpus(list(mask)) if c in allowed)


def _nvlink_peers(nvml: Any, index: int, handles: list[Any]) -> frozenset[int]:
    """GPU indices this GPU reaches over NVLink (empty where NVML cannot tell).

    Asks NVML's P2P status for the NVLink capability pair by pair: that also covers NVSwitch
    boards (HGX), where a link's remote end is the switch, not the peer GPU.
    """
    caps = getattr(nvml, "NVML_P2P_CAPS_INDEX_NVLINK", None)
    ok = getattr(nvml, "NVML_P2P_STATUS_OK", 0)
    if caps is None:
        return frozenset()
    peers = set()
    for j, other in enumerate(handles):
        if j == index:
            continue
        try:
            if nvml.nvmlDeviceGetP2PStatus(handles[index], other, caps) == ok:
                peers.add(j)
        except nvml.NVMLError:
            continue  # not supported on this card or driver: no NVLink claimed
    return frozenset(peers)
