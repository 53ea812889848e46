"""Security headers: every response refuses framing and sniffing and keeps its address to
this site; pages carry a Content-Security-Policy with a fresh nonce that every script of the
page holds (and no inline handler or style attribute the policy would block); the API docs
have a policy of their own that still lets Swagger UI and ReDoc run."""

import re

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from tests.world import World
from tidings.headers import OTHER_POLICY

COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
NONCE = re.compile(r"script-src 'self' 'nonce-([A-Za-z0-9_-]{24})'")
INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[^>]*\sstyle\s*=", re.IGNORECASE)


def assert_common(response: httpx.Response) -> None:
    assert {name: response.headers.get(name) for name in COMMON} == COMMON


def page_nonce(response: httpx.Response) -> str:
    """The nonce of a page's policy, after checking the policy and the page's markup."""
    assert_common(response)
    policy = response.headers["content-security-policy"]
    found = NONCE.search(policy)
    assert found, policy
    nonce = found.group(1)
    assert f"style-src 'self' 'nonce-{nonce}'" in policy
    for directive in ("frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"):
        assert directive in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    scripts = re.findall(r"<script\b[^>]*>", response.text)
    assert scripts, "every page loads htmx"
    assert all(f'nonce="{nonce}"' in tag for tag in scripts), scripts
    assert not INLINE_HANDLER.search(response.text)
    assert not STYLE_ATTRIBUTE.search(response.text)
    return nonce


async def test_a_page_has_the_headers_and_a_fresh_nonce_each_time(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/")  # nobody yet: the first-run page
    second = await client.get("/")
    assert first.status_code == second.status_code == 200
    assert page_nonce(first) != page_nonce(second)


async def test_an_api_answer_has_the_headers_and_may_load_nothing(world: World) -> None:
    for response in (
        await world.api().get("/scheduled-posts"),
        await world.anonymous().get("/scheduled-posts"),
        await world.anonymous().get("/static/app.css"),
    ):
        assert response.status_code in (200, 401), response.text
        assert_common(response)
        assert response.headers["content-security-policy"] == OTHER_POLICY
    refused = await world.anonymous().get("/scheduled-posts")
    assert refused.status_code == 401
    assert set(refused.json()) == {"message"}


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_the_api_docs_have_their_own_policy_with_a_nonce(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert_common(response)
    policy = response.headers["content-security-policy"]
    found = re.search(r"script-src 'nonce-([A-Za-z0-9_-]{24})' https://cdn.jsdelivr.net", policy)
    assert found, policy
    assert "frame-ancestors 'none'" in policy
    assert "connect-src 'self'" in policy  # Swagger UI fetches /openapi.json and tries routes
    inline = re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", response.text)
    assert all(f'nonce="{found.group(1)}"' in tag for tag in inline), inline
    if path == "/docs":
        assert "swagger-ui-bundle.js" in response.text
        assert len(inline) == 1
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200
    assert "/docs" not in spec.json()["paths"]


def _page_paths(app: FastAPI, post_id: str, channel_id: str) -> list[str]:
    # A link's token that matches nothing: its page is the error page, with the same rules.
    ids = {"post_id": post_id, "channel_id": channel_id, "token": "no-such-token"}
    paths = []
    for route in iter_route_contexts(app.routes):
        methods = getattr(route, "methods", None) or set()
        if "GET" in methods and (route.path == "/" or route.path.startswith("/app")):
            paths.append(re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], route.path))
    return paths


async def test_every_page_has_a_nonce_that_all_its_scripts_carry(
    app: FastAPI, world: World
) -> None:
    owner = await world.person("owner")
    created = await world.api().post("/scheduled-posts", json=world.post_body())
    assert created.status_code == 201, created.text
    paths = _page_paths(app, created.json()["id"], world.channel_id)
    # The list must cover the app, not silently shrink.
    assert {"/app/calendar", "/app/compose", "/app/settings", "/app/queue"} <= set(paths)
    seen, full_pages = set(), 0
    for path in [*paths, "/app/calendar?view=week", "/app/calendar?view=list", "/app/nowhere"]:
        response = await owner.get(path, follow_redirects=True)
        assert response.headers["content-type"].startswith("text/html"), path
        if response.text.lstrip().startswith(("<!doctype", "<!DOCTYPE")):
            seen.add(page_nonce(response))
            full_pages += 1
        else:  # a part that htmx swaps in: no script of its own, same rules otherwise
            assert "<script" not in response.text, path
            assert not INLINE_HANDLER.search(response.text), path
            assert NONCE.search(response.headers["content-security-policy"]), path
    assert len(seen) == full_pages >= len(paths)  # each page had a nonce of its own


async def test_an_unexpected_error_has_the_headers_too(app: FastAPI) -> None:
    # A route of the test's own that fails: the last-resort answer, page and JSON alike.
    async def fail() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/app/fails", fail)
    app.add_api_route("/fails", fail)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = await client.get("/app/fails")
        api = await client.get("/fails")
    assert page.status_code == api.status_code == 500
    assert "Something went wrong on our side." in page.text
    page_nonce(page)
    assert api.json() == {"message": "internal error"}
    assert_common(api)
    assert api.headers["content-security-policy"] == OTHER_POLICY
