"""Request bodies are bounded (`TIDINGS_MAX_BODY_BYTES`): refused with 413 before the app
reads past the limit, whether the length is declared or the body is chunked; on both
databases, through a real uvicorn server where the bytes on the wire matter."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.emulators.server import free_port
from tests.world import World
from tidings.app import create_app
from tidings.config import Settings
from tidings.scheduled_posts.models import ScheduledPost

MIB = 1024 * 1024
SERVER_PIECE = 256 * 1024
TOO_LARGE = {"message": f"the request body is larger than the limit of {MIB} bytes"}


class Counting:
    """Wraps the app as the server sees it: counts the body bytes the app pulled."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[tuple[int, Counting]]:
    """The app (lifespan already running) behind a real uvicorn server on a free port."""
    counting = Counting(app)
    port = free_port()
    config = uvicorn.Config(
        counting, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            await _started(server)
        yield port, counting
    finally:
        server.should_exit = True
        await task


async def _started(server: uvicorn.Server) -> None:
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)


async def raw_request(port: int, head: str, body: Iterator[bytes]) -> tuple[int, dict[str, Any]]:
    """Send `head` then the body's pieces as fast as the server takes them, while reading
    the answer; the status and JSON body (the server may stop reading and close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode())

    async def pump() -> None:
        try:
            for piece in body:
                writer.write(piece)
                await writer.drain()
        except OSError:
            pass  # the server answered and closed: the rest was never going to be read

    pumping = asyncio.create_task(pump())
    raw = b""
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    piece = await reader.read(65536)
                except OSError:
                    break
                if not piece:
                    break
                raw += piece
                if b"\r\n\r\n" in raw:
                    headers, _, rest = raw.partition(b"\r\n\r\n")
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in headers.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    )
                    if len(rest) >= length:
                        break
    finally:
        pumping.cancel()
        writer.close()
    headers, _, rest = raw.partition(b"\r\n\r\n")
    if not headers:
        raise NoAnswer
    return int(headers.split(b" ")[1]), json.loads(rest)


class NoAnswer(Exception):
    """The connection ended before any of the answer was read."""


async def answer_to(
    port: int, head: str, body: Callable[[], Iterator[bytes]], counting: Counting
) -> tuple[int, dict[str, Any]]:
    """`raw_request`, tried again (at most 3 times, each counted afresh) when the answer is
    lost on the way: a server that closes a connection with unread bytes in it resets it
    (TCP RST), and on loopback the reset can overtake the answer it just wrote, which leaves
    the client with nothing to read. That is the network's doing, not the app's."""
    for _ in range(3):
        counting.received = 0
        try:
            return await raw_request(port, head, body())
        except NoAnswer:
            continue
    raise AssertionError("the connection was reset before any answer, 3 times")


def pieces(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield b" " * n
        sent += n


def chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for piece in pieces(total, size):
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


async def test_a_50_mb_login_is_refused_before_any_of_it_is_read(app: FastAPI) -> None:
    async with serving(app) as (port, counting):
        started = time.monotonic()
        head = (
            "POST /auth/login HTTP/1.1\r\nHost: tidings.test\r\n"
            f"Content-Type: application/json\r\nContent-Length: {50 * MIB}\r\n\r\n"
        )
        status, body = await answer_to(port, head, lambda: pieces(50 * MIB), counting)
        assert (status, body) == (413, TOO_LARGE)
        assert time.monotonic() - started < 5
        assert counting.received == 0


async def test_a_chunked_body_is_cut_off_at_the_limit(app: FastAPI) -> None:
    async with serving(app) as (port, counting):
        head = (
            "POST /auth/login HTTP/1.1\r\nHost: tidings.test\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        status, body = await answer_to(port, head, lambda: chunked(50 * MIB), counting)
        assert (status, body) == (413, TOO_LARGE)
        # The app stopped pulling at the first piece past the limit (the server hands the
        # body over in pieces of up to a few hundred KiB), not 49 MiB later.
        assert MIB < counting.received < MIB + SERVER_PIECE


async def test_a_chunked_post_over_the_limit_stores_nothing(world: World) -> None:
    # Valid JSON up to the limit: only the count of bytes can tell it is too long.
    body = json.dumps(world.post_body(notes="n" * (MIB + 10))).encode()
    async with serving(world.app) as (port, counting):
        head = (
            "POST /scheduled-posts HTTP/1.1\r\nHost: tidings.test\r\n"
            f"Authorization: Bearer {world.key_token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        parts = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        frames = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts] + [b"0\r\n\r\n"]
        status, answer = await answer_to(port, head, lambda: iter(frames), counting)
        assert (status, answer) == (413, TOO_LARGE)
        assert counting.received < MIB + SERVER_PIECE
    async with world.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(ScheduledPost)) == 0


async def test_a_body_just_under_the_limit_is_read(world: World) -> None:
    login = json.dumps({"email": world.emails["owner"], "password": "wrong"})
    body = login + " " * (MIB - len(login))  # exactly the limit: still read and parsed
    r = await world.anonymous().post(
        "/auth/login", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 401, r.text
    r = await world.anonymous().post(
        "/auth/login", content=body + " ", headers={"Content-Type": "application/json"}
    )
    assert (r.status_code, r.json()) == (413, TOO_LARGE)


@pytest.fixture
async def small_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings.model_copy(update={"max_body_bytes": 4096}))
    async with application.router.lifespan_context(application):
        yield application


async def test_the_limit_is_configurable(small_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=small_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tidings.test") as c:
        login = json.dumps({"email": "a@example.com", "password": "wrong"})
        headers = {"Content-Type": "application/json"}
        r = await c.post("/auth/login", content=login + " " * (4096 - len(login)), headers=headers)
        assert r.status_code == 401, r.text

        async def stream() -> AsyncIterator[bytes]:
            yield login.encode()
            yield b" " * 4096

        r = await c.post("/auth/login", content=stream(), headers=headers)
        assert r.status_code == 413
        assert r.json() == {"message": "the request body is larger than the limit of 4096 bytes"}


async def test_the_413_is_in_the_openapi_document(world: World) -> None:
    spec = (await world.anonymous().get("/openapi.json")).json()
    login = spec["paths"]["/auth/login"]["post"]["responses"]
    assert login["413"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MessageBody"
    }
