"""Output lines in the OpenAI Batch output shape, plus the input position they answer.

    {"id": "batch_req_…", "custom_id": "…", "line": 17,
     "response": {"status_code": 200, "request_id": "chatcmpl-…", "body": {chat.completion + chorus trace}},
     "error": null}

A row the API refused (400, 404, 413, 429, 500…) has `response.status_code` and the OpenAI error
body, as over HTTP; a line that never became a request (not JSON, no custom_id) has
`response: null` and `error: {"code", "message"}`, as OpenAI reports non-HTTP failures. `line`
(1-based line of a JSONL file, row of a Parquet file) is chorus's addition: resuming a job keys
done rows on it, and it lets any reader join outputs back to inputs.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel

from orchestrator.api.errors import error_json
from orchestrator.api.protocol import TraceMode, completion_json, with_trace
from orchestrator.core.schema import Reply
from orchestrator.jobs.formats import RowProblem
from orchestrator.jobs.link import HostedAnswer


class RowOutcome(BaseModel):
    """One output line and what it adds to the job's tally."""

    line: int
    text: str  # the JSON line, without its newline
    ok: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    gpu_seconds: float = 0.0


def _request_id() -> str:
    return f"batch_req_{uuid.uuid4().hex}"


def answered(line: int, custom_id: str, reply: Reply) -> dict[str, Any]:
    return {
        "id": _request_id(),
        "custom_id": custom_id,
        "line": line,
        "response": {"status_code": 200, "request_id": reply.id, "body": completion_json(reply)},
        "error": None,
    }


def answered_hosted(line: int, custom_id: str, answer: HostedAnswer, mode: TraceMode) -> dict[str, Any]:
    """A hosted model's line: vLLM's response body as it wrote it, with chorus's trace added."""
    body = with_trace(answer.body, answer.trace, mode)
    return {
        "id": _request_id(),
        "custom_id": custom_id,
        "line": line,
        "response": {"status_code": 200, "request_id": body.get("id"), "body": body},
        "error": None,
    }


def refused(line: int, problem: RowProblem) -> dict[str, Any]:
    """The line for a row that failed: an HTTP-like response, or a non-HTTP error."""
    if problem.status is None:
        return {
            "id": _request_id(),
            "custom_id": problem.custom_id,
            "line": line,
            "response": None,
            "error": {"code": problem.code, "message": problem.message},
        }
    return {
        "id": _request_id(),
        "custom_id": problem.custom_id,
        "line": line,
        "response": {
            "status_code": problem.status,
            "request_id": None,
            "body": error_json(problem.message, problem.code, problem.status),
        },
        "error": None,
    }


def tally_of(record: dict[str, Any]) -> tuple[bool, int, int, float]:
    """(ok, prompt tokens, completion tokens, GPU-seconds) of an output line read back."""
    response = record.get("response") or {}
    if response.get("status_code") != 200:
        return False, 0, 0, 0.0
    body = response.get("body") or {}
    usage = body.get("usage") or {}
    totals = ((body.get("chorus") or {}).get("trace") or {}).get("totals") or {}
    return True, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), float(totals.get("gpu_seconds", 0.0))
