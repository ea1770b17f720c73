"""`ScriptedEngine`: an Engine whose answers a test writes. For unit tests of pattern logic only.

A script maps a request to its answer text, or to an exception to raise. Answers honour
`Choice` constraints (a scripted answer off the list is a test bug and raises). Every path it
covers is also covered once through `VLLMEngine`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from cluster.errors import EngineError
from cluster.spec import ModelSpec
from serving.engines.base import PROBE_REQUEST, EngineHealth
from serving.types import Endpoint, GenerationRequest, Message, Result, StreamChunk, TokenLogprob, Usage

Script = Callable[[GenerationRequest], "str | Exception"]


class ScriptedEngine:
    def __init__(
        self, spec: ModelSpec, script: Script, *, delay_s: float = 0.0, confidence: float = 1.0, start_error: str = ""
    ) -> None:
        self.spec = spec
        self.start_error = start_error  # the start fails with it (a model that cannot load)
        self.script = script
        self.delay_s = delay_s  # simulated engine time, to observe concurrency
        self.confidence = confidence  # probability reported for a constrained choice
        self.calls: list[GenerationRequest] = []
        self.started = False
        self.inside = 0  # requests in generate() now
        self.aborted = 0  # requests cancelled inside generate()
        self.answered = 0  # requests that left generate() with an answer or the script's error

    async def start(self) -> dict[str, float]:
        if self.start_error:
            raise EngineError(self.start_error)
        self.started = True
        return {}

    async def generate(self, request: GenerationRequest) -> Result:
        self.calls.append(request)
        self.inside += 1
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)  # stands in for engine compute, not a wait for readiness
        except asyncio.CancelledError:
            self.aborted += 1
            raise
        finally:
            self.inside -= 1
        self.answered += 1
        answer = self.script(request)
        if isinstance(answer, Exception):
            raise answer
        c = request.constraint
        logprobs = None
        if c is not None and c.kind == "choice":
            if answer not in c.options:
                raise EngineError(f"script answered {answer!r}, not one of {c.options}")
            if request.sampling.logprobs is not None:
                logprobs = [_choice_logprob(answer, c.options, self.confidence)]
        prompt = sum(len(m.content.split()) for m in request.messages)
        completion = len(answer.split())
        finish = "length" if completion > request.sampling.max_tokens else "stop"
        return Result(
            text=answer,
            finish_reason=finish,
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
            logprobs=logprobs,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        result = await self.generate(request)
        words = result.text.split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield StreamChunk(
                delta=word if i == 0 else " " + word,
                finish_reason=result.finish_reason if last else None,
                usage=result.usage if last else None,
            )

    def running(self) -> int:
        return self.inside

    async def openai(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[dict[str, Any] | str]:
        """A stand-in for vLLM's OpenAI layer, chat only, in its response shapes (the request
        tier's handling of them; vLLM's own layer is tested through the real engine)."""
        if endpoint is not Endpoint.CHAT:
            raise EngineError(f"the scripted engine serves only chat, not {endpoint.path}")
        messages = [Message(role=m["role"], content=m["content"]) for m in body["messages"]]
        result = await self.generate(GenerationRequest(messages=messages))
        usage = {"prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens,
                 "total_tokens": result.usage.total_tokens}  # fmt: skip
        head = {"id": "chatcmpl-s", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": result.text}
            choice = {"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}
            yield head | {"object": "chat.completion", "choices": [choice], "usage": usage}
            return
        chunk = head | {"object": "chat.completion.chunk"}
        yield "data: " + json.dumps(chunk | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}) + "\n\n"
        for i, word in enumerate(result.text.split(" ")):
            delta = {"content": word if i == 0 else " " + word}
            yield "data: " + json.dumps(chunk | {"choices": [{"index": 0, "delta": delta}]}) + "\n\n"
        yield "data: " + json.dumps(chunk | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + "\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            yield "data: " + json.dumps(chunk | {"choices": [], "usage": usage}, separators=(",", ":")) + "\n\n"
        yield "data: [DONE]\n\n"
    async def probe(self) -> None:
        await self.generate(PROBE_REQUEST)

    def progress(self) -> int:
        return self.answered

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=self.started, detail="" if self.started else "not started")

    async def shutdown(self) -> None:
        self.started = False


def _choice_logprob(answer: str, options: list[str], confidence: float) -> TokenLogprob:
    import math

    others = [o for o in options if o != answer]
    rest = (1.0 - confidence) / len(others) if others else 0.0
    top = {answer: math.log(confidence)}
    top.update({o: math.log(rest) if rest > 0 else float("-inf") for o in others})
    return TokenLogprob(token=answer, logprob=top[answer], top=top)

