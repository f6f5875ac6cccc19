"""Schemathesis against the hero API (examples/heroes_api/app.py) on SQLite, PostgreSQL and MySQL.

Schemathesis reads the app's OpenAPI schema and generates requests from it, both ones that fit
the schema (positive) and ones that break it (negative). Each request is sent to the app
in-process and must be answered without a 5xx, with a response that conforms to the schema
(status code aside: the app documents its 200s and 422s, not its 404s and 409s).

Hypothesis generates the cases up front and the test sends them through ``client``
(herorepo_client with the X-Tenant header, which the schema does not declare), on the test's event
loop, so the app's writes are rolled back at the end of the test. (Schemathesis's own ASGI client
runs the app on an event loop of its own, which cannot use the test database's connections.)
Generation is derandomized, so every run sends the same requests, and bounded by MAX_EXAMPLES.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from schemathesis.errors import FailureGroup

from examples.heroes_api.app import app

pytestmark = pytest.mark.asyncio

MAX_EXAMPLES = 100  # per generation mode: about two seconds per backend
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def generated_cases(mode: GenerationMode) -> list[Case]:
    """The requests Schemathesis makes of the app's schema: the same ones on every run."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    cases: list[Case] = []

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(schema.as_strategy(generation_mode=mode))
    def collect(case: Case) -> None:
        cases.append(case)

    collect()
    return cases


async def send(client: httpx.AsyncClient, case: Case) -> httpx.Response:
    """Send ``case`` as Schemathesis's requests transport would, through ``client`` (whose
    headers, the tenant's, go with the case's)."""
    request = case.as_transport_kwargs(base_url=str(client.base_url))
    assert not request.get("cookies"), "the app reads no cookies"
    body: dict[str, Any] = {}
    if "json" in request:
        body["json"] = request["json"]
    elif "data" in request:
        body["content"] = request["data"]
    return await client.request(
        request["method"],
        request["url"],
        params=request.get("params"),
        headers=dict(request["headers"]),
        **body,
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
async def test_generated_requests_get_no_server_error_and_conform(
    client: httpx.AsyncClient, mode: GenerationMode
) -> None:
    failures: list[str] = []
    for case in generated_cases(mode):
        try:
            response = await send(client, case)
        except Exception as error:  # the app raised: a client would get a 500
            curl = case.as_curl_command(base_url=str(client.base_url))
            failures.append(f"{curl}\nraised {error!r}\n")
            continue
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as failed:  # its message shows the response and a curl command
            failures.append(str(failed))
    assert not failures, f"{len(failures)} requests failed; the first ones:\n" + "".join(
        failures[:5]
    )
