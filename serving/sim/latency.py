"""The GPU latency model: how long one vLLM step takes on a GPU, from published peaks.

A step serves every running sequence one token (decode) and spends the rest of its token budget
on prompt chunks (chunked prefill). It lasts, in simulated seconds,

    max(HBM bytes read / achieved bandwidth, FLOPs / achieved FLOP/s) / TP efficiency
      + per-step overhead + per-sequence overhead × batch

where the bytes are the weights (once per step, shared by the whole batch) plus every sequence's
KV cache, and the FLOPs are 2 × parameters per token plus attention. docs/simulated-engine.md
states every constant, its source and what the model ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cluster.inventory import KNOWN_GPUS
from cluster.sizing.memory import ModelMemory


@dataclass(frozen=True)
class GpuProfile:
    """Published peak figures of one GPU and the fractions an inference engine achieves.

    Peaks are NVIDIA's H100 SXM5 datasheet figures; the achieved fractions and overheads are
    stated assumptions (docs/simulated-engine.md gives the reasoning and sanity checks).
    """

    name: str = "H100-SXM5-80GB"
    memory_bytes: int = KNOWN_GPUS[("H100", 80)][0]  # what NVML reports for an 80 GB H100
    hbm_bytes_per_s: float = 3.35e12  # HBM3 peak bandwidth
    bf16_flops: float = 989.4e12  # dense BF16 tensor-core peak (1,979 is with 2:4 sparsity)
    bandwidth_efficiency: float = 0.75  # achieved share of HBM peak reading weights and KV
    flops_efficiency: float = 0.55  # achieved share of tensor-core peak in large GEMMs (prefill)
    step_overhead_s: float = 1.0e-3  # scheduling, sampling, kernel launches per step (CUDA graphs on)
    seq_overhead_s: float = 10e-6  # per sequence per step: sampling, detokenizing, bookkeeping
    tp_efficiency: tuple[float, ...] = (1.0, 0.88, 0.80, 0.80, 0.70, 0.70, 0.70, 0.70)  # by TP size 1…8
    max_batched_tokens: int = 8192  # vLLM's chunked-prefill token budget per step

    def tp_factor(self, tp: int) -> float:
        """The share of linear speed-up `tp` GPUs keep after their all-reduces."""
        return self.tp_efficiency[min(tp, len(self.tp_efficiency)) - 1]


H100 = GpuProfile()


@dataclass(frozen=True)
class LatencyModel:
    """One model's step time on `tp` GPUs of one profile."""

    profile: GpuProfile
    memory: ModelMemory  # parameters, weight bytes, KV bytes per token, layers, heads
    tp: int = 1

    def step_seconds(
        self, decode_seqs: int, context_tokens: int, prefill: Sequence[tuple[int, int]] = ()
    ) -> float:
        """Nominal length of one step: `decode_seqs` sequences decoding one token each with
        `context_tokens` of KV between them, plus prompt chunks (tokens, position they start at)."""
        p, m = self.profile, self.memory
        new_tokens = decode_seqs + sum(n for n, _ in prefill)
        # Bytes: the weights once per step (the whole batch shares the read), every decoding
        # sequence's KV, and the KV each prompt chunk attends to (its own and what precedes it).
        kv_read = context_tokens + sum(start + n for n, start in prefill)
        bytes_read = m.weight_bytes + kv_read * m.kv_bytes_per_token
        # FLOPs: 2 per parameter per new token, plus attention (QK^T and AV: 4 × layers × q_dim
        # per token attended to); a chunk's token at position i attends to i tokens.
        q_dim = m.arch.heads * m.arch.head_dim
        attended = context_tokens + sum(n * (start + n / 2) for n, start in prefill)
        flops = 2 * m.params * new_tokens + 4 * m.arch.layers * q_dim * attended
        memory_s = bytes_read / (p.hbm_bytes_per_s * p.bandwidth_efficiency)
        compute_s = flops / (p.bf16_flops * p.flops_efficiency)
        gpu = max(memory_s, compute_s)  # roofline: the step waits for the slower of the two
        batch = decode_seqs + len(prefill)
        return gpu / self.tp / p.tp_factor(self.tp) + p.step_overhead_s + p.seq_overhead_s * batch
