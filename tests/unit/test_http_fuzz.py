"""Property-based tests against the served OpenAPI document (schemathesis): for generated
requests, valid and invalid, the app never answers 5xx, and every response matches the document
(status listed, body schema, content type). In-process over scripted engines; bounded examples."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrator.api.app import build_app
from orchestrator.service.config import ServerSpec
from tests.unit.fixtures import scripted_chorus

PATTERNS = {"single": {"kind": "single", "role": "generalist"}}
KEY = "fuzz-key"


def _app():
    chorus, _ = scripted_chorus({"generalist": lambda req: "fine"}, PATTERNS)
    return build_app(chorus, ServerSpec(api_keys=[KEY], max_request_bytes=64 * 1024, protect_docs=False))


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_never_fails_and_keeps_to_its_document(case):
    case.headers = {**(case.headers or {}), "authorization": f"Bearer {KEY}"}
    response = case.call()
    assert response.status_code < 500, response.text
    case.validate_response(response, checks=CHECKS)
