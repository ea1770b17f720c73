"""The vLLM argument names a model's `engine_kwargs` may use, read from `vllm_args.json`.

The list is generated from the pinned vLLM (`scripts/gen_vllm_args.py`) so that config checks
need no vLLM import; a unit test compares it with the installed vLLM. Names split in two: engine
arguments (`AsyncEngineArgs`) and the OpenAI layer's own (`FrontendArgs`: chat template, tool
parser…). Some names are refused because chorus sets them itself, from the model's own fields
or from the placement, and a second place to set them would only disagree with the first.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).with_name("vllm_args.json")

# Set by a ModelSpec field of (mostly) the same name: use that field.
FROM_MODEL_FIELDS = {
    "model": "source",
    "dtype": "dtype",
    "quantization": "quantization",
    "max_model_len": "max_model_len",
    "max_num_seqs": "max_num_seqs",
    "kv_cache_memory_bytes": "kv_cache_memory_bytes",
    "enable_prefix_caching": "enable_prefix_caching",
    "enforce_eager": "enforce_eager",
    "seed": "seed",
    "served_model_name": "name",
}
# Decided by the placement (GPU share, tensor parallel, the Ray bundles the ranks use).
FROM_PLACEMENT = {
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "gpu_memory_utilization",
    "distributed_executor_backend",
}
# Settings of vLLM's own HTTP server, which chorus replaces with its own (`server:`).
HTTP_SERVER = {
    "host", "port", "uds", "api_key", "root_path", "middleware", "allowed_origins", "allowed_methods",
    "allowed_headers", "allow_credentials", "ssl_keyfile", "ssl_certfile", "ssl_ca_certs", "ssl_cert_reqs",
    "ssl_ciphers", "enable_ssl_refresh", "uvicorn_log_level", "disable_uvicorn_access_log",
    "disable_access_log_for_endpoints", "h11_max_incomplete_event_size", "h11_max_header_count", "grpc_port",
    "disable_fastapi_docs", "enable_offline_docs", "data_parallel_supervisor_port", "dp_supervisor_probe_interval_s",
    "dp_supervisor_probe_timeout_s", "dp_supervisor_probe_failure_threshold", "enable_request_id_headers",
    "enable_scale_out", "tool_server",
}  # fmt: skip


@dataclass(frozen=True)
class VllmArgNames:
    version: str
    engine: frozenset[str]
    frontend: frozenset[str]


@cache
def names() -> VllmArgNames:
    data = json.loads(DATA.read_text())
    return VllmArgNames(data["vllm_version"], frozenset(data["engine"]), frozenset(data["frontend"]))


def problem_with(name: str) -> str | None:
    """Why `name` cannot be an `engine_kwargs` key, or None when it can."""
    if name in FROM_MODEL_FIELDS:
        return f"set by the model's own field `{FROM_MODEL_FIELDS[name]}`; set it there"
    if name in FROM_PLACEMENT:
        return "decided by the placement (placement: gpu_share, tensor_parallel_size); set it there"
    if name in HTTP_SERVER:
        return "a setting of vLLM's HTTP server, which chorus replaces; see `server:`"
    known = names()
    if name in known.engine or name in known.frontend:
        return None
    close = difflib.get_close_matches(name, sorted(known.engine | known.frontend), n=1, cutoff=0.75)
    hint = (
        f" (did you mean {close[0]}?)"
        if close
        else f" (vLLM {known.version}'s AsyncEngineArgs and FrontendArgs list them)"
    )
    return "not a vLLM engine argument" + hint


def is_frontend(name: str) -> bool:
    """True for an argument of vLLM's OpenAI layer (chat template, tool parser…), not its engine."""
    return name in names().frontend and name not in names().engine
