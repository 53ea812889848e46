"""The guarded fetcher against real local servers: what it refuses (every spelling of a
forbidden address, before anything is sent), redirects (at most 3, each hop checked), no
userinfo, the byte budget, the total deadline against a server that drips, and HTTPS with
the host's own name. These run without the tests' opening of 127.0.0.0/8 unless they say so."""

import ipaddress
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from tests.emulators.drip import DripServer
from tests.emulators.server import EmulatorServer, free_port
from tidings.fetch import (
    FetchDeadlineExceeded,
    Fetcher,
    FetchPolicy,
    FetchTooLarge,
    ForbiddenAddress,
    address_refusal,
    parse_networks,
)

LOCAL = parse_networks("127.0.0.0/8")
MB = 1024 * 1024


def host_app(received: Counter[str]) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        received[request.url.path.split("/")[1]] += 1
        return await call_next(request)

    @app.get("/echo")
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({k: v for k, v in request.headers.items()})

    @app.get("/loop")
    async def loop() -> Response:
        return RedirectResponse("/loop", status_code=302)

    @app.get("/hops/{left}")
    async def hops(left: int) -> Response:
        if left == 0:
            return Response(b"arrived")
        return RedirectResponse(f"/hops/{left - 1}", status_code=302)

    @app.get("/to")
    async def to(url: str) -> Response:
        return RedirectResponse(url, status_code=307)

    @app.get("/big")
    async def big() -> Response:
        return Response(b"x" * MB, media_type="application/octet-stream")

    return app


@pytest.fixture
def host() -> Iterator[tuple[str, Counter[str]]]:
    received: Counter[str] = Counter()
    with EmulatorServer(host_app(received)) as server:
        yield server.url, received


async def refusal(url: str, policy: FetchPolicy | None = None) -> str:
    async with Fetcher(policy or FetchPolicy()) as fetch:
        with pytest.raises(ForbiddenAddress) as refused:
            await fetch.send("GET", url)
    return refused.value.reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "its host is a loopback address"),
        ("http://localhost/", "its host is a loopback address"),
        ("http://0.0.0.0/", "its host is an unspecified address"),
        ("http://2130706433/", "its host is a loopback address"),
        ("http://127.1/", "its host is a loopback address"),
        ("http://0x7f.1/", "its host is a loopback address"),
        ("http://0177.0.0.1/", "it is not a valid URL (Invalid IPv4 address: '0177.0.0.1')"),
        ("http://[::1]/", "its host is a loopback address"),
        ("http://[::]/", "its host is an unspecified address"),
        ("http://[::ffff:127.0.0.1]/", "its host is a loopback address (inside an IPv6 address)"),
        ("http://[::ffff:7f00:1]/", "its host is a loopback address (inside an IPv6 address)"),
        ("http://[::127.0.0.1]/", "its host is a loopback address (inside an IPv6 address)"),
        ("http://[64:ff9b::7f00:1]/", "its host is a loopback address (inside an IPv6 address)"),
        ("http://[2002:a9fe:a9fe::]/", "its host is a link-local address (inside an IPv6 address)"),
        ("http://169.254.169.254/latest/meta-data/", "its host is a link-local address"),
        ("http://[fe80::1]/", "its host is a link-local address"),
        ("http://10.0.0.1/", "its host is a private address"),
        ("http://172.16.0.1/", "its host is a private address"),
        ("http://192.168.1.1/", "its host is a private address"),
        ("http://100.64.0.1/", "its host is a shared (CGNAT) address"),
        ("http://224.0.0.1/", "its host is a multicast address"),
        ("http://240.0.0.1/", "its host is a private address"),
        ("http://[fd00::1]/", "its host is a private address"),
        ("http://[ff02::1]/", "its host is a multicast address"),
        ("http://[2001::1]/", "its host is a private address"),  # Teredo
        ("http://8.8.8.8:8080/", "port 8080 is not fetched (only 80 and 443)"),
        ("http://8.8.8.8:22/", "port 22 is not fetched (only 80 and 443)"),
        ("ftp://8.8.8.8/", "only http and https URLs are fetched"),
        ("file:///etc/passwd", "only http and https URLs are fetched"),
    ],
)
async def test_each_forbidden_form_is_refused_before_anything_is_sent(
    url: str, reason: str
) -> None:
    assert await refusal(url) == reason


def test_public_addresses_pass_and_allowed_networks_open_others() -> None:
    for public in ("8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"):
        assert address_refusal(ipaddress.ip_address(public)) is None
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), LOCAL) is None
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.1"), LOCAL) is None
    assert address_refusal(ipaddress.ip_address("10.0.0.1"), LOCAL) == "a private address"


