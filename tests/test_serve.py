"""`tidings serve` as a real process on a real port, spoken to over HTTP, on each backend."""

import asyncio
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.conftest import postgres_admin
from tests.world import signature_headers
from tidings.db.engine import create_engine
from tidings.db.models import metadata

TIDINGS = str(Path(sys.executable).with_name("tidings"))
SECRET_KEY = "serve-test-secret-key-0123456789abcdefgh"
STARTUP_SECONDS = 20.0
TABLES = {t.name for t in metadata.sorted_tables} | {"alembic_version"}


def serve_env(
    database_url: str | None, data_dir: Path, *, secret_key: bool = True
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_DATA_DIR"] = str(data_dir)
    if secret_key:
        env["TIDINGS_SECRET_KEY"] = SECRET_KEY
    if database_url is not None:
        env["TIDINGS_DATABASE_URL"] = database_url
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"tidings serve exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"/health was not 200 within {STARTUP_SECONDS} s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, then wait; the exit code (uvicorn re-raises the signal once shut down)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"tidings serve ignored SIGTERM:\n{self.output()}")
        return self.process.returncode


@contextmanager
def tidings_serve(env: dict[str, str], workdir: Path) -> Iterator[Server]:
    """Start `tidings serve` on a free port; stopped (SIGTERM) when the block ends."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TIDINGS, "serve", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        yield server
    finally:
        server.stop()


def assert_graceful_stop(server: Server) -> None:
    assert server.stop() in (0, -signal.SIGTERM), server.output()
    assert "Application shutdown complete." in server.output()


def cli_json(env: dict[str, str], workdir: Path, *args: str) -> dict[str, str]:
    result = subprocess.run(
        [TIDINGS, *args, "--json"], env=env, cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    value: dict[str, str] = json.loads(result.stdout)
    return value


def test_serve_answers_over_http(database_url: str, tmp_path: Path) -> None:
    env = serve_env(database_url, tmp_path)
    with tidings_serve(env, tmp_path) as server:
        # The server boots while the command issues a workspace and a key.
        ws = cli_json(env, tmp_path, "workspaces", "create", "Served")
        key = cli_json(env, tmp_path, "keys", "create", "--workspace", ws["id"])
        server.wait_until_healthy()
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            health = http.get("/health")
            assert health.json()["status"] == "ok"
            assert health.json()["database"] == "ok"

            signed = http.get(
                "/scheduled-posts",
                headers=signature_headers(key["id"], key["secret"], "GET", "/scheduled-posts"),
            )
            assert signed.status_code == 200, signed.text
            assert signed.json() == {"data": [], "nextCursor": None}
            # Over real HTTP the path, query and body are signed as they travel.
            target = "/scheduled-posts?status=DRAFT&limit=5"
            listed = http.get(
                target, headers=signature_headers(key["id"], key["secret"], "GET", target)
            )
            assert listed.status_code == 200, listed.text
            body = b'{"notes": "signed over HTTP"}'
            signed_post = http.post(
                "/scheduled-posts",
                content=body,
                headers={
                    **signature_headers(key["id"], key["secret"], "POST", "/scheduled-posts", body),
                    "content-type": "application/json",
                },
            )
            assert signed_post.status_code == 201, signed_post.text
            assert signed_post.json()["notes"] == "signed over HTTP"

            bearer = {"Authorization": f"Bearer {key['token']}"}
            created = http.post("/scheduled-posts", json={"notes": "over HTTP"}, headers=bearer)
            assert created.status_code == 201, created.text
            assert created.json()["orgId"] == ws["id"]
            listed = http.get("/scheduled-posts", headers=bearer)
            assert listed.status_code == 200, listed.text
            assert [p["id"] for p in listed.json()["data"]] == [
                created.json()["id"],
                signed_post.json()["id"],
            ]

            anonymous = http.get("/scheduled-posts")
            assert anonymous.status_code == 401
            assert set(anonymous.json()) == {"message"}

            spec = http.get("/openapi.json")
            assert spec.status_code == 200
            assert "/scheduled-posts" in spec.json()["paths"]
            docs = http.get("/docs")
            assert docs.status_code == 200
            assert "text/html" in docs.headers["content-type"]
        assert_graceful_stop(server)
    assert f"Tidings on {server.base_url}" in server.output()


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """No database yet: None (SQLite in the data dir) or a new, empty PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    server_url = request.getfixturevalue("postgres_url")
    name = f"tidings_fresh_{uuid.uuid4().hex[:10]}"
    postgres_admin(f'CREATE DATABASE "{name}"', server_url)
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', server_url)


def _postgres_tables(url: str) -> set[str]:
    async def run() -> set[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
                return {r[0] for r in rows}
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.mark.parametrize("fresh_database", ["sqlite", "postgresql"], indirect=True)
def test_serve_migrates_a_fresh_database(fresh_database: str | None, tmp_path: Path) -> None:
    data = tmp_path / "fresh-data"
    # Embedded mode with nothing configured, except the database (and so the key, which
    # every machine sharing it must know) on PostgreSQL.
    env = serve_env(fresh_database, data, secret_key=fresh_database is not None)
    with tidings_serve(env, tmp_path) as server:
        server.wait_until_healthy()
        r = httpx.get(f"{server.base_url}/scheduled-posts", timeout=10)
        assert r.status_code == 401  # reached authentication: the key table exists
        if fresh_database is None:
            # Only its owner may read the database, and what SQLite keeps beside it.
            assert stat.S_IMODE(data.stat().st_mode) == 0o700
            for name in ("tidings.db", "tidings.db-wal", "tidings.db-shm", "secret_key"):
                assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
        assert_graceful_stop(server)
    if fresh_database is None:
        with sqlite3.connect(data / "tidings.db") as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = {r[0] for r in rows}
    else:
        tables = _postgres_tables(fresh_database)
        assert not (data / "tidings.db").exists()
        assert not (data / "secret_key").exists()  # the configured key is used
    assert tables >= TABLES
    if fresh_database is None:
        secret_file = data / "secret_key"
        assert secret_file.is_file()
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def _wait_for(url: str) -> httpx.Response:
    """The first answer from `url` that is not 503 (the process is still starting)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code != 503:
                return answer
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {STARTUP_SECONDS} s")


def test_metrics_bind_serves_metrics_without_credentials_beside_serve_and_worker(
    database_url: str, tmp_path: Path
) -> None:
    bind = f"127.0.0.1:{free_port()}"
    env = {**serve_env(database_url, tmp_path), "TIDINGS_METRICS_BIND": bind}
    with tidings_serve(env, tmp_path) as server:
        server.wait_until_healthy()
        scraped = _wait_for(f"http://{bind}/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        assert "tidings_tasks_due 0.0" in scraped.text.splitlines()
        assert "tidings_workers 1.0" in scraped.text.splitlines()  # the embedded worker
        assert scraped.headers["x-content-type-options"] == "nosniff"
        # Nothing else is served there, and the API's /metrics still needs credentials.
        other = httpx.get(f"http://{bind}/scheduled-posts", timeout=5)
        assert other.status_code == 404
        assert other.json() == {"message": "only GET /metrics is served here"}
        assert httpx.get(f"{server.base_url}/metrics", timeout=5).status_code == 401
        assert_graceful_stop(server)
    assert f"metrics on http://{bind}/metrics" in server.output()

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [TIDINGS, "worker"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        scraped = _wait_for(f"http://{bind}/metrics")
        assert scraped.status_code == 200, log.read_text()
        assert "tidings_tasks_claimed_total 0.0" in scraped.text.splitlines()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, log.read_text()
    assert "stopped" in log.read_text()
