"""The OpenAPI says what the server does to text: NUL is refused everywhere, and stripped
fields say so, with a pattern where a blank one is refused."""

import re
from collections.abc import Iterator
from typing import Any

import httpx
import schemathesis
from schemathesis.specs.openapi.checks import content_type_conformance as content_type
from schemathesis.specs.openapi.checks import response_schema_conformance as response_schema
from schemathesis.specs.openapi.checks import status_code_conformance as status

from tests.world import World
from tidings.schemas import NO_NUL, NO_NUL_PARAMETER, NOT_BLANK, STRIPPED


def _reachable(schema: Any, components: dict[str, Any], seen: set[str]) -> Iterator[Any]:
    """Every schema reachable from `schema`, following each $ref once."""
    if isinstance(schema, list):
        for item in schema:
            yield from _reachable(item, components, seen)
        return
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in seen:
            seen.add(name)
            yield from _reachable(components[name], components, seen)
        return
    yield schema
    for key in ("anyOf", "oneOf", "allOf", "items", "additionalProperties"):
        yield from _reachable(schema.get(key), components, seen)
    for prop in schema.get("properties", {}).values():
        yield from _reachable(prop, components, seen)


async def test_every_text_a_request_sends_says_nul_is_refused(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    components = spec["components"]["schemas"]
    bodies, parameters = [], []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            schemas = _reachable([m.get("schema") for m in content.values()], components, set())
            bodies += [(method, path, s) for s in schemas if "properties" in s]
            for p in operation.get("parameters", []):
                if p["in"] in ("path", "query") and p["schema"].get("type") == "string":
                    parameters.append((method, path, p))
    assert len(bodies) > 20, "the walk reaches the objects of request bodies"
    assert [b for b in bodies if NO_NUL not in b[2].get("description", "")] == []
    assert len(parameters) > 20, "the walk reaches the path and query parameters"
    assert [p for p in parameters if NO_NUL_PARAMETER not in p[2].get("description", "")] == []


async def test_stripped_text_says_so(client: httpx.AsyncClient) -> None:
    components = (await client.get("/openapi.json")).json()["components"]["schemas"]
    [name, _] = components["WorkspaceUpdate"]["properties"]["name"]["anyOf"]
    assert (name["pattern"], name["description"]) == (NOT_BLANK, STRIPPED)
    email = components["InvitationCreate"]["properties"]["email"]
    assert (email["pattern"], email["description"]) == (NOT_BLANK, STRIPPED)
    # Stripped, but may be empty (then the workspace's timezone is used).
    [zone, _] = components["OwnSettings"]["properties"]["timezone"]["anyOf"]
    assert ("pattern" in zone, zone["description"]) == (False, STRIPPED)
    password = components["PasswordChange"]["properties"]["newPassword"]
    assert ("pattern" in password, STRIPPED in password.get("description", "")) == (False, False)
    pattern = re.compile(NOT_BLANK)
    assert [bool(pattern.search(v)) for v in (" a ", "a", " \t", "", "a\x00")] == [
        True,
        True,
        False,
        False,
        False,
    ]


async def test_the_server_refuses_what_the_patterns_refuse(world: World) -> None:
    admin = await world.person("admin")
    for name, type_ in [("  ", "string_too_short"), ("Acme\x00", "string_nul_character")]:
        r = await admin.patch("/workspace", json={"name": name})
        assert r.status_code == 422, r.text
        [error] = r.json()["error"]
        assert (error["path"], error["type"]) == (["name"], type_)
    r = await world.api().get("/scheduled-posts", params={"channelId": "ch\x00"})
    assert r.status_code == 422, r.text
    [error] = r.json()["error"]
    assert (error["path"], error["type"]) == (["query", "channelId"], "string_nul_character")
    assert (await admin.get("/workspace")).json()["name"] == "Acme"


async def test_an_unhealthy_health_answers_as_documented(client: httpx.AsyncClient) -> None:
    # No worker runs beside this app: /health is 503, with the body its schema describes.
    spec = (await client.get("/openapi.json")).json()
    r = await client.get("/health")
    assert r.status_code == 503, r.text
    assert r.json()["status"] == "unavailable"
    assert r.json()["problems"][0].startswith("no worker has a fresh heartbeat")
    operation = schemathesis.openapi.from_dict(spec)["/health"]["GET"]
    # Every check of the fuzzer but not_a_server_error: this 503 is the point.
    operation.Case().validate_response(r, checks=[status, content_type, response_schema])
