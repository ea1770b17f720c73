"""What a deployment is: a model with its engine options, and where its replicas go.

Pure data (pydantic, no Ray, no vLLM). The serving layer turns a `ModelSpec` into engine
arguments; the placement planner reads both to size memory and to assign GPUs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from cluster.vllm_args import problem_with

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# A Linux CPU list as taskset and vLLM's VLLM_CPU_OMP_THREADS_BIND read it: "1", "0-3", "0,2,8-11".
CPU_SET_PATTERN = r"^\d+(-\d+)?(,\d+(-\d+)?)*$"


def _vllm_name(name: str) -> str:
    problem = problem_with(name)
    if problem is not None:
        raise ValueError(problem)
    return name


# Validated as a dict key, so an error's location ends in the misspelt name itself.
EngineArgName = Annotated[str, AfterValidator(_vllm_name)]


class Strict(BaseModel):
    """Base for every config model: unknown fields are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RecordedSpec(Strict):
    """A model whose answers were recorded once (a benchmark run, a batch job) and are replayed,
    for offline evaluation. Cost is estimated from the real model's speed and GPUs."""

    answers_of: str | None = Field(
        None, min_length=1, description="The model's name in the records' `answers` (default: this model's name)."
    )
    tokens_per_s: float = Field(
        50.0, gt=0.0, le=100_000.0, description="Assumed decode speed of the real model, for estimated engine seconds."
    )
    gpus: float = Field(
        1.0, ge=0.0, le=64.0, description="GPUs the real model holds, for estimated GPU-seconds (0: a CPU model)."
    )


class ModelSpec(Strict):
    """One model chorus hosts, and the options its vLLM engine starts with."""

    name: str = Field(pattern=NAME_PATTERN, description="Name requests and roles use for this model.")
    source: str = Field(
        min_length=1,
        description="Local Hugging Face folder (absolute, or relative to the config file) or a hub id "
        "such as 'Qwen/Qwen2.5-7B-Instruct'; for engine: recorded, the JSONL file of recorded answers.",
    )
    engine: Literal["vllm", "recorded"] = Field(
        "vllm",
        description="vllm: a live engine; recorded: replay recorded answers from `source` (offline evaluation, "
        "no GPU; `chorus eval` runs such models in-process).",
    )
    recorded: RecordedSpec | None = Field(None, description="engine: recorded: whose answers and their cost.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight and activation dtype; use float32 on CPUs without AVX512-BF16."
    )
    quantization: Literal["fp8", "awq", "gptq"] | None = Field(
        None, description="Weight quantization the checkpoint uses, if any."
    )
    max_model_len: int = Field(2048, ge=16, le=1_048_576, description="Longest prompt + completion, in tokens.")
    max_num_seqs: int = Field(
        16, ge=1, le=4096, description="Sequences the engine batches at once; also each replica's in-flight bound."
    )
    max_queue: int = Field(
        128,
        ge=0,
        le=1_000_000,
        description="Requests that may wait per replica beyond max_num_seqs; past that, new interactive "
        "requests get HTTP 429 with Retry-After instead of waiting without bound.",
    )
    kv_cache_memory_bytes: int | None = Field(
        None,
        ge=1 << 20,
        description="Explicit KV-cache budget in bytes. Required on CPU (vLLM's default fraction fails there); "
        "on GPU the placement's gpu_share sizes it instead.",
    )
    batch_slots_when_busy: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Engine slots batch-priority requests (batch jobs) may hold in a replica while interactive "
        "requests are in it or waiting, and for 2 s after; the rest of the batch waits in the replica's queue. "
        "Default: an eighth of max_num_seqs on a CPU engine, where every decode step slows with the batch; "
        "no limit on a GPU, where it hardly does. max_num_seqs turns it off.",
    )
    enable_prefix_caching: bool = Field(True, description="Reuse KV blocks of shared prompt prefixes.")
    enforce_eager: bool = Field(False, description="Skip CUDA graphs / compilation (always true on CPU).")
    seed: int = Field(0, ge=0, description="Engine sampling seed, for reproducible runs.")
    engine_kwargs: dict[EngineArgName, Any] = Field(
        default_factory=dict,
        description="Any other vLLM engine argument (AsyncEngineArgs: max_num_batched_tokens, trust_remote_code, "
        "revision, tokenizer…) or OpenAI-layer argument (FrontendArgs: chat_template, tool_call_parser, "
        "enable_auto_tool_choice…), passed through as given. Names are checked against the pinned vLLM's.",
    )

    @model_validator(mode="after")
    def _recorded_only_for_recorded(self) -> ModelSpec:
        if self.recorded is not None and self.engine != "recorded":
            raise ValueError("recorded: is only read with engine: recorded; set engine: recorded or remove it")
        return self

    def recording(self) -> RecordedSpec:
        """The recorded-answers settings (defaults when `recorded:` is omitted)."""
        return self.recorded or RecordedSpec()


