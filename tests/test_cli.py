"""The `tidings` command, run as a real process against each backend.

Results are checked where they land: in the database, and through the API (a key made by
the command must authenticate requests to an app built from the same settings).
"""

import asyncio
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from tests.world import date_signature_headers, signature_headers
from tidings.app import create_app
from tidings.auth import service as auth_service
from tidings.auth.models import ApiKey, User, UserSession
from tidings.channels.models import Channel, PlatformApp
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.db.engine import Database
from tidings.platforms.store import Credentials
from tidings.publishing.models import Task, TaskKind
from tidings.workspaces import service as workspace_service
from tidings.workspaces.models import Membership, Role, Workspace

TIDINGS = str(Path(sys.executable).with_name("tidings"))
SECRET_KEY = "cli-test-secret-key-0123456789abcdefghij"
assert len(SECRET_KEY) == 40


def password_is(stored: str, password: str) -> bool:
    """Whether `stored` (an argon2 hash) is the hash of `password`."""
    try:
        return PasswordHasher().verify(stored, password)
    except VerificationError:
        return False


def cli_env(database_url: str | None, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a `tidings` process: no TIDINGS_* from outside, ours only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_DATA_DIR"] = str(data_dir)
    env["TIDINGS_SECRET_KEY"] = SECRET_KEY
    if database_url is not None:
        env["TIDINGS_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def tidings(
    env: Mapping[str, str], *args: str, cwd: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the command; its standard input is `stdin` (never the terminal of the tests)."""
    return subprocess.run(
        [TIDINGS, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


def tidings_each(
    env: Mapping[str, str], commands: list[list[str]], *, cwd: Path
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands at the same time (each process spends a second importing)."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda args: tidings(env, *args, cwd=cwd), commands))


def ok_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def failed(result: subprocess.CompletedProcess[str], exit_code: int = 1) -> str:
    """The stderr of a run that exited with `exit_code` and printed nothing on stdout."""
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.strip()
    return result.stderr


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(database_url, tmp_path)


@pytest.fixture
def settings_of_env(database_url: str, tmp_path: Path) -> Settings:
    """The settings the command ran with, for an app in this process."""
    return Settings(data_dir=tmp_path, database_url=database_url, secret_key=SECRET_KEY)


def in_db(url: str, statement: Any) -> list[Any]:
    """Rows of `statement` in the database at `url`."""

    async def run() -> list[Any]:
        db = Database.connect(url)
        try:
            async with db.reader() as session:
                return list((await session.execute(statement)).all())
        finally:
            await db.dispose()

    return asyncio.run(run())


def make_workspace(url: str, name: str = "Acme") -> str:
    """A workspace made directly in the database (cheaper than a process)."""

    async def run() -> str:
        db = Database.connect(url)
        try:
            async with db.transaction() as session:
                ws = await workspace_service.create_workspace(session, name, datetime.now(UTC))
                return ws.id
        finally:
            await db.dispose()

    return asyncio.run(run())


def list_status(settings: Settings, headers: dict[str, str]) -> int:
    """The status of GET /scheduled-posts with `headers`, from an app built on `settings`."""

    async def run() -> int:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.get("/scheduled-posts", headers=headers)
                if r.status_code == 200:
                    assert r.json() == {"data": [], "nextCursor": None}
                return r.status_code

    return asyncio.run(run())


# --- migrate, workspaces, users -----------------------------------------------------------


def test_migrate_json_is_idempotent(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    for _ in range(2):
        result = ok_json(tidings(env, "migrate", "--json", cwd=tmp_path))
        assert result["migrated"] is True
        assert make_url(result["database"]) == make_url(database_url)
    assert in_db(database_url, text("SELECT count(*) FROM alembic_version")) == [(1,)]


def test_migrate_hides_the_database_password(tmp_path: Path, postgres_url: str) -> None:
    parsed = make_url(postgres_url)
    # Under trust authentication (the default test server) any password is accepted.
    password = parsed.password or "s3cret-pw"
    url = parsed.set(password=password).render_as_string(hide_password=False)
    result = ok_json(tidings(cli_env(url, tmp_path), "migrate", "--json", cwd=tmp_path))
    assert str(password) not in json.dumps(result)
    assert "***" in result["database"]


def test_workspaces_create(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    result = ok_json(tidings(env, "workspaces", "create", "Acme Social", "--json", cwd=tmp_path))
    assert result["id"].startswith("ws_")
    assert result == {"id": result["id"], "name": "Acme Social", "timezone": "UTC"}
    paris = ok_json(
        tidings(
            env,
            "workspaces",
            "create",
            "Paris",
            "--timezone",
            "Europe/Paris",
            "--json",
            cwd=tmp_path,
        )
    )
    assert paris["timezone"] == "Europe/Paris"
    rows = in_db(database_url, select(Workspace.id, Workspace.name, Workspace.timezone))
    assert sorted(rows) == sorted(
        [(result["id"], "Acme Social", "UTC"), (paris["id"], "Paris", "Europe/Paris")]
    )
    human = tidings(env, "workspaces", "create", "Third", cwd=tmp_path)
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("created workspace ws_")
    assert "(Third)" in human.stdout


def test_workspaces_create_refuses_bad_input(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    bad_zone, blank = tidings_each(
        env,
        [
            ["workspaces", "create", "X", "--timezone", "Mars/Base"],
            ["workspaces", "create", "   ", "--json"],
        ],
        cwd=tmp_path,
    )
    stderr = failed(bad_zone)
    assert stderr.startswith("error: ")
    assert "Mars/Base" in stderr
    assert json.loads(failed(blank)) == {"message": "workspace name must not be empty"}
    assert in_db(database_url, select(Workspace.id)) == []


def password_of(url: str, email: str) -> str:
    found = in_db(url, select(User.password_hash).where(User.email == email))
    assert len(found) == 1
    return str(found[0].password_hash)


def test_users_create(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    ws = make_workspace(database_url)
    args = ["users", "create", "--workspace", ws, "--email", "Ann@Example.com"]
    # The password comes on standard input, never on the command line.
    created = tidings(
        env, *args, "--role", "owner", "--json", cwd=tmp_path, stdin="long enough pw\n"
    )
    result = ok_json(created)
    assert created.stderr == ""
    assert result["id"].startswith("usr_")
    assert result == {
        "id": result["id"],
        "email": "ann@example.com",
        "workspace": ws,
        "role": "owner",
    }
    memberships = in_db(database_url, select(Membership.user_id, Membership.role))
    assert [(m.user_id, m.role.value) for m in memberships] == [(result["id"], "owner")]
    assert password_is(password_of(database_url, "ann@example.com"), "long enough pw")
    # --password still works, with a warning that it shows in the process list.
    other = ["users", "create", "--workspace", ws, "--email", "bo@example.com", "--role", "viewer"]
    warned = tidings(env, *other, "--password", "long enough pw", cwd=tmp_path)
    assert warned.returncode == 0, warned.stderr
    assert "warning: --password shows in the process list" in warned.stderr


def test_users_set_password_reads_stdin_and_ends_sign_ins(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    ws = make_workspace(database_url)

    async def signed_in_person() -> None:
        db = Database.connect(database_url)
        try:
            async with db.transaction() as session:
                now = datetime.now(UTC)
                user, _ = await workspace_service.add_member(
                    session,
                    workspace_id=ws,
                    email="ann@example.com",
                    password="the old password",
                    role=Role.EDITOR,
                    now=now,
                )
                await auth_service.start_session(
                    session,
                    user_id=user.id,
                    workspace_id=ws,
                    now=now,
                    ttl=timedelta(hours=1),
                )
        finally:
            await db.dispose()

    asyncio.run(signed_in_person())
    assert len(in_db(database_url, select(UserSession.token_hash))) == 1
    args = ["users", "set-password", "--email", "Ann@Example.com"]
    unknown, too_short = tidings_each(
        env,
        [["users", "set-password", "--email", "nobody@example.com"], args],
        cwd=tmp_path,
    )
    assert failed(unknown) == "error: no account with email nobody@example.com\n"
    assert "at least 8" in failed(too_short)
    result = tidings(env, *args, "--json", cwd=tmp_path, stdin="a new long password\n")
    assert ok_json(result) == {
        "id": ok_json(result)["id"],
        "email": "ann@example.com",
        "passwordSet": True,
    }
    stored = password_of(database_url, "ann@example.com")
    assert password_is(stored, "a new long password")
    assert not password_is(stored, "the old password")
    assert in_db(database_url, select(UserSession.token_hash)) == []


def test_users_create_refusals(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    ws = make_workspace(database_url)
    # Standard input is empty here: no password.
    base = ["users", "create", "--email", "bob@example.com"]
    short_password = ["users", "create", "--workspace", ws, "--email", "c@example.com"]
    short_password += ["--role", "viewer"]
    bad_role, unknown_ws, unknown_ws_json, too_short = tidings_each(
        env,
        [
            [*base, "--workspace", ws, "--role", "overlord"],
            [*base, "--workspace", "ws_NOPE", "--role", "editor"],
            [*base, "--workspace", "ws_NOPE", "--role", "editor", "--json"],
            short_password,
        ],
        cwd=tmp_path,
    )
    # Typer refuses a role it does not know before anything runs (a usage error).
    assert bad_role.returncode != 0
    assert "overlord" in bad_role.stderr
    assert failed(unknown_ws) == "error: workspace ws_NOPE does not exist\n"
    assert json.loads(failed(unknown_ws_json)) == {"message": "workspace ws_NOPE does not exist"}
    assert "at least 8" in failed(too_short)
    assert in_db(database_url, select(Membership.user_id)) == []


# --- keys -----------------------------------------------------------------------------------


def test_keys_create_works_then_revoke_stops_it(
    env: dict[str, str], database_url: str, tmp_path: Path, settings_of_env: Settings
) -> None:
    ws = make_workspace(database_url)
    key = ok_json(tidings(env, "keys", "create", "--workspace", ws, "--json", cwd=tmp_path))
    assert key["id"].startswith("key_")
    assert key["workspace"] == ws
    assert key["name"] == "default"
    assert key["signing"] == "request"
    assert key["scopes"] == ["posts:read", "posts:write", "channels:read", "channels:write"]
    assert key["token"] == f"{key['id']}.{key['secret']}"
    assert len(key["secret"]) >= 32
    stored = in_db(database_url, select(ApiKey.id, ApiKey.workspace_id, ApiKey.secret_encrypted))
    assert [(r.id, r.workspace_id) for r in stored] == [(key["id"], ws)]
    assert key["secret"].encode() not in stored[0].secret_encrypted  # encrypted at rest

    bearer = {"Authorization": f"Bearer {key['token']}"}
    assert list_status(settings_of_env, bearer) == 200
    assert (
        list_status(
            settings_of_env, signature_headers(key["id"], key["secret"], "GET", "/scheduled-posts")
        )
        == 200
    )

    revoked = ok_json(tidings(env, "keys", "revoke", key["id"], "--json", cwd=tmp_path))
    assert revoked["id"] == key["id"]
    assert revoked["revokedAt"].endswith("Z")
    datetime.fromisoformat(revoked["revokedAt"])
    assert list_status(settings_of_env, bearer) == 401
    assert (
        list_status(
            settings_of_env, signature_headers(key["id"], key["secret"], "GET", "/scheduled-posts")
        )
        == 401
    )


def test_keys_create_with_date_signing_and_chosen_scopes(
    env: dict[str, str], database_url: str, tmp_path: Path, settings_of_env: Settings
) -> None:
    ws = make_workspace(database_url)
    args = ["keys", "create", "--workspace", ws, "--signing", "date", "--json"]
    key = ok_json(
        tidings(env, *args, "--scope", "workspace:read", "--scope", "posts:read", cwd=tmp_path)
    )
    assert (key["signing"], key["scopes"]) == ("date", ["posts:read", "workspace:read"])
    stored = in_db(database_url, select(ApiKey.id, ApiKey.signing, ApiKey.scopes))
    assert [tuple(r) for r in stored] == [(key["id"], "date", ["posts:read", "workspace:read"])]
    headers = date_signature_headers(key["id"], key["secret"])
    assert list_status(settings_of_env, headers) == 200
    # Each pair once, also through another process's app on the same database.
    assert list_status(settings_of_env, headers) == 401
    bad_signing, bad_scope = tidings_each(
        env,
        [
            ["keys", "create", "--workspace", ws, "--signing", "sha1", "--json"],
            ["keys", "create", "--workspace", ws, "--scope", "apps:write", "--json"],
        ],
        cwd=tmp_path,
    )
    assert json.loads(failed(bad_signing)) == {
        "message": "unknown signing 'sha1'; one of: request, date"
    }
    assert json.loads(failed(bad_scope)) == {
        "message": "unknown scope 'apps:write'; one of: posts:read, posts:write, "
        "channels:read, channels:write, workspace:read, metrics:read"
    }
    assert len(in_db(database_url, select(ApiKey.id))) == 1


def test_keys_refusals(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    create, revoke = tidings_each(
        env,
        [["keys", "create", "--workspace", "ws_NOPE"], ["keys", "revoke", "key_NOPE", "--json"]],
        cwd=tmp_path,
    )
    assert "ws_NOPE" in failed(create)
    assert json.loads(failed(revoke)) == {"message": "API key key_NOPE does not exist"}
    assert in_db(database_url, select(ApiKey.id)) == []


def test_keys_create_human_output_shows_the_secret_once(
    env: dict[str, str], database_url: str, tmp_path: Path, settings_of_env: Settings
) -> None:
    ws = make_workspace(database_url)
    result = tidings(env, "keys", "create", "--workspace", ws, "--name", "ci", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("API key key_")
    key_id = lines[0].removeprefix("API key ")
    secret = lines[1].split("secret:", 1)[1].strip()
    token = lines[2].split("token:", 1)[1].strip()
    assert token == f"{key_id}.{secret}"
    assert "shown only now" in result.stdout
    assert in_db(database_url, select(ApiKey.name)) == [("ci",)]
    assert (
        list_status(settings_of_env, signature_headers(key_id, secret, "GET", "/scheduled-posts"))
        == 200
    )


# --- channels -------------------------------------------------------------------------------


def test_channels_add(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    ws = make_workspace(database_url)
    result = ok_json(
        tidings(
            env,
            *("channels", "add", "--workspace", ws, "--platform", "sandbox", "--name", "Demo"),
            *("--option", "latency_ms=5", "--option", "fail_first=2", "--option", "note=a=b"),
            "--json",
            cwd=tmp_path,
        )
    )
    assert result["id"].startswith("ch_")
    options = {"latency_ms": "5", "fail_first": "2", "note": "a=b"}
    assert result == {
        "id": result["id"],
        "workspace": ws,
        "platform": "sandbox",
        "name": "Demo",
        "status": "ACTIVE",
        "options": options,
    }
    rows = in_db(database_url, select(Channel.id, Channel.workspace_id, Channel.options))
    assert [tuple(r) for r in rows] == [(result["id"], ws, options)]


def test_channels_add_refusals(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    ws = make_workspace(database_url)
    add = ["channels", "add", "--name", "Demo"]
    no_equals, no_key, unknown_platform, unknown_ws = tidings_each(
        env,
        [
            [*add, "--workspace", ws, "--platform", "sandbox", "--option", "latency"],
            [*add, "--workspace", ws, "--platform", "sandbox", "--option", "=5", "--json"],
            [*add, "--workspace", ws, "--platform", "myspace"],
            [*add, "--workspace", "ws_NOPE", "--platform", "sandbox"],
        ],
        cwd=tmp_path,
    )
    assert "--option expects key=value, got 'latency'" in failed(no_equals)
    assert "key=value" in json.loads(failed(no_key))["message"]
    stderr = failed(unknown_platform)
    assert "unknown platform 'myspace'" in stderr
    assert "sandbox" in stderr
    assert "ws_NOPE" in failed(unknown_ws)
    assert in_db(database_url, select(Channel.id)) == []


def test_channels_add_past_the_cap_is_refused(database_url: str, tmp_path: Path) -> None:
    env = cli_env(database_url, tmp_path / "data", TIDINGS_MAX_CHANNELS_PER_WORKSPACE="1")
    ws = make_workspace(database_url)
    add = ["channels", "add", "--workspace", ws, "--platform", "sandbox", "--json"]
    first = ok_json(tidings(env, *add, "--name", "One", cwd=tmp_path))
    refused = json.loads(failed(tidings(env, *add, "--name", "Two", cwd=tmp_path)))
    assert refused == {
        "message": "the workspace has reached its limit of 1 channels "
        "(TIDINGS_MAX_CHANNELS_PER_WORKSPACE)"
    }
    assert [tuple(r) for r in in_db(database_url, select(Channel.id))] == [(first["id"],)]


def test_channels_add_with_a_token_obtained_elsewhere(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    ws = make_workspace(database_url)
    add = ["channels", "add", "--workspace", ws, "--platform", "instagram", "--name", "Brand"]
    tiktok = [*add[:4], "--platform", "tiktok", "--name", "Brand"]
    added, no_token, half, with_refresh = tidings_each(
        env,
        [
            [*add, "--account-id", "1784", "--access-token", "IGQ-secret", "--json"],
            [*add, "--json"],
            [*add, "--access-token", "IGQ-secret"],
            [
                *tiktok,
                "--account-id",
                "-000Oz",
                "--access-token",
                "act.x",
                "--refresh-token",
                "rft.y",
            ],
        ],
        cwd=tmp_path,
    )
    result = ok_json(added)
    assert (result["platform"], result["status"]) == ("instagram", "ACTIVE")
    assert "access token" in json.loads(failed(no_token))["message"]
    assert "--account-id and --access-token go together" in failed(half)
    assert "(tiktok: Brand)" in with_refresh.stdout
    [sealed] = in_db(
        database_url, select(Channel.credentials).where(Channel.platform == "instagram")
    )
    assert b"IGQ-secret" not in sealed[0]  # encrypted at rest
    opened = Credentials.open(SecretBox(SECRET_KEY), sealed[0])
    assert opened is not None
    assert (opened.account_id, opened.access_token, opened.refresh_token) == (
        "1784",
        "IGQ-secret",
        None,
    )
    # A token that can be renewed has its renewal planned (TikTok's rotate: kept alive daily).
    [(kind, channel_platform)] = in_db(
        database_url,
        select(Task.kind, Channel.platform)
        .join(Channel, Channel.id == Task.channel_id)
        .where(Channel.platform == "tiktok"),
    )
    assert (kind, channel_platform) == (TaskKind.REFRESH_TOKEN, "tiktok")


def test_apps_set(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    ws = make_workspace(database_url)
    base = ["apps", "set", "--workspace", ws, "--client-id", "1234"]
    done, sandbox = tidings_each(
        env,
        [
            [*base, "--platform", "instagram", "--client-secret", "app-secret", "--json"],
            [*base, "--platform", "sandbox", "--client-secret", "x"],
        ],
        cwd=tmp_path,
    )
    assert ok_json(done) == {"workspace": ws, "platform": "instagram", "clientId": "1234"}
    assert "no app for platform 'sandbox'" in failed(sandbox)
    [sealed] = in_db(database_url, select(PlatformApp.client_secret))
    assert SecretBox(SECRET_KEY).open(sealed[0]) == "app-secret"


# --- configuration --------------------------------------------------------------------------


def test_embedded_default_keeps_database_and_secret_key_in_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = cli_env(None, data)
    del env["TIDINGS_SECRET_KEY"]
    ws = ok_json(tidings(env, "workspaces", "create", "X", "--json", cwd=tmp_path))
    assert (data / "tidings.db").is_file()
    key = ok_json(tidings(env, "keys", "create", "--workspace", ws["id"], "--json", cwd=tmp_path))
    secret_file = data / "secret_key"
    assert secret_file.is_file()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    generated = secret_file.read_text().strip()
    assert len(generated) >= 32
    # The next process reuses the key: both keys verify under it.
    key2 = ok_json(tidings(env, "keys", "create", "--workspace", ws["id"], "--json", cwd=tmp_path))
    assert secret_file.read_text().strip() == generated
    settings = Settings(data_dir=data, database_url=None, secret_key=None)
    for issued in (key, key2):
        assert list_status(settings, {"Authorization": f"Bearer {issued['token']}"}) == 200
    assert not (tmp_path / ".tidings").exists()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_migrate_keeps_the_data_dir_and_database_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = cli_env(None, data)
    del env["TIDINGS_SECRET_KEY"]
    ok_json(tidings(env, "migrate", "--json", cwd=tmp_path))
    database = data / "tidings.db"
    assert mode_of(data) == 0o700
    assert mode_of(database) == 0o600
    ws = ok_json(tidings(env, "workspaces", "create", "Private", "--json", cwd=tmp_path))
    ok_json(tidings(env, "keys", "create", "--workspace", ws["id"], "--json", cwd=tmp_path))
    assert mode_of(data / "secret_key") == 0o600
    # SQLite gives its companions the database's mode: they are private from the start.
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        assert mode_of(data / "tidings.db-wal") == 0o600
        assert mode_of(data / "tidings.db-shm") == 0o600
        # What an older release left (0755 and 0644) is tightened at the next start.
        for path, loose in [(data, 0o755), (database, 0o644), (data / "secret_key", 0o644)]:
            path.chmod(loose)
        (data / "tidings.db-wal").chmod(0o644)
        ok_json(tidings(env, "migrate", "--json", cwd=tmp_path))
        assert mode_of(data / "tidings.db-wal") == 0o600
    assert mode_of(data) == 0o700
    assert mode_of(database) == 0o600
    assert mode_of(data / "secret_key") == 0o600


def test_a_sqlite_database_elsewhere_is_private_but_its_directory_is_left_alone(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    env = cli_env(f"sqlite:///{shared / 'mine.db'}", tmp_path / "data")
    ok_json(tidings(env, "migrate", "--json", cwd=tmp_path))
    assert mode_of(shared / "mine.db") == 0o600
    assert mode_of(shared) == 0o755


def test_embedded_mode_on_postgresql_without_a_key_is_refused_in_one_line(
    tmp_path: Path, postgres_url: str
) -> None:
    env = cli_env(postgres_url, tmp_path / "data")
    del env["TIDINGS_SECRET_KEY"]
    for args in (["migrate"], ["serve", "--port", "1"], ["worker"]):
        stderr = failed(tidings(env, *args, cwd=tmp_path))
        assert stderr.strip().splitlines() == [
            "error: invalid configuration: TIDINGS_SECRET_KEY must be set when "
            "TIDINGS_DATABASE_URL is PostgreSQL: a key generated into one data directory "
            "cannot open, on another machine, the secrets stored in the shared database"
        ], args
    assert not (tmp_path / "data").exists()


def test_a_bad_setting_is_one_line_naming_its_variable(tmp_path: Path) -> None:
    env = cli_env(None, tmp_path / "data", TIDINGS_METRICS_BIND="9100")
    stderr = failed(tidings(env, "migrate", cwd=tmp_path))
    assert stderr.strip().splitlines() == [
        "error: invalid configuration: TIDINGS_METRICS_BIND: "
        "expected host:port (say 127.0.0.1:9100), got '9100'"
    ]


def test_production_mode_requires_a_secret_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = cli_env(None, data, TIDINGS_MODE="production")
    del env["TIDINGS_SECRET_KEY"]
    short_key = {**env, "TIDINGS_SECRET_KEY": "too-short"}
    commands = [["migrate"], ["workspaces", "create", "X"], ["serve", "--port", "1"]]
    refused = tidings_each(env, commands, cwd=tmp_path)
    refused.append(tidings(short_key, "migrate", cwd=tmp_path))
    for args, result in zip([*commands, ["migrate (short key)"]], refused, strict=True):
        assert result.returncode != 0, args
        assert "TIDINGS_SECRET_KEY" in result.stderr, (args, result.stderr)
    assert not data.exists()  # refused before touching anything
    fine = tidings({**env, "TIDINGS_SECRET_KEY": SECRET_KEY}, "migrate", "--json", cwd=tmp_path)
    assert ok_json(fine)["migrated"] is True
    assert not (data / "secret_key").exists()  # the configured key is used, none generated


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_plain_postgres_urls_are_accepted(tmp_path: Path, postgres_url: str, scheme: str) -> None:
    url = make_url(postgres_url).set(drivername=scheme).render_as_string(hide_password=False)
    assert url.startswith(f"{scheme}://")
    env = cli_env(url, tmp_path)
    assert ok_json(tidings(env, "migrate", "--json", cwd=tmp_path))["migrated"] is True
    ws = ok_json(tidings(env, "workspaces", "create", f"via {scheme}", "--json", cwd=tmp_path))
    assert in_db(postgres_url, select(Workspace.name).where(Workspace.id == ws["id"])) == [
        (f"via {scheme}",)
    ]


def test_unsupported_database_url_fails_cleanly(tmp_path: Path) -> None:
    env = cli_env("mysql://root@127.0.0.1/tidings", tmp_path)
    result = tidings(env, "migrate", "--json", cwd=tmp_path)
    assert result.returncode == 1
    assert "unsupported database URL" in json.loads(result.stderr)["message"]
