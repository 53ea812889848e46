"""`tidings secrets rotate` and `tidings secrets drop-old`, run as real processes: with the
data directory's key file (embedded) and with TIDINGS_SECRET_KEY holding several keys."""

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.test_cli import (
    SECRET_KEY,
    cli_env,
    failed,
    in_db,
    list_status,
    make_workspace,
    mode_of,
    ok_json,
    tidings,
)
from tidings.channels.models import Channel, PlatformApp
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.platforms.store import Credentials

NEW_KEY = "cli-next-secret-key-0123456789abcdefghij"


def seal_some(env: dict[str, str], workspace: str, cwd: Path) -> dict[str, Any]:
    """An API key, a channel with a token and a platform app, sealed by the commands."""
    key = ok_json(tidings(env, "keys", "create", "--workspace", workspace, "--json", cwd=cwd))
    base = ["--workspace", workspace, "--platform", "instagram"]
    ok_json(
        tidings(
            env,
            "channels",
            "add",
            *base,
            "--name",
            "Brand",
            "--account-id",
            "1784",
            "--access-token",
            "IGQ-secret",
            "--json",
            cwd=cwd,
        )
    )
    app = [*base, "--client-id", "app", "--client-secret", "app-secret", "--json"]
    ok_json(tidings(env, "apps", "set", *app, cwd=cwd))
    return key


def opens_with(url: str, key: str) -> tuple[str | None, str | None]:
    """The channel's access token and the app's secret, opened with `key` alone."""
    box = SecretBox(key)
    [(credentials,)] = in_db(url, select(Channel.credentials).where(Channel.platform != "x"))
    [(secret,)] = in_db(url, select(PlatformApp.client_secret))
    opened = Credentials.open(box, credentials)
    return (opened.access_token if opened else None, box.open(secret))


EVERY_PLACE_ONCE = {
    "api_keys.secret_encrypted": 1,
    "channels.credentials": 1,
    "platform_apps.client_secret": 1,
    "pending_connections.accounts": 0,
}


def test_rotate_with_the_key_file_adds_a_key_reseals_then_drops_the_old(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = cli_env(None, data)
    del env["TIDINGS_SECRET_KEY"]
    url = f"sqlite:///{data / 'tidings.db'}"
    ok_json(tidings(env, "migrate", "--json", cwd=tmp_path))
    issued = seal_some(env, make_workspace(url), tmp_path)
    ring = data / "secret_key"
    [old_key] = ring.read_text().split()

    rotated = ok_json(
        tidings(env, "secrets", "rotate", "--batch-size", "1", "--json", cwd=tmp_path)
    )
    assert rotated["newKey"] is True
    assert {k: v["resealed"] for k, v in rotated["places"].items()} == EVERY_PLACE_ONCE
    assert rotated["total"] == {
        "current": 0,
        "older": 3,
        "resealed": 3,
        "changed": 0,
        "unreadable": 0,
    }
    new_key, kept = ring.read_text().split()
    assert kept == old_key
    assert mode_of(ring) == 0o600
    assert opens_with(url, new_key) == ("IGQ-secret", "app-secret")
    assert opens_with(url, old_key) == (None, None)

    dropped = ok_json(tidings(env, "secrets", "drop-old", "--json", cwd=tmp_path))
    assert dropped == {"dropped": 1, "keys": 1}
    assert ring.read_text().split() == [new_key]
    assert mode_of(ring) == 0o600
    # A server reading the key file (now the new key alone) still takes the API key.
    settings = Settings(data_dir=data, database_url=None, secret_key=None)
    assert list_status(settings, {"Authorization": f"Bearer {issued['token']}"}) == 200

    # Rotating and dropping in one go, again: a third key, the second dropped.
    again = tidings(env, "secrets", "rotate", "--drop-old", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        "re-sealed 3 secrets under the newest key (0 were already, 0 changed meanwhile, "
        "0 open under no key); dropped 1 older keys"
    )
    [third] = ring.read_text().split()
    assert third not in (old_key, new_key)
    assert opens_with(url, third) == ("IGQ-secret", "app-secret")


def test_rotate_with_several_keys_in_the_environment(database_url: str, tmp_path: Path) -> None:
    old_env = cli_env(database_url, tmp_path)
    issued = seal_some(old_env, make_workspace(database_url), tmp_path)
    ring_env = {**old_env, "TIDINGS_SECRET_KEY": f"{NEW_KEY},{SECRET_KEY}"}

    # Nothing may be dropped while values are sealed under the older key.
    early = failed(tidings(ring_env, "secrets", "drop-old", "--json", cwd=tmp_path))
    assert json.loads(early) == {
        "message": "3 secrets are still sealed under an older key: run `tidings secrets "
        "rotate` first (with every process restarted on the new key)"
    }

    rotated = ok_json(tidings(ring_env, "secrets", "rotate", "--json", cwd=tmp_path))
    assert rotated["newKey"] is False
    assert rotated["total"]["resealed"] == 3
    assert opens_with(database_url, NEW_KEY) == ("IGQ-secret", "app-secret")
    dropped = ok_json(tidings(ring_env, "secrets", "drop-old", "--json", cwd=tmp_path))
    assert dropped == {
        "dropped": 0,
        "keys": 2,
        "keepOnly": "the first key of TIDINGS_SECRET_KEY",
    }
    assert not (tmp_path / "secret_key").exists()
    # The operator now keeps the new key alone: keys and channels work on it.
    new_only = Settings(data_dir=tmp_path, database_url=database_url, secret_key=NEW_KEY)
    assert list_status(new_only, {"Authorization": f"Bearer {issued['token']}"}) == 200
    old_only = Settings(data_dir=tmp_path, database_url=database_url, secret_key=SECRET_KEY)
    assert list_status(old_only, {"Authorization": f"Bearer {issued['token']}"}) == 401