class GpuSlot(Strict):
    """Where one replica runs: a node and the GPU indices on it (one per tensor-parallel rank)."""

    node: int = Field(0, ge=0, description="Index of the node in the inventory (0 on a single machine).")
    gpu_ids: list[int] = Field(min_length=1, description="GPU indices on that node, one per tensor-parallel rank.")
    gpu_share: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="This replica's share of each of its GPUs when it differs from the deployment's gpu_share "
        "(`chorus plan` writes it for a replica that has a GPU to itself).",
    )


class PlacementSpec(Strict):
    """How many replicas of one model run and how much GPU each gets."""

    replicas: int = Field(
        1, ge=1, le=1024, description="Independent engine copies behind one model name; `fill` means `fill: true`."
    )
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs one replica shards its weights over.")
    gpu_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Fraction of each of its GPUs a replica may use (vLLM gpu_memory_utilization and the Ray "
        "GPU resource). 0 runs the model on CPU.",
    )
    num_cpus: float = Field(1.0, gt=0.0, le=256.0, description="Ray CPU resource per replica.")
    gpus: list[GpuSlot] | None = Field(
        None, description="Explicit GPUs per replica (written by `chorus plan`); omitted lets Ray choose."
    )
    cpus: list[str] | None = Field(
        None,
        description="CPU cores per replica, as a Linux CPU list (\"1\", \"0-3\", \"0,2\"), that its engine's "
        "threads are bound to (vLLM-CPU's VLLM_CPU_OMP_THREADS_BIND). Written by `chorus plan`; omitted, "
        "`chorus up` plans them on a one-node cluster (cluster.placement.cpus).",
    )
    # Sizing targets `chorus plan` reads; the engine itself ignores them.
    min_concurrency: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Sequences of `context` tokens each replica must hold in its KV cache at once; `chorus plan` "
        "sizes gpu_share for it. Default: the model's max_num_seqs.",
    )
    context: int | None = Field(
        None,
        ge=16,
        le=1_048_576,
        description="Tokens per sequence for min_concurrency. Default: the model's max_model_len.",
    )
    fill: bool = Field(
        False,
        description="`chorus plan` places one replica, then gives GPUs left unused to extra replicas of fill "
        "deployments, busiest first (the model most roles are bound to), and writes the resulting `replicas`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _replicas_fill(cls, data: object) -> object:
        """`replicas: fill` is shorthand for `fill: true` (one replica plus the spare GPUs)."""
        if isinstance(data, dict) and data.get("replicas") == "fill":
            return {**data, "replicas": 1, "fill": True}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PlacementSpec:
        if self.tensor_parallel_size > 1 and self.gpu_share == 0.0:
            raise ValueError(
                f"tensor_parallel_size={self.tensor_parallel_size} needs GPUs: set gpu_share > 0 "
                "or tensor_parallel_size: 1 for a CPU deployment"
            )
        if self.cpus is not None:
            if len(self.cpus) != self.replicas:
                raise ValueError(f"cpus lists {len(self.cpus)} CPU sets for replicas={self.replicas}: give one per replica")
            for i, text in enumerate(self.cpus):
                if not re.match(CPU_SET_PATTERN, text):
                    raise ValueError(f"cpus[{i}] = {text!r} is not a CPU list: write it like \"1\", \"0-3\" or \"0,2\"")
                for part in text.split(","):
                    low, _, high = part.partition("-")
                    if high and int(high) < int(low):
                        raise ValueError(f"cpus[{i}] = {text!r}: range {part} runs backwards; write {high}-{low}")
        if self.gpus is not None:
            if len(self.gpus) != self.replicas:
                raise ValueError(f"gpus lists {len(self.gpus)} slots for replicas={self.replicas}: give one per replica")
            for i, slot in enumerate(self.gpus):
                if slot.gpu_share is not None and self.gpu_share == 0.0:
                    raise ValueError(
                        f"gpus[{i}].gpu_share is set but gpu_share is 0 (a CPU deployment); set gpu_share > 0"
                    )
                if len(slot.gpu_ids) != self.tensor_parallel_size:
                    raise ValueError(
                        f"gpus[{i}] has {len(slot.gpu_ids)} GPU ids for tensor_parallel_size="
                        f"{self.tensor_parallel_size}: give one id per rank"
                    )
        return self

    @property
    def on_gpu(self) -> bool:
        return self.gpu_share > 0.0

    def share_of(self, replica: int) -> float:
        """The GPU share replica `replica` runs with: its slot's, else the deployment's."""
        own = self.gpus[replica].gpu_share if self.gpus is not None else None
        return own if own is not None else self.gpu_share
