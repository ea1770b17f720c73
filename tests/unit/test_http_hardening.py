"""The HTTP app's hardening, in-process over scripted engines: limits while reading, odd inputs,
keys, docs, CORS, request ids, the OpenAPI document, timeouts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from cluster.errors import ConfigError
from orchestrator.api.app import build_app
from orchestrator.api.guard import key_matches, resolve_api_keys
from orchestrator.service.config import ServerSpec
from tests.unit.fixtures import scripted_chorus

PATTERNS = {"single": {"kind": "single", "role": "generalist"}}
USER = [{"role": "user", "content": "hi"}]
BODY = {"model": "single", "messages": USER}


def make(server: ServerSpec | None = None, script=lambda req: "hello there", **kw):
    chorus, engines = scripted_chorus({"generalist": script}, PATTERNS, **kw)
    return chorus, engines, httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(chorus, server), raise_app_exceptions=False), base_url="http://chorus")


async def test_a_chunked_upload_is_cut_at_the_limit_with_413():
    _, engines, http = make(ServerSpec(max_request_bytes=4096))
    sent = 0

    async def endless() -> AsyncIterator[bytes]:  # no Content-Length: httpx sends it chunked
        nonlocal sent
        for _ in range(10_000):
            sent += 1024
            yield b"x" * 1024

    r = await http.post("/v1/chat/completions", content=endless(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
    assert sent <= 8 * 1024  # reading stopped just past the limit, not at the end of the upload
    assert not engines["generalist"].calls


async def test_a_declared_length_over_the_limit_is_refused_before_reading():
    _, _, http = make(ServerSpec(max_request_bytes=2048))
    r = await http.post("/v1/chat/completions", json={**BODY, "messages": [{"role": "user", "content": "x" * 4096}]})
    assert r.status_code == 413


@pytest.mark.parametrize("length", ["-1", "abc", "1e3"])
async def test_a_malformed_content_length_is_400_in_openai_shape(length):
    _, _, http = make()
    r = await http.post("/v1/chat/completions", content=b"{}", headers={"content-length": length, "content-type": "application/json"})
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({**BODY, "seed": 2**70}, "seed"),
        ({**BODY, "seed": -1}, "seed"),
        ({"model": "single", "messages": [{"role": "user", "content": "\ud800"}]}, "surrogate"),
        ({"model": "\udfff", "messages": USER}, "surrogate"),
        ({**BODY, "stop": ["ok", "\ud83d"]}, "surrogate"),
    ],
)
async def test_out_of_range_seeds_and_lone_surrogates_are_400(body, words):
    _, engines, http = make()
    raw = json.dumps(body).encode()  # json.dumps writes the lone surrogate as an escape, as a client would
    r = await http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]
    assert not engines["generalist"].calls


async def test_bearer_scheme_in_any_case_and_keys_from_env_and_file(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\nfrom-file\n\n")
    server = ServerSpec(api_keys=["inline"], api_keys_env="CHORUS_TEST_KEYS", api_keys_file=str(keys_file))
    keys = resolve_api_keys(server, {"CHORUS_TEST_KEYS": "from-env, second"})
    assert keys == ["inline", "from-env", "second", "from-file"]
    chorus, _ = scripted_chorus({"generalist": lambda req: "ok"}, PATTERNS)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(chorus, server, api_keys=keys)), base_url="http://c")
    for auth in ("bearer from-env", "Bearer from-file", "BEARER inline", "Bearer  second"):
        r = await http.post("/v1/chat/completions", json=BODY, headers={"authorization": auth})
        assert r.status_code == 200, auth
    for auth in ("Bearer nope", "Basic inline", "inline", ""):
        r = await http.post("/v1/chat/completions", json=BODY, headers={"authorization": auth})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_an_empty_key_source_is_an_error_not_an_open_api(tmp_path):
    (tmp_path / "keys").write_text("\n")
    with pytest.raises(ConfigError, match="no API key"):
        resolve_api_keys(ServerSpec(api_keys_file=str(tmp_path / "keys")), {})
    with pytest.raises(ConfigError, match="not set"):
        resolve_api_keys(ServerSpec(api_keys_env="CHORUS_MISSING"), {})


def test_keys_are_compared_against_every_key():
    keys = [b"a" * 16, b"b" * 16]
    assert key_matches("Bearer " + "b" * 16, keys) and not key_matches("Bearer " + "c" * 16, keys)
    assert not key_matches(None, keys) and not key_matches("Bearer", keys)


@pytest.mark.parametrize(("protect", "docs_status"), [(True, 401), (False, 200)])
async def test_health_is_open_details_and_docs_need_the_key(protect, docs_status):
    _, _, http = make(ServerSpec(api_keys=["k"], protect_docs=protect))
    assert (await http.get("/health")).status_code == 200
    assert (await http.get("/health/replicas")).status_code == 401
    assert (await http.get("/health/replicas", headers={"authorization": "Bearer k"})).status_code == 200
    for path in ("/docs", "/openapi.json"):
        assert (await http.get(path)).status_code == docs_status
        assert (await http.get(path, headers={"authorization": "Bearer k"})).status_code == 200


async def test_405_carries_allow():
    _, _, http = make()
    r = await http.get("/v1/chat/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == 405


async def test_cors_is_off_by_default_and_configurable():
    _, _, http = make()
    pre = {"origin": "https://app.example", "access-control-request-method": "POST"}
    r = await http.options("/v1/chat/completions", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    _, _, http = make(ServerSpec(cors_origins=["https://app.example"], api_keys=["k"]))
    r = await http.options("/v1/chat/completions", headers=pre)  # a preflight needs no key
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"


async def test_request_id_is_accepted_or_generated_returned_and_reaches_trace_and_engine():
    _, engines, http = make()
    r = await http.post("/v1/chat/completions", json=BODY, headers={"x-request-id": "client-42"})
    assert r.headers["x-request-id"] == "client-42"
    assert r.json()["chorus"]["trace"]["request_id"] == "client-42"
    assert engines["generalist"].calls[-1].request_id.startswith("client-42-0-")
    r = await http.post("/v1/chat/completions", json=BODY, headers={"x-request-id": "bad id\twith spaces"})
    generated = r.headers["x-request-id"]
    assert generated != "bad id\twith spaces" and len(generated) == 32
    assert r.json()["chorus"]["trace"]["request_id"] == generated


async def test_a_request_past_the_timeout_is_504():
    _, _, http = make(ServerSpec(request_timeout_s=0.05), delay_s=1.0)
    r = await http.post("/v1/chat/completions", json=BODY)
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"


async def test_openapi_lists_the_statuses_really_sent():
    _, _, http = make()
    doc = (await http.get("/openapi.json")).json()
    responses = doc["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "429", "503", "504"} <= set(responses)
    assert "422" not in responses
    assert "ErrorBody" in doc["components"]["schemas"]


async def test_a_programming_error_is_500_without_internals():
    def boom(req):
        raise AttributeError("object at 0x7f00 in /srv/chorus/secret.py")

    _, _, http = make(script=boom)
    r = await http.post("/v1/chat/completions", json=BODY)
    assert r.status_code == 500 and "0x7f00" not in r.text and "secret" not in r.text


async def test_a_client_that_leaves_does_not_leak_slots():
    chorus, engines, http = make(delay_s=0.2)
    task = asyncio.create_task(http.post("/v1/chat/completions", json=BODY))
    while not engines["generalist"].calls:  # noqa: ASYNC110 - yields to the task until its request reaches the engine
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    replica = chorus.fleet.replicas["generalist"][0]
    assert (await replica.load()).running == 0


async def test_a_body_that_never_arrives_is_503_with_retry_after():
    """What a request re-sent by Serve's proxy without its body would meet."""
    chorus, _ = scripted_chorus({"generalist": lambda req: "x"}, PATTERNS)
    app = build_app(chorus, ServerSpec(body_timeout_s=0.1))
    sent: list[dict] = []
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [(b"content-type", b"application/json")],
             "query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": ""}

    async def receive():
        await asyncio.Event().wait()  # the body never comes

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    assert sent[0]["status"] == 503 and (b"retry-after", b"1") in sent[0]["headers"]
