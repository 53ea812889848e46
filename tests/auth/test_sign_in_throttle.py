"""Sign-in cannot be brute-forced: failures per email and per client address are counted in
the database (shared by every process), then locked with a doubling backoff and answered
429 with Retry-After, even for the right password; passwords are checked off the event
loop; another site's page cannot post a sign-in."""

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from tests.world import PASSWORD, World
from tidings.app import create_app
from tidings.auth.deps import SESSION_COOKIE
from tidings.auth.models import SignInFailure, UserSession
from tidings.auth.passwords import hash_password_blocking, verify_password
from tidings.auth.throttle import KeyKind, SignInPolicy
from tidings.config import Settings

LOGIN = "/auth/login"
BAD_CREDENTIALS = {"message": "invalid email or password"}
ELSEWHERE = {"origin": "https://attacker.example"}
HERE = "127.0.0.1"  # the address httpx's ASGI transport gives by default


#: The first lock in these tests (the default is 1 s): long enough never to pass by itself
#: during a test on a slow machine; tests move past a lock with `_let_locks_pass`.
FIRST_LOCK = 60


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sign_in_first_backoff_seconds": FIRST_LOCK})


def _assert_refused(r: httpx.Response, lock: int, names: str = "for this email") -> None:
    """`r` is a 429 for a lock of `lock` seconds set moments ago, and says how long is left."""
    assert r.status_code == 429, r.text
    left = int(r.headers["retry-after"])
    assert lock - 10 < left <= lock
    unit = "second" if left == 1 else "seconds"
    assert r.json() == {"message": f"too many failed sign-ins {names}; try again in {left} {unit}"}
    assert SESSION_COOKIE not in r.cookies


async def _counters(world: World) -> dict[str, tuple[int, datetime | None]]:
    """Every counter: its failures and until when it is locked."""
    async with world.db.transaction(write=False) as session:
        rows = (await session.execute(select(SignInFailure))).scalars()
        return {r.key: (r.failures, r.locked_until) for r in rows}


async def _sessions(world: World) -> int:
    async with world.db.transaction(write=False) as session:
        return (await session.execute(select(func.count()).select_from(UserSession))).scalar_one()


