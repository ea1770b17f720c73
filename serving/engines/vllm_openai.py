"""vLLM's own OpenAI layer over the `AsyncLLM` a `VLLMEngine` owns: the vLLM boundary for the
OpenAI API, the way Ray Serve LLM drives it (`ray.llm._internal.serve.engines.vllm`).

`init_app_state` (the wiring vLLM's own server runs) builds the serving classes
(`OpenAIServingChat`, `OpenAIServingCompletion`, pooling's `ServingEmbedding`,
`ServingTokenization`) over the engine; a request's raw OpenAI body is validated by vLLM's own
protocol models and served by them, so every field vLLM supports works, tools and
structured outputs included, and the chat template is rendered off the event loop by vLLM's
renderer. What comes back is vLLM's own response JSON, or its SSE lines for a stream.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import TypeAdapter, ValidationError

from cluster.errors import EngineError, EngineRejected
from cluster.spec import ModelSpec
from cluster.vllm_args import is_frontend
from serving.types import Endpoint


def frontend_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """The OpenAI layer's share of a model's `engine_kwargs` (chat template, tool parser…)."""
    return {k: v for k, v in spec.engine_kwargs.items() if is_frontend(k)}


class OpenAILayer:
    """vLLM's serving objects for one engine; `serve` answers one OpenAI request."""

    def __init__(self, spec: ModelSpec, state: Any) -> None:
        self.spec = spec
        self._state = state

    @classmethod
    async def build(cls, spec: ModelSpec, llm: Any, engine_args: Any) -> OpenAILayer:
        from starlette.datastructures import State
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.entrypoints.launchers.cli_args import FrontendArgs

        front = FrontendArgs(**frontend_kwargs(spec))
        # vLLM's parser yields one flat namespace of frontend and engine arguments.
        args = argparse.Namespace(**(vars(front) | vars(engine_args)))
        args.served_model_name = [spec.name]
        args.structured_outputs_config = llm.vllm_config.structured_outputs_config
        state = State()
        await init_app_state(llm, state, args, supported_tasks=await llm.get_supported_tasks())
        # The renderer's parser adjusts a request with tools (its tool-call grammar) before it
        # reaches the engine.
        renderer = getattr(state, "online_renderer", None)
        if renderer is not None and llm.vllm_config.structured_outputs_config.disable_any_whitespace:
            renderer.parser = whitespace_bounded(renderer.parser)
        return cls(spec, state)

    def _handler(self, attr: str, endpoint: Endpoint) -> Any:
        handler = getattr(self._state, attr, None)
        if handler is None:
            raise EngineRejected(f"model '{self.spec.name}' does not serve {endpoint.path}", status=400)
        return handler

    async def serve(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[dict[str, Any] | str]:
        """One whole response (a JSON dict), or a stream's SSE lines (`data: …\\n\\n` strings)."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest
        from vllm.entrypoints.pooling.embed.protocol import EmbeddingRequest
        from vllm.entrypoints.serve.tokenize.protocol import DetokenizeRequest, TokenizeRequest
        from vllm.exceptions import VLLMClientError

        try:
            if endpoint is Endpoint.CHAT:
                request: Any = ChatCompletionRequest.model_validate(body)
                handler = self._handler("openai_serving_chat", endpoint)
                response = await handler.create_chat_completion(request, None)
            elif endpoint is Endpoint.COMPLETIONS:
                request = CompletionRequest.model_validate(body)
                handler = self._handler("openai_serving_completion", endpoint)
                response = await handler.create_completion(request, None)
            elif endpoint is Endpoint.EMBEDDINGS:
                request = TypeAdapter(EmbeddingRequest).validate_python(body)
                handler = self._handler("serving_embedding", endpoint)
                response = await handler(request, None)
            elif endpoint is Endpoint.TOKENIZE:
                request = TypeAdapter(TokenizeRequest).validate_python(body)
                handler = self._handler("serving_tokenization", endpoint)
                response = await handler.create_tokenize(request, None)
            else:
                request = DetokenizeRequest.model_validate(body)
                handler = self._handler("serving_tokenization", endpoint)
                response = await handler.create_detokenize(request, None)
        except ValidationError as exc:
            raise EngineRejected(_validation_message(exc), status=400, param=_validation_param(exc)) from None
        except (ValueError, VLLMClientError) as exc:  # vLLM's own request checks
            raise _rejected(exc) from None
        if isinstance(response, AsyncIterator):
            started = False
            try:
                async for line in response:
                    started = True
                    yield line
            except (ValueError, VLLMClientError) as exc:
                if started:
                    raise
                # vLLM checks a stream's prompt (its length…) when the stream is first read.
                raise _rejected(exc) from None
            return
        yield _as_json(self.spec.name, response)


# Fewest consecutive whitespace characters xgrammar lets a structural tag's JSON bound itself to.
TOOL_JSON_MAX_WHITESPACE = 1


def whitespace_bounded(parser_cls: Any) -> Any:
    """The chat parser class with its tool-call grammars' JSON whitespace bounded.

    A tool parser with a structural tag (hermes, qwen3…) constrains a call's markup, name and
    arguments through xgrammar's structural tags, which vLLM compiles without the engine's
    `disable_any_whitespace` (it reaches only plain JSON-schema outputs): between any two JSON
    tokens of the arguments the grammar allows unbounded whitespace, and a weak model (greedy
    decoding of tiny-qwen2 picks a newline and indentation after `{` every time) writes it until
    `max_tokens`. The call is then cut off, the parser cannot read it, and `tool_calls` comes
    back empty. The engine's setting applies here as well: at most one whitespace character
    in a row (xgrammar's least), so every tool call it constrains terminates.
    """
    tool_cls = getattr(parser_cls, "tool_parser_cls", None)
    if tool_cls is None or getattr(tool_cls, "structural_tag_model", None) is None:
        return parser_cls

    class Bounded(tool_cls):  # type: ignore[misc,valid-type]
        def get_structural_tag(self, request: Any, *, reasoning: bool = False, **kwargs: Any) -> Any:
            tag = super().get_structural_tag(request, reasoning=reasoning, **kwargs)
            if tag is not None:
                _bound_whitespace(tag.format)
            return tag

    Bounded.__name__ = Bounded.__qualname__ = tool_cls.__name__
    # A subclass of this layer's own parser class (vLLM composes one per renderer).
    return type(parser_cls.__name__, (parser_cls,), {"tool_parser_cls": Bounded})


def _bound_whitespace(node: Any) -> None:
    """Bound whitespace in every JSON part of an xgrammar structural-tag format, in place."""
    from pydantic import BaseModel
    from xgrammar.structural_tag import JSONSchemaFormat

    if isinstance(node, JSONSchemaFormat) and node.style == "json" and node.max_whitespace_cnt is None:
        node.max_whitespace_cnt = TOOL_JSON_MAX_WHITESPACE
    if not isinstance(node, BaseModel):
        return
    for name in type(node).model_fields:
        value = getattr(node, name)
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, BaseModel):
                _bound_whitespace(child)


def _as_json(model: str, response: Any) -> dict[str, Any]:
    """vLLM's response object (or the starlette Response pooling returns) as a dict; its error
    responses as chorus errors (4xx: the caller's; 5xx: an engine fault)."""
    if hasattr(response, "status_code") and hasattr(response, "body"):
        data: dict[str, Any] = json.loads(response.body)
        status = int(response.status_code)
    else:
        data = response.model_dump(mode="json", exclude_none=False)
        status = int(data["error"]["code"]) if "error" in data and isinstance(data["error"], dict) else 200
    if status >= 400 or ("error" in data and isinstance(data.get("error"), dict)):
        err = data["error"]
        code = int(err.get("code") or status)
        if code >= 500:
            raise EngineError(f"'{model}' failed the request: {err.get('message', '')}")
        raise EngineRejected(str(err.get("message", "")), status=code, param=err.get("param"))
    return data


def _rejected(exc: Exception) -> EngineRejected:
    """vLLM's refusal of a request (VLLMClientError, or a ValueError from its checks) as chorus's."""
    from vllm.exceptions import VLLMNotFoundError

    status = 404 if isinstance(exc, VLLMNotFoundError) else 400
    param = getattr(exc, "parameter", None)
    return EngineRejected(str(exc), status=status, param=param if isinstance(param, str) else None)


def _validation_param(exc: ValidationError) -> str | None:
    loc = [str(p) for p in exc.errors()[0].get("loc", ())]
    return ".".join(loc) or None


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = _validation_param(exc)
    msg = str(err.get("msg", "invalid request")).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg
