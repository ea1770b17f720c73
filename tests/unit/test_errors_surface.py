"""A bug inside an engine fails the request; an engine fault only removes one member.

Through the in-process HTTP app over a `Chorus` with scripted engines, with a three-member vote:
an `AttributeError` raised by one member's engine must come back as HTTP 500 in OpenAI's error
shape, logged with its traceback on the server and carrying nothing internal to the client — not
as a 200 vote counted from the two members that answered. An `EngineError` (the engine's own
fault) is what a member may fail with: the vote still answers 200 from the others.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from cluster.errors import EngineError
from orchestrator.api.app import build_app
from orchestrator.api.errors import INTERNAL
from serving.types import GenerationRequest
from tests.fakes.scripted_engine import ScriptedEngine
from tests.unit.fixtures import scripted_chorus

ROLES = ["generalist", "reasoner", "coder"]
PATTERNS = {"vote": {"kind": "vote", "members": ROLES, "extract": "numeric"}}
# Text a client must never see: the bug's message names an internal attribute and a path.
SECRET = "'NoneType' object has no attribute 'kv_block_table' (/srv/chorus/engine_internals.py)"


def bug(_: GenerationRequest) -> Exception:
    return AttributeError(SECRET)


def fault(_: GenerationRequest) -> Exception:
    return EngineError("engine reasoner: out of KV cache blocks")


def answer(text: str) -> Any:
    return lambda _: text


def serve(reasoner: Any) -> tuple[httpx.AsyncClient, dict[str, ScriptedEngine]]:
    """The vote behind the HTTP app; `reasoner` is the middle member's script."""
    chorus, engines = scripted_chorus(
        {"generalist": answer("#### 42"), "reasoner": reasoner, "coder": answer("so #### 42")}, PATTERNS
    )
    # raise_app_exceptions=False: see the response a client gets, as under uvicorn, rather than
    # the exception Starlette re-raises to the server after answering.
    transport = httpx.ASGITransport(app=build_app(chorus), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://chorus"), engines


def ask(stream: bool = False) -> dict[str, Any]:
    return {"model": "vote", "messages": [{"role": "user", "content": "6*7?"}], "stream": stream}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_an_attribute_error_in_an_engine_is_a_500_not_a_smaller_vote(
    stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    http, engines = serve(bug)
    with caplog.at_level(logging.ERROR, logger="chorus.http"):
        r = await http.post("/v1/chat/completions", json=ask(stream))

    assert all(e.calls for e in engines.values())  # every member was asked; the others answered
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"error": {"message": INTERNAL, "type": "server_error", "param": None, "code": 500}}
    for leak in ("Traceback", "AttributeError", "kv_block_table", "/srv/chorus", ".py", "reasoner"):
        assert leak not in r.text
    # The server keeps what the client does not get: the bug with its traceback.
    logged = [rec for rec in caplog.records if rec.exc_info and isinstance(rec.exc_info[1], AttributeError)]
    assert logged and logged[0].exc_info is not None and logged[0].exc_info[2] is not None
    assert SECRET in str(logged[0].exc_info[1])


async def test_an_engine_error_leaves_a_200_vote_from_the_other_members() -> None:
    http, engines = serve(fault)
    r = await http.post("/v1/chat/completions", json=ask())

    assert r.status_code == 200
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "#### 42"  # the first member of the winning group
    steps = body["chorus"]["trace"]["steps"]
    failed = [s for s in steps if s["error"]]
    assert [s["role"] for s in failed] == ["reasoner"] and "out of KV cache blocks" in failed[0]["error"]
    assert sorted(s["role"] for s in steps if not s["error"]) == ["coder", "generalist"]
    assert all(e.calls for e in engines.values())