async def _let_locks_pass(world: World) -> None:
    """What waiting out every lock leaves: the same counts, no lock in force."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with world.db.transaction() as session:
        await session.execute(
            update(SignInFailure)
            .where(SignInFailure.locked_until.is_not(None))
            .values(locked_until=past)
        )


def _assert_locked_for(until: datetime | None, seconds: float, started: datetime) -> None:
    assert until is not None
    assert started + timedelta(seconds=seconds) <= until
    assert until <= datetime.now(UTC) + timedelta(seconds=seconds)


def _from(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client whose requests come from `address`."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40_000)),
        base_url="http://tidings.test",
    )


async def _sign_in(c: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await c.post(LOGIN, json={"email": email, "password": password})


# --- The policy, as data --------------------------------------------------------------------


def test_the_lock_doubles_from_the_first_backoff_up_to_the_maximum() -> None:
    policy = SignInPolicy.from_settings(Settings())
    assert policy.free == {KeyKind.EMAIL: 5, KeyKind.ADDRESS: 20}
    locks = [policy.lock_after(KeyKind.EMAIL, n) for n in range(1, 17)]
    seconds = [lock.total_seconds() if lock is not None else None for lock in locks]
    assert seconds == [None] * 4 + [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]
    assert policy.lock_after(KeyKind.ADDRESS, 19) is None
    assert policy.lock_after(KeyKind.ADDRESS, 20) == timedelta(seconds=1)
    # Very long runs stay at the maximum (no overflow).
    assert policy.lock_after(KeyKind.EMAIL, 10_000) == timedelta(minutes=15)


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert Settings(trusted_proxies="10.0.0.0/8, 127.0.0.1").trusted_proxy_list == [
        "10.0.0.0/8",
        "127.0.0.1",
    ]
    with pytest.raises(ValueError, match=r"'proxy\.internal' is not an IP address or CIDR"):
        Settings(trusted_proxies="10.0.0.1,proxy.internal")


# --- Per email ------------------------------------------------------------------------------


async def test_a_brute_force_loop_is_locked_out_even_for_the_right_password(world: World) -> None:
    c, email = world.anonymous(), world.emails["editor"]
    started = datetime.now(UTC)
    answers = [await _sign_in(c, email, f"guess {n}") for n in range(30)]
    assert [r.status_code for r in answers] == [401] * 5 + [429] * 25
    assert all(r.json() == BAD_CREDENTIALS for r in answers[:5])
    assert all("retry-after" not in r.headers for r in answers[:5])
    for r in answers[5:]:
        _assert_refused(r, FIRST_LOCK)

    # The lock holds for the right password too: no session is started.
    right = await _sign_in(c, email, PASSWORD)
    _assert_refused(right, FIRST_LOCK)
    assert await _sessions(world) == 0
    # Refused attempts are not counted: five failures, the email locked for a second.
    counters = await _counters(world)
    assert set(counters) == {f"email:{email}", f"ip:{HERE}"}
    assert counters[f"ip:{HERE}"] == (5, None)
    failures, until = counters[f"email:{email}"]
    assert failures == 5
    _assert_locked_for(until, FIRST_LOCK, started)

    # Once the lock has passed, each further failure doubles it.
    await _let_locks_pass(world)
    r = await _sign_in(c, email, "guess 31")
    assert (r.status_code, r.json()) == (401, BAD_CREDENTIALS)
    r = await _sign_in(c, email, PASSWORD)
    _assert_refused(r, 2 * FIRST_LOCK)

    # And once it has passed again, the right password signs in and clears the email.
    await _let_locks_pass(world)
    r = await _sign_in(c, email, PASSWORD)
    assert r.status_code == 200, r.text
    assert r.json()["userId"] == world.user_ids["editor"]
    assert await _sessions(world) == 1
    assert await _counters(world) == {f"ip:{HERE}": (6, None)}


async def test_an_unknown_email_is_throttled_exactly_like_a_known_one(world: World) -> None:
    known, unknown = world.emails["viewer"], "nobody@nowhere.example.com"
    for email in (known, unknown):
        answers = [await _sign_in(world.anonymous(), email, f"guess {n}") for n in range(7)]
        assert [(r.status_code, r.json()) for r in answers[:5]] == [(401, BAD_CREDENTIALS)] * 5
        for r in answers[5:]:
            _assert_refused(r, FIRST_LOCK)
    counters = await _counters(world)
    assert counters[f"email:{known}"][0] == counters[f"email:{unknown}"][0] == 5
    assert counters[f"ip:{HERE}"] == (10, None)


async def test_a_success_clears_the_emails_count(world: World) -> None:
    c, email = world.anonymous(), world.emails["owner"]
    for n in range(4):
        assert (await _sign_in(c, email, f"guess {n}")).status_code == 401
    assert (await _counters(world))[f"email:{email}"] == (4, None)
    assert (await _sign_in(c, email, PASSWORD)).status_code == 200
    # The email starts afresh; the address keeps its four failures (not the success).
    assert await _counters(world) == {f"ip:{HERE}": (4, None)}
    # So five more failures are needed before the email is locked again.
    answers = [(await _sign_in(c, email, f"again {n}")).status_code for n in range(6)]
    assert answers == [401] * 5 + [429]


async def test_counts_left_alone_for_a_day_are_forgotten(world: World) -> None:
    c, email = world.anonymous(), world.emails["editor"]
    for n in range(4):
        await _sign_in(c, email, f"guess {n}")
    await _sign_in(c, "someone@else.example.com", "guess")
    a_day_ago = datetime.now(UTC) - timedelta(hours=24, seconds=1)
    async with world.db.transaction() as session:
        await session.execute(update(SignInFailure).values(updated_at=a_day_ago))
    # The email starts from nothing again: four more failures leave it unlocked...
    for n in range(4):
        assert (await _sign_in(c, email, f"later {n}")).status_code == 401
    counters = await _counters(world)
    assert counters[f"email:{email}"] == (4, None)
    assert counters[f"ip:{HERE}"] == (4, None)
    # ...and a success sweeps every stale count (here, the other email's).
    assert (await _sign_in(c, email, PASSWORD)).status_code == 200
    assert await _counters(world) == {f"ip:{HERE}": (4, None)}


async def test_the_email_is_compared_as_it_is_stored(world: World) -> None:
    email = world.emails["editor"]
    for n in range(5):
        r = await _sign_in(world.anonymous(), f"  {email.upper()} ", f"guess {n}")
        assert r.status_code == 401
    r = await _sign_in(world.anonymous(), email, PASSWORD)
    _assert_refused(r, FIRST_LOCK)


# --- Per address ----------------------------------------------------------------------------


async def test_an_address_guessing_at_many_emails_is_locked_out(app: FastAPI, world: World) -> None:
    async with _from(app, "198.51.100.7") as guesser, _from(app, "203.0.113.9") as other:
        for n in range(20):
            r = await _sign_in(guesser, f"user{n}@acme.example.com", "password1")
            assert (r.status_code, r.json()) == (401, BAD_CREDENTIALS)
        # A fresh email, even a real one with its right password: the address is locked.
        r = await _sign_in(guesser, world.emails["editor"], PASSWORD)
        _assert_refused(r, FIRST_LOCK, "from this address")
        # Another address is not affected.
        r = await _sign_in(other, world.emails["editor"], PASSWORD)
        assert r.status_code == 200, r.text
    counters = await _counters(world)
    assert counters["ip:198.51.100.7"][0] == 20
    assert counters["ip:198.51.100.7"][1] is not None
    assert counters["ip:203.0.113.9"] == (0, None)
    assert f"email:{world.emails['editor']}" not in counters
    assert await _sessions(world) == 1


async def test_both_locks_are_named_when_both_hold(app: FastAPI, world: World) -> None:
    async with _from(app, "198.51.100.8") as guesser:
        for n in range(15):
            await _sign_in(guesser, f"user{n}@acme.example.com", "password1")
        for n in range(5):
            await _sign_in(guesser, world.emails["admin"], f"guess {n}")
        r = await _sign_in(guesser, world.emails["admin"], PASSWORD)
    _assert_refused(r, FIRST_LOCK, "for this email and from this address")


async def test_forwarded_addresses_count_only_from_a_trusted_proxy(
    settings: Settings, world: World
) -> None:
    # Not trusted (the default): X-Forwarded-For is the client's say, and ignored.
    c = world.anonymous()
    for n in range(20):
        r = await c.post(
            LOGIN,
            json={"email": f"user{n}@acme.example.com", "password": "password1"},
            headers={"x-forwarded-for": f"192.0.2.{n}"},
        )
        assert r.status_code == 401
    assert (await _counters(world))[f"ip:{HERE}"][0] == 20

    # Behind a proxy named in TIDINGS_TRUSTED_PROXIES, the address it forwards counts.
    proxied = create_app(settings.model_copy(update={"trusted_proxies": "127.0.0.0/8"}))
    async with proxied.router.lifespan_context(proxied), _from(proxied, "127.0.0.1") as c:
        r = await c.post(
            LOGIN,
            json={"email": world.emails["editor"], "password": PASSWORD},
            headers={"x-forwarded-for": "192.0.2.200"},
        )
        assert r.status_code == 200, r.text
        r = await c.post(
            LOGIN,
            json={"email": world.emails["editor"], "password": PASSWORD},
            headers={"x-forwarded-for": "192.0.2.201, 127.0.0.1"},
        )
        assert r.status_code == 200, r.text
    counters = await _counters(world)
    assert counters["ip:192.0.2.200"] == (0, None)
    assert counters["ip:192.0.2.201"] == (0, None)


# --- Shared by every process ----------------------------------------------------------------


@pytest.fixture
async def second_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """Another process serving the same database."""
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        yield other


async def test_a_lock_holds_in_every_process_on_the_database(
    world: World, second_app: FastAPI
) -> None:
    email = world.emails["reviewer"]
    for n in range(5):
        assert (await _sign_in(world.anonymous(), email, f"guess {n}")).status_code == 401
    async with _from(second_app, HERE) as elsewhere:
        r = await _sign_in(elsewhere, email, PASSWORD)
        _assert_refused(r, FIRST_LOCK)
        await _let_locks_pass(world)
        r = await _sign_in(elsewhere, email, "guess 6")
        assert r.status_code == 401
    # ...and what the other process counted holds here.
    r = await _sign_in(world.anonymous(), email, PASSWORD)
    _assert_refused(r, 2 * FIRST_LOCK)


async def test_parallel_guesses_cannot_outrun_the_count(world: World) -> None:
    email = world.emails["owner"]
    answers = await asyncio.gather(
        *(_sign_in(world.anonymous(), email, f"guess {n}") for n in range(12))
    )
    # Each attempt is counted before its password is checked: five are checked, no more.
    assert sorted(r.status_code for r in answers) == [401] * 5 + [429] * 7
    assert (await _counters(world))[f"email:{email}"][0] == 5


# --- The event loop stays free --------------------------------------------------------------


async def test_health_answers_while_logins_are_hashing(world: World) -> None:
    # What one argon2 check costs here at least, alone.
    stored = hash_password_blocking("something else")
    costs = []
    for _ in range(3):
        started = time.perf_counter()
        assert not await verify_password(stored, "a guess")
        costs.append(time.perf_counter() - started)
    one_hash = min(costs)

    # The app's first requests build its routes (seconds on a busy machine): not measured.
    c = world.anonymous()
    assert (await c.get("/health")).status_code == 503
    refused = await c.post(LOGIN, json={"email": "a@b.example", "password": "x"}, headers=ELSEWHERE)
    assert refused.status_code == 403

    # How long the event loop is kept from running anything else, while the logins run.
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    logins = [
        asyncio.create_task(_sign_in(world.anonymous(), f"user{n}@acme.example.com", "guess"))
        for n in range(8)
    ]
    # Wait until all eight are counted, i.e. past the database and at their argon2 check.
    for _ in range(1000):
        if len(await _counters(world)) == 9:
            break
        await asyncio.sleep(0.005)
    health = await world.anonymous().get("/health")
    pending = sum(not login.done() for login in logins)
    answers = await asyncio.gather(*logins)
    done.set()
    await ticker

    assert health.status_code == 503  # no worker runs in these tests
    assert health.json()["database"] == "ok"
    assert [r.status_code for r in answers] == [401] * 8
    # A check on the event loop would stall it for a whole hash at least, and /health
    # would wait for all eight.
    assert max(gaps) < one_hash * 0.8, (max(gaps), one_hash, pending)
    assert pending >= 1, (max(gaps), one_hash, pending)


# --- Another site's page cannot sign you in -------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        ELSEWHERE,
        {"origin": "null"},
        {"origin": "http://tidings.test.attacker.example"},
        {"sec-fetch-site": "cross-site"},
        {"origin": "http://tidings.test", "sec-fetch-site": "cross-site"},
    ],
    ids=["other-origin", "null-origin", "lookalike", "fetch-metadata", "both"],
)
async def test_a_cross_site_login_is_refused(world: World, headers: dict[str, str]) -> None:
    r = await world.anonymous().post(
        LOGIN, json={"email": world.emails["editor"], "password": PASSWORD}, headers=headers
    )
    assert (r.status_code, r.json()) == (
        403,
        {"message": "sign-in refused: it was sent from another site"},
    )
    assert SESSION_COOKIE not in r.cookies
    assert await _sessions(world) == 0
    assert await _counters(world) == {}


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://tidings.test", "sec-fetch-site": "same-origin"},
        {"origin": "http://127.0.0.1:8000"},  # TIDINGS_PUBLIC_URL's origin
        {"sec-fetch-site": "none"},
        {},
    ],
    ids=["same-origin", "public-url", "typed", "no-browser"],
)
async def test_a_same_site_login_is_accepted(world: World, headers: dict[str, str]) -> None:
    r = await world.anonymous().post(
        LOGIN, json={"email": world.emails["editor"], "password": PASSWORD}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert await _sessions(world) == 1
