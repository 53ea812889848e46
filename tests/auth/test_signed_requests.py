"""What a signature covers, and replays refused; on both databases.

A request-signing key (the default) signs `METHOD\\n<path[?query]>\\n<x-date>\\n<hex sha256
of the body>`: headers captured from one request authenticate no other. A date-signing key
(for Dynamo-compatible clients) signs the x-date alone, and each (x-date, x-signature) pair
is accepted once, in every process sharing the database.
"""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.world import World, date_signature_headers, signature_headers, signed_json
from tidings.app import create_app
from tidings.auth.models import ApiKey, UsedSignature
from tidings.config import Settings
from tidings.scheduled_posts.models import ScheduledPost

LIST = "/scheduled-posts"
JSON = {"content-type": "application/json"}


def _message(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"message"}, body
    message: str = body["message"]
    return message


async def _post_ids(world: World) -> list[str]:
    async with world.db.transaction(write=False) as session:
        rows = await session.execute(select(ScheduledPost.id).order_by(ScheduledPost.id))
        return list(rows.scalars())


async def _date_key(world: World) -> tuple[str, str]:
    owner = await world.person("owner")
    r = await owner.post("/api-keys", json={"name": "dynamo", "signing": "date"})
    assert r.status_code == 201, r.text
    assert r.json()["signing"] == "date"
    return r.json()["id"], r.json()["secret"]


async def _used(world: World, key_id: str) -> list[tuple[str, datetime]]:
    async with world.db.transaction(write=False) as session:
        rows = await session.execute(
            select(UsedSignature.signature, UsedSignature.expires_at).where(
                UsedSignature.api_key_id == key_id
            )
        )
        return [(s, e) for s, e in rows.all()]


# --- Request-signing keys -------------------------------------------------------------------


async def test_a_signed_post_with_its_body_is_accepted(world: World) -> None:
    body = world.post_body()
    r = await world.anonymous().post(
        LIST, **signed_json(world.key_id, world.key_secret, "POST", LIST, body)
    )
    assert r.status_code == 201, r.text
    assert r.json()["createdBy"] == world.key_id
    assert await _post_ids(world) == [r.json()["id"]]


async def test_headers_captured_from_a_get_are_refused_on_a_post(world: World) -> None:
    """The reported attack: a GET's headers replayed as two POSTs two seconds later."""
    captured = signature_headers(world.key_id, world.key_secret, "GET", LIST)
    read = await world.anonymous().get(LIST, headers=captured)
    assert read.status_code == 200, read.text
    body = json.dumps(world.post_body()).encode()
    for _ in range(2):
        r = await world.anonymous().post(LIST, content=body, headers={**captured, **JSON})
        assert r.status_code == 401, r.text
        assert "invalid signature" in _message(r)
    assert await _post_ids(world) == []


async def test_a_signed_post_replayed_with_another_body_is_refused(world: World) -> None:
    sent = signed_json(world.key_id, world.key_secret, "POST", LIST, world.post_body())
    first = await world.anonymous().post(LIST, **sent)
    assert first.status_code == 201, first.text
    other = json.dumps(world.post_body(notes="not what was signed")).encode()
    r = await world.anonymous().post(LIST, content=other, headers=sent["headers"])
    assert r.status_code == 401, r.text
    assert "invalid signature" in _message(r)
    assert await _post_ids(world) == [first.json()["id"]]


async def test_a_tampered_body_is_refused(world: World) -> None:
    signed = json.dumps(world.post_body()).encode()
    headers = signature_headers(world.key_id, world.key_secret, "POST", LIST, signed)
    tampered = signed.replace(b"Hello from Tidings", b"Hello from Mallory")
    assert tampered != signed
    r = await world.anonymous().post(LIST, content=tampered, headers={**headers, **JSON})
    assert r.status_code == 401, r.text
    assert _message(r) == (
        "invalid signature: x-signature is not HMAC-SHA256(secret, METHOD\\npath[?query]"
        "\\nx-date\\nhex SHA-256 of the body) for this request-signing key"
    )
    assert await _post_ids(world) == []


async def test_the_query_is_signed_as_sent(world: World) -> None:
    target = f"{LIST}?status=DRAFT&limit=5"
    headers = signature_headers(world.key_id, world.key_secret, "GET", target)
    r = await world.anonymous().get(target, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"data": [], "nextCursor": None}
    # The same headers with another query (or none) are refused.
    for tampered in (f"{LIST}?status=SCHEDULED&limit=5", f"{LIST}?limit=5&status=DRAFT", LIST):
        r = await world.anonymous().get(tampered, headers=headers)
        assert r.status_code == 401, (tampered, r.text)
        assert "invalid signature" in _message(r)


