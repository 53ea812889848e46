"""The OpenAPI says what the server does to text: NUL is refused everywhere, and stripped
fields say so; a generated request that fits the schema is not refused for its text."""

import re
from collections.abc import Iterator
from typing import Any

import httpx

from tests.world import World
from tidings.schemas import NO_NUL, NOT_BLANK, STRIPPED


def _free_text(schema: Any, components: dict[str, Any], seen: set[str]) -> Iterator[Any]:
    """Every free-text string schema reachable from `schema`, following $refs once."""
    if isinstance(schema, list):
        for item in schema:
            yield from _free_text(item, components, seen)
        return
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in seen:
            seen.add(name)
            yield from _free_text(components[name], components, seen)
        return
    if schema.get("type") == "string" and not {"enum", "const", "format"} & schema.keys():
        yield schema
    for key in ("anyOf", "oneOf", "allOf", "items", "additionalProperties"):
        yield from _free_text(schema.get(key), components, seen)
    for prop in schema.get("properties", {}).values():
        yield from _free_text(prop, components, seen)


async def test_every_text_a_request_sends_says_nul_is_refused(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    components = spec["components"]["schemas"]
    texts = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            bodies = [media.get("schema") for media in content.values()]
            parameters = [
                p["schema"] for p in operation.get("parameters", []) if p["in"] in ("path", "query")
            ]
            found = _free_text([*bodies, *parameters], components, set())
            texts += [(method, path, text) for text in found]
    assert len(texts) > 50, "the walk reaches the text of bodies and parameters"
    assert [t for t in texts if "pattern" not in t[2]] == []
    assert [t for t in texts if re.search(t[2]["pattern"], "a\x00b")] == []


async def test_stripped_text_says_so(client: httpx.AsyncClient) -> None:
    components = (await client.get("/openapi.json")).json()["components"]["schemas"]
    [name, _] = components["WorkspaceUpdate"]["properties"]["name"]["anyOf"]
    assert (name["pattern"], name["description"]) == (NOT_BLANK, STRIPPED)
    email = components["MemberAdd"]["properties"]["email"]
    assert (email["pattern"], email["description"]) == (NOT_BLANK, STRIPPED)
    # Stripped, but may be empty (then the workspace's timezone is used).
    [zone, _] = components["OwnSettings"]["properties"]["timezone"]["anyOf"]
    assert (zone["pattern"], zone["description"]) == (NO_NUL, STRIPPED)
    password = components["MemberAdd"]["properties"]["password"]
    assert (password["pattern"], STRIPPED in password.get("description", "")) == (NO_NUL, False)
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
