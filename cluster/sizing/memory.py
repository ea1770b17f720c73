"""How much GPU memory a model's engine needs: weights, KV cache and a stated overhead.

For a decoder of the Qwen2 / Llama shape (config.json: hidden_size, intermediate_size,
num_hidden_layers, num_attention_heads, num_key_value_heads, vocab_size, tie_word_embeddings):

    parameters   = embeddings (vocab × hidden) [+ lm_head (vocab × hidden) unless tied]
                 + layers × (q, k, v, o projections and their biases + gate/up/down MLP + 2 norms)
                 + final norm
    weight bytes = linear-layer parameters × bytes of the weight format
                 + embeddings, lm_head and norms × bytes of the activation dtype
                   (fp8, AWQ and GPTQ quantize the linear layers only)
    KV per token = 2 (K and V) × layers × KV heads × head dim × KV dtype bytes

Per GPU, a replica with tensor-parallel size `tp` needs

    weights / tp + KV per token / tp × sequences × context + overhead(tp)

where the overhead is stated, not measured: the CUDA context and allocator slack of a vLLM
process (1 GiB), CUDA graphs (0.5 GiB, none with enforce_eager), NCCL buffers when tp > 1
(0.25 GiB), and the peak activations of one batch of `BATCHED_TOKENS` tokens plus float32
logits for every sequence. docs/placement.md shows where these figures come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.errors import SizingError
from cluster.sizing.catalog import find_config
from cluster.spec import ModelSpec, PlacementSpec

GiB = 1 << 30
CONTEXT_BYTES = 1 * GiB  # CUDA context, cuBLAS workspaces, allocator slack per engine process
CUDA_GRAPH_BYTES = GiB // 2  # captured graphs; vLLM reports 0.3-1.5 GiB for these model sizes
NCCL_BYTES = GiB // 4  # per rank, only when tensor parallel
BATCHED_TOKENS = 8192  # vLLM's default max_num_batched_tokens with chunked prefill
QUANT_GROUP = 128  # AWQ/GPTQ group size: one scale (2 bytes) and one zero point per group

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Architecture:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    qkv_bias: bool = True

    @classmethod
    def from_config(cls, cfg: dict[str, Any], model: str = "?") -> Architecture:
        text = cfg.get("text_config", cfg)  # multimodal configs nest the language model
        try:
            hidden = int(text["hidden_size"])
            heads = int(text["num_attention_heads"])
            return cls(
                layers=int(text["num_hidden_layers"]),
                hidden=hidden,
                heads=heads,
                kv_heads=int(text.get("num_key_value_heads") or heads),
                head_dim=int(text.get("head_dim") or hidden // heads),
                intermediate=int(text["intermediate_size"]),
                vocab=int(text["vocab_size"]),
                tied_embeddings=bool(text.get("tie_word_embeddings", False)),
                # Qwen2 has q/k/v biases; Llama-style configs say attention_bias.
                qkv_bias=bool(text.get("attention_bias", text.get("model_type", "qwen2") == "qwen2")),
            )
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise SizingError(model, f"config.json lacks or garbles {exc}; chorus sizes Qwen2/Llama-shaped decoders") from None

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_params(self) -> int:
        """Parameters of the projection matrices (what fp8/AWQ/GPTQ quantize)."""
        q_dim = self.heads * self.head_dim
        attn = self.hidden * q_dim + 2 * self.hidden * self.kv_dim + q_dim * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attn + mlp)

    def other_params(self) -> int:
        """Embeddings, lm_head, norms and biases (kept in the activation dtype)."""
        embed = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        bias = (self.heads * self.head_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        norms = 2 * self.hidden
        return embed + self.layers * (bias + norms) + self.hidden

    def params(self) -> int:
        return self.linear_params() + self.other_params()


@dataclass(frozen=True)
class ModelMemory:
    """Memory facts of one model as an engine will load it."""

    name: str
    origin: str  # where the architecture came from (local folder, HF cache, catalog entry)
    arch: Architecture
    weight_format: str  # "bfloat16", "fp8", "awq-int4"…
    weight_bytes: int
    kv_bytes_per_token: int
    act_bytes: int  # activation / KV dtype bytes
    max_num_seqs: int
    max_model_len: int
    enforce_eager: bool

    @property
    def params(self) -> int:
        return self.arch.params()

    def tp_sizes(self, limit: int = 64) -> list[int]:
        """Tensor-parallel sizes that divide both the attention and the KV heads."""
        return [t for t in range(1, limit + 1) if self.arch.heads % t == 0 and self.arch.kv_heads % t == 0]

    def overhead_bytes(self, tp: int = 1) -> int:
        act = BATCHED_TOKENS * (4 * self.arch.hidden + 2 * self.arch.intermediate // tp) * self.act_bytes
        logits = self.max_num_seqs * self.arch.vocab * 4
        graphs = 0 if self.enforce_eager else CUDA_GRAPH_BYTES
        return CONTEXT_BYTES + graphs + (NCCL_BYTES if tp > 1 else 0) + act + logits

    def kv_bytes(self, tokens: int, tp: int = 1) -> int:
        """KV cache for `tokens` tokens on each of `tp` GPUs."""
        return -(-tokens * self.kv_bytes_per_token // tp)

    def fixed_bytes(self, tp: int = 1) -> int:
        """Per GPU, everything but the KV cache: the weights' shard and the overhead."""
        return -(-self.weight_bytes // tp) + self.overhead_bytes(tp)

    def need_bytes(self, tokens: int, tp: int = 1) -> int:
        """Per GPU, what a replica needs to hold `tokens` KV tokens."""
        return self.fixed_bytes(tp) + self.kv_bytes(tokens, tp)

    def kv_tokens(self, budget_bytes: int, tp: int = 1) -> int:
        """KV tokens a replica holds when each of its GPUs grants it `budget_bytes`."""
        free = budget_bytes - self.fixed_bytes(tp)
        return max(0, free * tp // self.kv_bytes_per_token)


def weight_bytes(arch: Architecture, act_bytes: int, quant: str | None, bits: int) -> tuple[int, str]:
    """Bytes of the weights and a label for their format."""
    linear, other = arch.linear_params(), arch.other_params()
    if quant in ("awq", "gptq"):
        per_group = 2 + bits / 8  # float16 scale and a packed zero point per group
        return int(linear * bits / 8 + linear / QUANT_GROUP * per_group) + other * act_bytes, f"{quant}-int{bits}"
    if quant == "fp8":
        return linear + other * act_bytes, "fp8"
    return (linear + other) * act_bytes, {4: "float32"}.get(act_bytes, "bfloat16")


def estimate(model: ModelSpec) -> ModelMemory:
    """Memory facts of `model` (its source's config.json, or the bundled catalog)."""
    found = find_config(model.source)
    if found is None:
        raise SizingError(
            model.name,
            f"cannot size '{model.source}': no config.json there, none in the Hugging Face cache and no "
            "catalog entry (cluster/catalog/); download the model or point source at its folder",
        )
    cfg = found.config
    arch = Architecture.from_config(cfg, model.name)
    qc = cfg.get("quantization_config") or {}
    quant = model.quantization or (str(qc.get("quant_method", "")).lower() or None)
    if quant not in (None, "awq", "gptq", "fp8"):
        raise SizingError(model.name, f"quantization '{quant}' is not one chorus can size (awq, gptq, fp8)")
    bits = int(qc.get("bits", 4 if quant in ("awq", "gptq") else 8))
    dtype: str = model.dtype
    if dtype == "auto":
        dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
    act_bytes = DTYPE_BYTES.get(dtype, 2)
    wbytes, fmt = weight_bytes(arch, act_bytes, quant, bits)
    if quant is None:
        fmt = dtype
    kv = 2 * arch.layers * arch.kv_dim * act_bytes
    return ModelMemory(
        name=model.name,
        origin=found.origin,
        arch=arch,
        weight_format=fmt,
        weight_bytes=wbytes,
        kv_bytes_per_token=kv,
        act_bytes=act_bytes,
        max_num_seqs=model.max_num_seqs,
        max_model_len=model.max_model_len,
        enforce_eager=model.enforce_eager,
    )


def kv_target(model: ModelSpec, placement: PlacementSpec) -> tuple[int, int]:
    """(sequences, context) a replica must hold at once: the placement's targets or the engine's limits."""
    seqs = placement.min_concurrency or model.max_num_seqs
    context = min(placement.context or model.max_model_len, model.max_model_len)
    return seqs, context
