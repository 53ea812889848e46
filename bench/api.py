"""Benchmark of the scheduled-posts API over real HTTP: create throughput, latency, paging.

Starts `tidings serve` on a free port against a fresh database, creates a workspace, a key and
a sandbox channel with the CLI, then sends POST /scheduled-posts from concurrent clients and
pages through GET /scheduled-posts. Prints one line of figures per backend.

    .venv/bin/python bench/api.py                     # SQLite and PostgreSQL, 2000 posts
    .venv/bin/python bench/api.py --backend sqlite --posts 500 --concurrency 8
"""

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get(
    "TIDINGS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> dict[str, object]:
    out = subprocess.run(
        [str(BIN / "tidings"), *args, "--json"], env=env, check=True, capture_output=True, text=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def postgres_database() -> tuple[str, str]:
    name = f"tidings_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", ADMIN_URL, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    return name, ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def run(backend: str, posts: int, concurrency: int) -> None:
    """Set up a fresh database and server, measure, and tear both down."""
    workdir = Path(tempfile.mkdtemp(prefix="tidings-bench-"))
    env = {**os.environ, "TIDINGS_DATA_DIR": str(workdir)}
    db_name = None
    if backend == "postgresql":
        db_name, env["TIDINGS_DATABASE_URL"] = postgres_database()
        # A shared database needs a key every process knows (none is generated for it).
        env["TIDINGS_SECRET_KEY"] = secrets.token_urlsafe(48)
    ws = cli(env, "workspaces", "create", "Bench")
    key = cli(env, "keys", "create", "--workspace", str(ws["id"]))
    channel = cli(
        env, "channels", "add", "--workspace", str(ws["id"]), "--platform", "sandbox", "--name", "B"
    )
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "tidings"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        figures = asyncio.run(
            measure(
                f"http://127.0.0.1:{port}",
                str(key["token"]),
                str(channel["id"]),
                posts,
                concurrency,
            )
        )
        print(f"{backend:10s} {figures}")
    finally:
        server.terminate()
        server.wait(10)
        if db_name:
            subprocess.run(
                ["psql", ADMIN_URL, "-qc", f'DROP DATABASE "{db_name}" WITH (FORCE)'], check=False
            )


async def measure(base: str, token: str, channel_id: str, posts: int, concurrency: int) -> str:
    """Create `posts` posts from `concurrency` clients, then page through them all."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(100):
            try:
                if (await client.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        when = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        body = {
            "status": "WAITING_FOR_APPROVAL",
            "media": "https://cdn.example.com/a.jpg",
            "mediaType": "IMAGE",
            "scheduledFor": when,
            "channels": {channel_id: {"caption": "benchmark"}},
        }
        latencies: list[float] = []
        queue = iter(range(posts))

        async def worker() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                r = await client.post("/scheduled-posts", json=body)
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 201, r.text

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        create_s = time.perf_counter() - t0

        t0, seen, cursor = time.perf_counter(), 0, None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/scheduled-posts", params=params)).json()
            seen += len(page["data"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
        list_s = time.perf_counter() - t0
    assert seen == posts
    latencies.sort()
    return (
        f"create: {posts / create_s:7.0f} posts/s "
        f"(p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms, "
        f"{concurrency} clients) | list: {seen} posts in {list_s * 1000:.0f} ms "
        f"({seen / list_s:.0f} posts/s, pages of 100)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        run(backend, args.posts, args.concurrency)


if __name__ == "__main__":
    main()
