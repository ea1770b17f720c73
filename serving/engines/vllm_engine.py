"""`VLLMEngine`: the Engine protocol over vLLM's AsyncLLM. The only module that imports vllm.

The same code serves a local Hugging Face folder on a CPU and a hub id on a GPU node; what
differs is the `EngineSettings` the host derives from the placement (GPU share, tensor parallel).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from cluster.errors import EngineError, PromptTooLong
from cluster.inventory import parse_cpu_list
from cluster.spec import ModelSpec
from cluster.vllm_args import is_frontend
from serving.engines.base import PROBE_REQUEST, EngineHealth
from serving.engines.vllm_openai import OpenAILayer
from serving.types import Endpoint, GenerationRequest, Result, StreamChunk, TokenLogprob, Usage


@dataclass(frozen=True)
class EngineSettings:
    """What the placement decides for one replica's engine."""

    on_gpu: bool = False
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    cpus: str | None = None  # cores the plan gives this engine ("1", "0-3"); None: vLLM's default
    # Export vLLM's own engine stats (queue, KV cache, TTFT…) through Ray's metrics; only where
    # the engine runs in a Ray worker (ModelHost actors).
    ray_metrics: bool = False


class VLLMEngine:
    def __init__(self, spec: ModelSpec, settings: EngineSettings = EngineSettings()) -> None:
        self.spec = spec
        self.settings = settings
        self._llm: Any = None
        self._outputs = 0  # outputs streamed out of the engine, any request (progress)
        self._tokenizer: Any = None
        self._openai: OpenAILayer | None = None
        self._tasks: tuple[str, ...] = ()  # what the started engine serves: generate, embed…
        # Chat templates and tokenization run here, not on the host's event loop; one thread,
        # because a tokenizer is not safe to share between threads.
        self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chorus-prep-{spec.name}")

    def engine_args(self) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs

        spec, s = self.spec, self.settings
        kwargs: dict[str, Any] = dict(
            model=spec.source,
            dtype=spec.dtype,
            max_model_len=spec.max_model_len,
            max_num_seqs=spec.max_num_seqs,
            enable_prefix_caching=spec.enable_prefix_caching,
            seed=spec.seed,
            quantization=spec.quantization,
            tensor_parallel_size=s.tensor_parallel_size,
            # Closed JSON schemas terminate reliably only without free whitespace.
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
            disable_log_stats=True,
        )
        # Any other vLLM engine argument from the model's YAML (names checked at config load);
        # the OpenAI layer's own (chat template, tool parser) go to it instead.
        kwargs.update({k: v for k, v in spec.engine_kwargs.items() if not is_frontend(k)})
        if s.tensor_parallel_size > 1:
            # One Ray worker per rank inside the replica's placement group (cluster.runtime.reservation
            # names the bundles through VLLM_RAY_BUNDLE_INDICES).
            kwargs["distributed_executor_backend"] = "ray"
        if s.on_gpu:
            kwargs["enforce_eager"] = spec.enforce_eager
            if s.gpu_memory_utilization is not None:
                kwargs["gpu_memory_utilization"] = s.gpu_memory_utilization
            if spec.kv_cache_memory_bytes is not None:
                kwargs["kv_cache_memory_bytes"] = spec.kv_cache_memory_bytes
        else:
            kwargs["enforce_eager"] = True
            # vLLM-CPU sizes its default KV fraction from NUMA node 0 only and fails to start.
            kwargs["kv_cache_memory_bytes"] = spec.kv_cache_memory_bytes or (512 << 20)
        return AsyncEngineArgs(**kwargs)

    async def start(self) -> dict[str, float]:
        # Importing vLLM and building AsyncLLM take tens of seconds of blocking work (the engine
        # process starts, loads weights, profiles memory): run them off the event loop, so the
        # host keeps answering probes and status calls ("engine starting") meanwhile. AsyncLLM
        # starts its output handler on the first request when built outside a running loop.
        module = await asyncio.to_thread(importlib.import_module, "vllm.v1.engine.async_llm")
        async_llm: Any = module.AsyncLLM
        phases = {"vllm imported": time.time()}

        if self.settings.cpus:
            # vLLM reads the binding when AsyncLLM spawns its engine processes, which inherit
            # this process's environment and affinity: set them first (one engine per host process).
            if self.settings.on_gpu:
                os.sched_setaffinity(0, parse_cpu_list(self.settings.cpus))  # its GPU's NUMA cores
            else:
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = self.settings.cpus  # the worker's OpenMP threads
        loggers: list[Any] | None = None
        if self.settings.ray_metrics:
            # vLLM's Ray stat logger: with a custom logger vLLM turns stats on without its
            # default console and prometheus_client loggers.
            from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

            loggers = [RayPrometheusStatLogger]
        args = self.engine_args()
        try:
            self._llm = await asyncio.to_thread(async_llm.from_engine_args, args, stat_loggers=loggers)
            self._openai = await OpenAILayer.build(self.spec, self._llm, args)
            self._tasks = tuple(await self._llm.get_supported_tasks())
        except Exception as exc:  # surface as a plain, picklable error with the model named
            raise EngineError(f"engine for '{self.spec.name}' ({self.spec.source}) failed to start: {exc}") from exc
        self._tokenizer = self._llm.get_tokenizer()
        phases["engine ready"] = time.time()
        return phases

    async def openai(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[dict[str, Any] | str]:
        """Serve a raw OpenAI request through vLLM's own OpenAI layer (its outputs count as the
        engine's progress, as those of `generate` and `stream` do)."""
        if self._openai is None:
            raise EngineError(f"engine for '{self.spec.name}' is not started")
        async for item in self._openai.serve(endpoint, body):
            self._outputs += 1
            yield item

    # --- requests -------------------------------------------------------------------------

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        messages = [m.model_dump() for m in request.messages]
        text = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False)
        room = self.spec.max_model_len - len(ids)
        if room < 1:
            raise PromptTooLong(
                f"the prompt has {len(ids)} tokens; model '{self.spec.name}' takes at most "
                f"{self.spec.max_model_len} (prompt + completion)"
            )
        return ids

    def _sampling(self, request: GenerationRequest, prompt_len: int, delta: bool) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        s = request.sampling
        structured = None
        c = request.constraint
        if c is not None:
            if c.kind == "choice":
                structured = StructuredOutputsParams(choice=list(c.options))
            elif c.kind == "regex":
                structured = StructuredOutputsParams(regex=c.pattern)
            else:
                structured = StructuredOutputsParams(json=c.json_schema)
        return SamplingParams(
            max_tokens=min(s.max_tokens, self.spec.max_model_len - prompt_len),
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed,
            stop=list(s.stop) or None,
            logprobs=s.logprobs,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY,
        )

    async def _submit(self, request: GenerationRequest, delta: bool) -> tuple[AsyncIterator[Any], int]:
        if self._llm is None:
            raise EngineError(f"engine for '{self.spec.name}' is not started")
        ids = await asyncio.get_running_loop().run_in_executor(self._prep, self._prompt_ids, request)
        params = self._sampling(request, len(ids), delta)
        rid = request.request_id or uuid.uuid4().hex
        return self._llm.generate({"prompt_token_ids": ids}, params, rid, priority=request.priority), len(ids)

    def _logprobs(self, output: Any) -> list[TokenLogprob] | None:
        if output.logprobs is None:
            return None
        out = []
        for token_id, position in zip(output.token_ids, output.logprobs):
            # vLLM has decoded every token it reports (`decoded_token`); decode only what it left out.
            top = {self._text(tid, lp): lp.logprob for tid, lp in position.items()}
            chosen = position.get(token_id)
            out.append(
                TokenLogprob(
                    token=self._text(token_id, chosen),
                    logprob=chosen.logprob if chosen is not None else float("-inf"),
                    top=top,
                )
            )
        return out

    def _text(self, token_id: int, logprob: Any) -> str:
        decoded = getattr(logprob, "decoded_token", None)
        return decoded if decoded is not None else str(self._tokenizer.decode([token_id]))

    async def generate(self, request: GenerationRequest) -> Result:
        stream, prompt_len = await self._submit(request, delta=False)
        final = None
        try:
            async for final in stream:  # noqa: B007 - the last output is the result
                self._outputs += 1
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"'{self.spec.name}' failed the request: {exc}") from exc
        if final is None:
            raise EngineError(f"'{self.spec.name}' returned no output")
        output = final.outputs[0]
        return Result(
            text=output.text,
            finish_reason=_finish(output.finish_reason),
            usage=Usage(
                prompt_tokens=prompt_len,
                completion_tokens=len(output.token_ids),
                cached_tokens=final.num_cached_tokens or 0,
            ),
            logprobs=self._logprobs(output),
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        stream, prompt_len = await self._submit(request, delta=True)
        completion = 0
        try:
            async for out in stream:
                self._outputs += 1
                piece = out.outputs[0]
                completion += len(piece.token_ids)
                if out.finished:
                    usage = Usage(
                        prompt_tokens=prompt_len, completion_tokens=completion, cached_tokens=out.num_cached_tokens or 0
                    )
                    yield StreamChunk(delta=piece.text, finish_reason=_finish(piece.finish_reason), usage=usage)
                elif piece.text:
                    yield StreamChunk(delta=piece.text)
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"'{self.spec.name}' failed the request: {exc}") from exc

    def running(self) -> int:
        # AsyncLLM aborts a request whose generate() is cancelled (a caller that left), so
        # this count is what the engine is really still working on.
        return 0 if self._llm is None else int(self._llm.output_processor.get_num_unfinished_requests())

    async def probe(self) -> None:
        """One piece of real work: a one-token generation, or one embedding from a model that
        only embeds (`runner: pooling`; it cannot generate)."""
        if "generate" in self._tasks or "embed" not in self._tasks:
            await self.generate(PROBE_REQUEST)
            return
        async for _ in self.openai(Endpoint.EMBEDDINGS, {"model": self.spec.name, "input": PROBE_REQUEST.messages[0].content}):
            pass  # the one whole response: the engine embedded the probe's text

    def progress(self) -> int:
        return self._outputs

    async def health(self) -> EngineHealth:
        if self._llm is None:
            return EngineHealth(ok=False, detail="not started")
        if self._llm.errored:
            return EngineHealth(ok=False, detail=f"engine dead: {self._llm.dead_error}")
        try:
            await self._llm.check_health()
        except Exception as exc:  # noqa: BLE001 - health reports faults, it does not raise them
            return EngineHealth(ok=False, detail=str(exc))
        return EngineHealth(ok=True)

    async def shutdown(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None
            self._openai = None
        self._prep.shutdown(wait=False)


def _finish(reason: str | None) -> Literal["stop", "length", "abort"]:
    return "length" if reason == "length" else "abort" if reason == "abort" else "stop"
