"""Rotating the secret key: the newest key of the ring seals, every key opens; re-sealing
moves every sealed value (API key secrets, channel credentials, platform app secrets,
pending connections) under the newest key, after which it alone opens them all."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import TEST_SECRET_KEY
from tests.world import World, signature_headers
from tidings.app import create_app
from tidings.auth.models import ApiKey
from tidings.channels import service as channel_service
from tidings.channels.models import Channel, PendingConnection, PlatformApp
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.db.engine import Database
from tidings.platforms.store import Credentials
from tidings.rotation import reseal_all, survey

KEY_A = TEST_SECRET_KEY
KEY_B = "the-next-secret-key-" + "b" * 32


def test_the_newest_key_seals_and_every_key_opens() -> None:
    old, ring, new = SecretBox(KEY_A), SecretBox(f"{KEY_B},{KEY_A}"), SecretBox(KEY_B)
    sealed_a = old.seal("under A")
    assert ring.open(sealed_a) == "under A"
    assert new.open(sealed_a) is None
    assert not ring.opens_with_newest(sealed_a)
    sealed_ring = ring.seal("under the ring")
    assert new.open(sealed_ring) == "under the ring"  # the ring seals with its first key
    assert old.open(sealed_ring) is None
    resealed = ring.reseal(sealed_a)
    assert resealed is not None
    assert new.open(resealed) == "under A"
    assert SecretBox("unrelated-" + "u" * 32).reseal(sealed_a) is None


def test_keys_are_separated_by_commas_or_lines_and_spaces_inside_are_kept() -> None:
    spaced = "a passphrase with spaces " + "x" * 16
    sealed = SecretBox(spaced).seal("v")
    for ring in (f" {KEY_B} ,\n{spaced}\n", f"{KEY_B}\n\n{spaced}"):
        assert SecretBox(ring).open(sealed) == "v"
    with pytest.raises(ValueError, match="empty"):
        SecretBox(" ,\n")


async def _seal_everything(world: World) -> None:
    """Under key A: a channel with tokens, a platform app, a consent of two accounts (the
    world already has its API key)."""
    box, now = world.state.box, datetime.now(UTC)
    async with world.db.transaction() as session:
        await channel_service.add_channel(
            session,
            workspace_id=world.workspace_id,
            platform="instagram",
            name="Brand",
            options={},
            now=now,
            credentials=Credentials(account_id="1784", access_token="IGQ-secret"),
            box=box,
        )
        await channel_service.set_app(
            session,
            world.workspace_id,
            "instagram",
            client_id="app-id",
            client_secret="app-secret",
            box=box,
            now=now,
        )
        accounts = [
            {
                "platform": "facebook",
                "accountId": account,
                "name": account,
                "credentials": Credentials(account_id=account, access_token=f"t-{account}")
                .seal(box)
                .decode(),
            }
            for account in ("page-1", "page-2")
        ]
        session.add(
            PendingConnection(
                token_hash="h" * 64,
                workspace_id=world.workspace_id,
                session_hash="s" * 64,
                platform="facebook",
                accounts=accounts,
                created_at=now,
                expires_at=now + timedelta(minutes=10),
            )
        )


async def _every_sealed_value(db: Database) -> list[bytes]:
    async with db.transaction(write=False) as session:
        values = list(await session.scalars(select(ApiKey.secret_encrypted)))
        values += [c for c in await session.scalars(select(Channel.credentials)) if c]
        values += list(await session.scalars(select(PlatformApp.client_secret)))
        for accounts in await session.scalars(select(PendingConnection.accounts)):
            values += [a["credentials"].encode() for a in accounts]
    return values


async def test_rotation_reseals_every_value_so_the_new_key_alone_opens_them(
    world: World, settings: Settings
) -> None:
    await _seal_everything(world)
    before = await _every_sealed_value(world.db)
    assert len(before) == 5
    ring = SecretBox(f"{KEY_B},{KEY_A}")

    # In batches smaller than the tables, so that paging is exercised.
    found = await survey(world.db, ring, batch_size=1)
    assert found.total().as_dict() == {
        "current": 0,
        "older": 5,
        "resealed": 0,
        "changed": 0,
        "unreadable": 0,
    }
    assert await _every_sealed_value(world.db) == before  # a survey changes nothing

    report = await reseal_all(world.db, ring, batch_size=1)
    assert {name: t.resealed for name, t in report.places.items()} == {
        "api_keys.secret_encrypted": 1,
        "channels.credentials": 1,
        "platform_apps.client_secret": 1,
        "pending_connections.accounts": 2,
    }
    assert report.total().as_dict() == {
        "current": 0,
        "older": 5,
        "resealed": 5,
        "changed": 0,
        "unreadable": 0,
    }
    new_only = SecretBox(KEY_B)
    after = await _every_sealed_value(world.db)
    assert all(new_only.open(value) is not None for value in after)
    assert [SecretBox(KEY_A).open(value) for value in after] == [None] * 5
    assert [ring.open(v) for v in after] == [ring.open(v) for v in before]

    # Run again: nothing left to do.
    again = await reseal_all(world.db, ring, batch_size=2)
    assert again.total().as_dict()["current"] == 5
    assert again.total().as_dict()["resealed"] == 0

    # A server on key B alone: the API key signs and bears, the channel's tokens open.
    app = create_app(
        Settings(
            data_dir=settings.data_dir,
            database_url=settings.database_url,
            secret_key=KEY_B,
            embedded_worker=False,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            bearer = await client.get(
                "/scheduled-posts", headers={"Authorization": f"Bearer {world.key_token}"}
            )
            signed = await client.get(
                "/scheduled-posts",
                headers=signature_headers(
                    world.key_id, world.key_secret, "GET", "/scheduled-posts"
                ),
            )
    assert bearer.status_code == 200, bearer.text
    assert signed.status_code == 200, signed.text
    async with world.db.transaction(write=False) as session:
        sealed = await session.scalar(
            select(Channel.credentials).where(Channel.platform == "instagram")
        )
        pending = await session.scalar(select(PendingConnection.accounts))
    assert sealed is not None
    opened = Credentials.open(new_only, sealed)
    assert opened is not None
    assert (opened.account_id, opened.access_token) == ("1784", "IGQ-secret")
    assert pending is not None
    assert [a["accountId"] for a in pending] == ["page-1", "page-2"]


async def test_a_value_no_key_opens_is_counted_and_left_alone(world: World) -> None:
    stranger = SecretBox("a-key-nobody-has-anymore-" + "z" * 32).seal("lost")
    async with world.db.transaction() as session:
        key = await session.get(ApiKey, world.key_id)
        assert key is not None
        key.secret_encrypted = stranger
    report = await reseal_all(world.db, SecretBox(f"{KEY_B},{KEY_A}"))
    assert report.places["api_keys.secret_encrypted"].as_dict() == {
        "current": 0,
        "older": 0,
        "resealed": 0,
        "changed": 0,
        "unreadable": 1,
    }
    async with world.db.transaction(write=False) as session:
        assert await session.scalar(select(ApiKey.secret_encrypted)) == stranger