async def test_a_changed_method_is_refused(world: World) -> None:
    created = await world.api().post(LIST, json=world.post_body())
    assert created.status_code == 201, created.text
    path = f"{LIST}/{created.json()['id']}"
    headers = signature_headers(world.key_id, world.key_secret, "GET", path)
    assert (await world.anonymous().get(path, headers=headers)).status_code == 200
    r = await world.anonymous().delete(path, headers=headers)
    assert r.status_code == 401, r.text
    assert "invalid signature" in _message(r)
    async with world.db.transaction(write=False) as session:
        post = await session.get(ScheduledPost, created.json()["id"])
        assert post is not None
        assert post.deleted_at is None


async def test_a_path_is_signed_as_sent_before_percent_decoding(world: World) -> None:
    sent = f"{LIST}/post%5Fnothing"
    decoded = f"{LIST}/post_nothing"
    wrong = signature_headers(world.key_id, world.key_secret, "GET", decoded)
    r = await world.anonymous().get(sent, headers=wrong)
    assert r.status_code == 401, r.text
    right = signature_headers(world.key_id, world.key_secret, "GET", sent)
    r = await world.anonymous().get(sent, headers=right)
    assert r.status_code == 404, r.text
    assert _message(r) == "scheduled post post_nothing not found"


async def test_a_date_only_signature_is_refused_for_a_request_signing_key(world: World) -> None:
    r = await world.anonymous().get(
        LIST, headers=date_signature_headers(world.key_id, world.key_secret)
    )
    assert r.status_code == 401, r.text
    assert "invalid signature" in _message(r)


async def test_a_request_signing_key_spends_no_signatures(world: World) -> None:
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST)
    )
    assert r.status_code == 200, r.text
    assert await _used(world, world.key_id) == []


# --- Date-signing keys ----------------------------------------------------------------------


async def test_a_date_signing_key_accepts_each_signature_once(world: World) -> None:
    key_id, secret = await _date_key(world)
    x_date = datetime.now(UTC).isoformat()
    headers = date_signature_headers(key_id, secret, x_date)
    first = await world.anonymous().get(LIST, headers=headers)
    assert first.status_code == 200, first.text
    again = await world.anonymous().get(LIST, headers=headers)
    assert again.status_code == 401, again.text
    assert _message(again) == (
        "signature replayed: this key signs the x-date alone, so each (x-date, x-signature) "
        "pair is accepted once; sign every request with a new x-date"
    )
    # Kept as long as the x-date could be accepted: 60 s after it.
    [(signature, expires_at)] = await _used(world, key_id)
    assert signature == headers["x-signature"]
    assert expires_at == datetime.fromisoformat(x_date) + timedelta(seconds=60)
    # A new x-date is a new signature.
    fresh = date_signature_headers(key_id, secret, datetime.now(UTC) + timedelta(seconds=1))
    assert (await world.anonymous().get(LIST, headers=fresh)).status_code == 200
    assert len(await _used(world, key_id)) == 2


async def test_a_replayed_pair_is_refused_on_a_write_and_creates_nothing(world: World) -> None:
    key_id, secret = await _date_key(world)
    headers = date_signature_headers(key_id, secret)
    body = world.post_body()
    first = await world.anonymous().post(LIST, json=body, headers=headers)
    assert first.status_code == 201, first.text
    replayed = await world.anonymous().post(LIST, json=body, headers=headers)
    assert replayed.status_code == 401, replayed.text
    assert "replayed" in _message(replayed)
    assert await _post_ids(world) == [first.json()["id"]]


async def test_a_pair_is_spent_even_when_its_request_fails(world: World) -> None:
    """A refused request rolls its transaction back, not the spending of its pair (committed
    apart, or written again after the rollback on SQLite), so headers seen on a failed
    request cannot be used for another."""
    key_id, secret = await _date_key(world)
    for method, path, body in [
        ("DELETE", f"{LIST}/post_nothing", None),  # 404
        ("POST", LIST, {"status": "PUBLISHED"}),  # 422
        ("GET", f"{LIST}/post_nothing", None),  # 404 on a reader
    ]:
        headers = date_signature_headers(key_id, secret)
        failed = await world.anonymous().request(method, path, json=body, headers=headers)
        assert failed.status_code in (404, 422), failed.text
        r = await world.anonymous().post(LIST, json=world.post_body(), headers=headers)
        assert r.status_code == 401, (method, path, r.text)
        assert "replayed" in _message(r)
        await asyncio.sleep(0.001)  # the next x-date differs
    assert await _post_ids(world) == []
    assert len(await _used(world, key_id)) == 3