async def test_a_refused_url_reads_the_same_whatever_listens_there(
    host: tuple[str, Counter[str]],
) -> None:
    url, received = host
    open_port = int(url.rsplit(":", 1)[1])
    closed_port = free_port()
    opened = await refusal(f"http://127.0.0.1:{open_port}/echo")
    closed = await refusal(f"http://127.0.0.1:{closed_port}/echo")
    assert opened == closed == "its host is a loopback address"
    assert sum(received.values()) == 0


async def test_an_allowed_network_is_reached_on_any_port(host: tuple[str, Counter[str]]) -> None:
    url, received = host
    async with Fetcher(FetchPolicy(LOCAL)) as fetch, fetch.stream("GET", f"{url}/hops/0") as r:
        assert r.status_code == 200
        assert await r.aread() == b"arrived"
    assert received["hops"] == 1


async def test_userinfo_is_never_sent(host: tuple[str, Counter[str]]) -> None:
    url, _ = host
    with_userinfo = url.replace("http://", "http://admin:secret@") + "/echo"
    async with Fetcher(FetchPolicy(LOCAL)) as fetch, fetch.stream("GET", with_userinfo) as r:
        headers = r.json() if await r.aread() else {}
    assert r.status_code == 200
    assert "authorization" not in headers
    assert headers["host"] == url.removeprefix("http://")


async def test_at_most_three_redirects_are_followed(host: tuple[str, Counter[str]]) -> None:
    url, received = host
    async with Fetcher(FetchPolicy(LOCAL)) as fetch:
        async with fetch.stream("GET", f"{url}/hops/3") as r:
            assert (r.status_code, await r.aread()) == (200, b"arrived")
        assert received["hops"] == 4
        with pytest.raises(httpx.TooManyRedirects):
            await fetch.send("GET", f"{url}/hops/4")
        assert received["hops"] == 8  # the fourth redirect is not followed
        with pytest.raises(httpx.TooManyRedirects):
            await fetch.send("GET", f"{url}/loop")
    assert received["loop"] == 4


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "its host is a link-local address"),
        ("http://[::1]:{port}/echo", "its host is a loopback address"),
        ("http://10.0.0.1/", "its host is a private address"),
        ("gopher://127.0.0.1:{port}/", "only http and https URLs are fetched"),
    ],
)
async def test_a_redirect_into_a_forbidden_address_is_refused(
    host: tuple[str, Counter[str]], target: str, reason: str
) -> None:
    url, received = host
    port = url.rsplit(":", 1)[1]
    location = target.format(port=port)
    assert await refusal(f"{url}/to?url={location}", FetchPolicy(LOCAL)) == reason
    assert received["to"] == 1
    assert received["echo"] == 0


async def test_the_byte_budget_cuts_a_large_answer_off(host: tuple[str, Counter[str]]) -> None:
    url, _ = host
    async with Fetcher(FetchPolicy(LOCAL, max_bytes=64 * 1024)) as fetch:
        async with fetch.stream("GET", f"{url}/big") as r:
            with pytest.raises(FetchTooLarge):
                await r.aread()
        assert 64 * 1024 < fetch.bytes_read < 64 * 1024 + 128 * 1024


async def test_the_deadline_is_total_even_when_every_read_is_quick() -> None:
    """One byte every 0.1 s never trips a 5 s read timeout; the 1 s deadline of the whole
    fetch does."""
    with DripServer(every=0.1) as drip:
        policy = FetchPolicy(LOCAL, deadline_seconds=1.0, timeout_seconds=5.0)
        started = time.monotonic()
        async with Fetcher(policy) as fetch:
            with pytest.raises(FetchDeadlineExceeded):
                async with fetch.stream("GET", f"{drip.url}/a.jpg") as r:
                    await r.aread()
        took = time.monotonic() - started
    assert 0.9 < took < 1.6
    assert drip.requests == 1


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


async def test_https_is_checked_against_the_hosts_own_name(
    authority: trustme.CA, tmp_path: Path
) -> None:
    """The connection goes to the checked address, yet TLS is spoken with the URL's host:
    the certificate, valid for `localhost` only, verifies, and the server sees that Host."""
    pem = tmp_path / "localhost.pem"
    authority.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
    trusted = ssl.create_default_context()
    authority.configure_trust(trusted)
    received: Counter[str] = Counter()
    port = free_port()
    policy = FetchPolicy(parse_networks("127.0.0.0/8, ::1/128"), verify=trusted)
    with EmulatorServer(host_app(received), port, ssl_certfile=str(pem)):
        async with (
            Fetcher(policy) as fetch,
            fetch.stream("GET", f"https://localhost:{port}/echo") as r,
        ):
            headers = r.json() if await r.aread() else {}
        assert r.status_code == 200
        assert headers["host"] == f"localhost:{port}"
        # The same server by its address: the name TLS checks is the URL's, so this fails.
        async with Fetcher(policy) as fetch:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await fetch.send("GET", f"https://127.0.0.1:{port}/echo")
    assert received["echo"] == 1
