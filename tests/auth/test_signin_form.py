"""The sign-in and first-run forms, posted as a browser would (through httpx, on both
databases): each carries a pre-session CSRF token tied to a cookie set when it was
rendered, a post from another site is refused, and the sign-in form is throttled like the
API's."""

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from tests.world import PASSWORD, World
from tidings.auth.deps import SESSION_COOKIE
from tidings.auth.models import SignInFailure, User, UserSession
from tidings.config import Settings
from tidings.web import presession
from tidings.workspaces.models import Workspace

EXPIRED = "This form has expired or did not come from this page; please try again."
CROSS_SITE = "sign-in refused: it was sent from another site"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Locks that cannot pass by themselves during a test on a slow machine.
    return settings.model_copy(update={"sign_in_first_backoff_seconds": 60})


@pytest.fixture
def tab(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The app's client without credentials: it keeps its cookies, like a browser tab."""
    return client


def _token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def _count(app: FastAPI, model: type) -> int:
    async with app.state.tidings.db.transaction(write=False) as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def _sign_in_form(tab: httpx.AsyncClient) -> str:
    page = await tab.get("/app/signin?next=/app/queue")
    assert page.status_code == 200
    assert page.cookies.get(presession.COOKIE)
    set_cookie = page.headers["set-cookie"].lower()
    assert "httponly" in set_cookie
    assert "samesite=strict" in set_cookie
    return _token(page)


async def test_the_sign_in_form_signs_in_with_its_token(
    world: World, tab: httpx.AsyncClient
) -> None:
    token = await _sign_in_form(tab)
    r = await tab.post(
        "/app/signin",
        data={
            "email": world.emails["editor"],
            "password": PASSWORD,
            "next": "/app/queue",
            "csrf_token": token,
        },
        headers={"origin": "http://tidings.test", "sec-fetch-site": "same-origin"},
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/app/queue"
    assert r.cookies.get(SESSION_COOKIE)
    assert await _count(world.app, UserSession) == 1
    # Another page rendered in the same tab reuses its nonce: two tabs both work.
    assert await _sign_in_form(tab) == token


@pytest.mark.parametrize("sent", ["", "forged", "missing"])
async def test_a_sign_in_without_its_forms_token_is_refused(
    world: World, tab: httpx.AsyncClient, sent: str
) -> None:
    await _sign_in_form(tab)
    data = {"email": world.emails["editor"], "password": PASSWORD, "next": "/app"}
    if sent != "missing":
        data["csrf_token"] = sent
    r = await tab.post("/app/signin", data=data)
    assert r.status_code == 403
    assert EXPIRED in r.text
    assert SESSION_COOKIE not in r.cookies
    assert await _count(world.app, UserSession) == 0
    assert await _count(world.app, SignInFailure) == 0
    # The page shown again carries a good token: signing in from it works.
    r = await tab.post("/app/signin", data={**data, "csrf_token": _token(r)})
    assert r.status_code == 303, r.text


async def test_a_token_made_for_another_browser_is_refused(
    world: World, app: FastAPI, tab: httpx.AsyncClient
) -> None:
    # The attacker's own page gives them a token, for their own cookie; the victim's
    # tab has another cookie (or none), so the token is worth nothing there.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tidings.test"
    ) as attacker:
        stolen = await _sign_in_form(attacker)
    await _sign_in_form(tab)
    data = {"email": world.emails["editor"], "password": PASSWORD, "csrf_token": stolen}
    r = await tab.post("/app/signin", data=data)
    assert r.status_code == 403
    assert EXPIRED in r.text
    # Nor does a planted cookie help without the server's secret key.
    tab.cookies.clear()
    tab.cookies.set(presession.COOKIE, "a" * 43)
    r = await tab.post("/app/signin", data=data)
    assert r.status_code == 403
    assert await _count(world.app, UserSession) == 0


@pytest.mark.parametrize(
    "headers",
    [{"origin": "https://attacker.example"}, {"sec-fetch-site": "cross-site"}],
    ids=["origin", "fetch-metadata"],
)
async def test_a_sign_in_posted_from_another_site_is_refused(
    world: World, tab: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    token = await _sign_in_form(tab)
    r = await tab.post(
        "/app/signin",
        data={"email": world.emails["editor"], "password": PASSWORD, "csrf_token": token},
        headers=headers,
    )
    assert r.status_code == 403
    assert CROSS_SITE in r.text
    assert "<h1>Not allowed</h1>" in r.text
    assert await _count(world.app, UserSession) == 0
    assert await _count(world.app, SignInFailure) == 0


async def test_the_sign_in_form_is_throttled_like_the_api(
    world: World, tab: httpx.AsyncClient
) -> None:
    token = await _sign_in_form(tab)
    email = world.emails["owner"]
    for n in range(5):
        r = await tab.post(
            "/app/signin", data={"email": email, "password": f"guess {n}", "csrf_token": token}
        )
        assert r.status_code == 401
        assert "invalid email or password" in r.text
    r = await tab.post(
        "/app/signin", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 429
    left = int(r.headers["retry-after"])
    assert 50 < left <= 60
    assert f"too many failed sign-ins for this email; try again in {left} seconds" in r.text
    assert 'role="alert"' in r.text
    assert SESSION_COOKIE not in r.cookies
    assert await _count(world.app, UserSession) == 0
    # Once the lock has passed, the right password signs in from the form.
    async with world.db.transaction() as session:
        await session.execute(
            update(SignInFailure).values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    r = await tab.post(
        "/app/signin",
        data={"email": email, "password": PASSWORD, "csrf_token": _token(r)},
    )
    assert r.status_code == 303, r.text
    assert await _count(world.app, UserSession) == 1


# --- The first run --------------------------------------------------------------------------


SETUP = {
    "workspace": "Acme",
    "email": "owner@acme.example.com",
    "password": "correct horse battery",
    "timezone": "Europe/Paris",
}


async def test_the_first_run_form_needs_its_token(app: FastAPI, tab: httpx.AsyncClient) -> None:
    page = await tab.get("/")
    assert page.status_code == 200
    assert "Welcome to Tidings" in page.text
    token = _token(page)

    r = await tab.post("/app/setup", data={**SETUP, "csrf_token": "forged"})
    assert r.status_code == 403
    assert EXPIRED in r.text
    assert 'value="Acme"' in r.text  # what was typed is kept
    r = await tab.post(
        "/app/setup", data={**SETUP, "csrf_token": token}, headers={"origin": "https://x.example"}
    )
    assert r.status_code == 403
    assert CROSS_SITE in r.text
    assert (await _count(app, User), await _count(app, Workspace)) == (0, 0)

    r = await tab.post("/app/setup", data={**SETUP, "csrf_token": token})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/app"
    assert r.cookies.get(SESSION_COOKIE)
    assert (await _count(app, User), await _count(app, Workspace)) == (1, 1)
    assert await _count(app, UserSession) == 1
    # The owner signs in with the password the first run stored.
    r = await tab.post("/auth/login", json={"email": SETUP["email"], "password": SETUP["password"]})
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "owner"