async def test_a_pair_used_on_one_instance_is_refused_on_another(
    world: World, settings: Settings
) -> None:
    """Two processes sharing the database: the second instance sees the first's spending."""
    key_id, secret = await _date_key(world)
    headers = date_signature_headers(key_id, secret)
    first = await world.anonymous().post(LIST, json=world.post_body(), headers=headers)
    assert first.status_code == 201, first.text
    second_app = create_app(settings)
    async with second_app.router.lifespan_context(second_app):
        transport = httpx.ASGITransport(app=second_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://two.test") as two:
            r = await two.post(LIST, json=world.post_body(), headers=headers)
            assert r.status_code == 401, r.text
            assert "replayed" in _message(r)
            fresh = date_signature_headers(
                key_id, secret, datetime.now(UTC) + timedelta(milliseconds=1)
            )
            assert (await two.get(LIST, headers=fresh)).status_code == 200
    assert await _post_ids(world) == [first.json()["id"]]


async def test_concurrent_uses_of_one_pair_let_exactly_one_through(world: World) -> None:
    key_id, secret = await _date_key(world)
    headers = date_signature_headers(key_id, secret)

    async def attempt(method: str) -> httpx.Response:
        if method == "GET":
            return await world.anonymous().get(LIST, headers=headers)
        return await world.anonymous().post(LIST, json=world.post_body(), headers=headers)

    answers = await asyncio.gather(*(attempt(m) for m in ["POST", "GET"] * 4))
    statuses = sorted(a.status_code for a in answers)
    assert statuses in ([200] + [401] * 7, [201] + [401] * 7), [a.text for a in answers]
    assert all("replayed" in _message(a) for a in answers if a.status_code == 401)
    assert len(await _post_ids(world)) == statuses.count(201)


async def test_a_date_signing_key_refuses_a_request_signature(world: World) -> None:
    key_id, secret = await _date_key(world)
    r = await world.anonymous().get(LIST, headers=signature_headers(key_id, secret, "GET", LIST))
    assert r.status_code == 401, r.text
    assert _message(r) == (
        "invalid signature: x-signature is not HMAC-SHA256(secret, x-date) "
        "for this date-signing key"
    )
    assert await _used(world, key_id) == []


async def test_expired_signatures_are_pruned(world: World) -> None:
    key_id, secret = await _date_key(world)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    async with world.db.transaction() as session:
        session.add(UsedSignature(api_key_id=key_id, signature="0" * 64, expires_at=long_ago))
    headers = date_signature_headers(key_id, secret)
    assert (await world.anonymous().get(LIST, headers=headers)).status_code == 200
    assert [s for s, _ in await _used(world, key_id)] == [headers["x-signature"]]


async def test_stale_or_bad_date_signatures_spend_nothing(world: World) -> None:
    key_id, secret = await _date_key(world)
    stale = date_signature_headers(key_id, secret, datetime.now(UTC) - timedelta(seconds=61))
    wrong = date_signature_headers(key_id, secret + "x")
    for headers in (stale, wrong):
        r = await world.anonymous().get(LIST, headers=headers)
        assert r.status_code == 401, r.text
    assert await _used(world, key_id) == []


async def test_revoking_a_date_key_removes_nothing_but_refuses_it(world: World) -> None:
    key_id, secret = await _date_key(world)
    assert (
        await world.anonymous().get(LIST, headers=date_signature_headers(key_id, secret))
    ).status_code == 200
    owner = await world.person("owner")
    assert (await owner.delete(f"/api-keys/{key_id}")).status_code == 204
    r = await world.anonymous().get(LIST, headers=date_signature_headers(key_id, secret))
    assert r.status_code == 401
    assert _message(r) == "API key has been revoked"
    async with world.db.transaction(write=False) as session:
        key = await session.get(ApiKey, key_id)
        assert key is not None
        assert key.revoked_at is not None
        count = (await session.execute(select(func.count()).select_from(UsedSignature))).scalar()
        assert count == 1


async def test_bearer_tokens_of_date_keys_work_as_before(world: World) -> None:
    owner = await world.person("owner")
    issued: dict[str, Any] = (
        await owner.post("/api-keys", json={"name": "dynamo", "signing": "date"})
    ).json()
    bearer = {"Authorization": f"Bearer {issued['token']}"}
    for _ in range(2):
        assert (await world.anonymous().get(LIST, headers=bearer)).status_code == 200


async def test_many_date_signed_requests_at_once_all_get_through(world: World) -> None:
    """More at once than the connection pool holds: none waits for a second connection
    while holding a first."""
    key_id, secret = await _date_key(world)
    now = datetime.now(UTC)
    signed = [
        date_signature_headers(key_id, secret, now - timedelta(microseconds=i)) for i in range(40)
    ]

    async def read(headers: dict[str, str]) -> int:
        return (await world.anonymous().get(LIST, headers=headers)).status_code

    statuses = await asyncio.wait_for(asyncio.gather(*(read(h) for h in signed)), timeout=20)
    assert statuses == [200] * 40
    assert len(await _used(world, key_id)) == 40
