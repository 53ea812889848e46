"""The guarded fetcher: the one way Tidings fetches a URL that a person or a client supplied
(media probes, a video's length, a video streamed to a platform; link previews and webhook
targets later). It exists so that nobody can make Tidings reach what only Tidings can reach.

- The host is resolved here (getaddrinfo, in the event loop's executor) and every address it
  resolves to is checked; the connection is then made to a checked address and to nothing
  else, so a DNS answer that changes between the check and the connection changes nothing.
  This is done in the connection layer itself (an httpcore network backend), so the URL, the
  `Host` header and the TLS server name (SNI, and the certificate check) stay the host's own.
- Refused: loopback, private, link-local, shared (CGNAT, 100.64/10), multicast, reserved
  and unspecified addresses, IPv6 unique-local and site-local ones, and IPv4 addresses
  wrapped in IPv6 (mapped, compatible, 6to4, NAT64) whose IPv4 is refused (Teredo's
  2001::/32 is refused whole, as Python's `ipaddress` counts it among the private ones). Odd
  spellings (`2130706433`, `127.1`, `0x7f.1`, `[::ffff:127.0.0.1]`) resolve to the address
  they mean and are refused as that address. Only ports 80 and 443, and only http and https.
  `allowed_networks` (the operator's, `TIDINGS_FETCH_ALLOWED_NETWORKS`) may open networks,
  on any port: a rehearsal's emulators on 127.0.0.1, say.
- No userinfo is sent (`https://user:pass@host/` is fetched as `https://host/`), no proxy
  from the environment is used, and redirects are followed by hand, at most
  `max_redirects`, each hop checked like the first.
- A fetch (all its requests, redirects and bytes together) has a total deadline, not a
  per-read timeout, and a byte budget: a server that drips one byte a second, or sends
  without end, is cut off.

A refused URL raises `ForbiddenAddress` before anything is sent to it, with a reason that
depends on the URL and the DNS alone, never on what listens there (an open port reads as a
closed one). Its errors are `httpx` errors, so code that already handles a failed request
handles these too. This module imports nothing from Tidings' domains.
"""

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from math import ceil
from types import TracebackType
from typing import Any

import httpcore
import httpx
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MB = 1024 * 1024
#: The ports a URL may name (on networks not explicitly allowed).
WEB_PORTS = frozenset({80, 443})
_SCHEMES = frozenset({"http", "https"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SHARED = ipaddress.ip_network("100.64.0.0/10")


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (`127.0.0.0/8, ::1/128`) as networks; ValueError if one is not."""
    return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip())


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, "IPv4-compatible"
        return ipaddress.IPv4Address(int(address))
    return None


def _kind(address: IPAddress) -> str | None:
    """What makes `address` one Tidings does not fetch from (None: a public address)."""
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (CGNAT)", isinstance(address, ipaddress.IPv4Address) and address in _SHARED),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
    )
    for name, found in checks:
        if found:
            return name
    return None if address.is_global else "non-public"


def _forms(address: IPAddress) -> list[IPAddress]:
    """The address, and the IPv4 address inside it if it is an IPv6 form of one."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return [address, inner]
    return [address]


def _opened(address: IPAddress, allowed: Iterable[IPNetwork]) -> bool:
    """Whether the operator opened a network that holds `address` (in either form)."""
    return any(a in net for a in _forms(address) for net in allowed if a.version == net.version)


def address_refusal(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why `address` is not fetched from (`a loopback address`), or None if it may be."""
    candidates = _forms(address)
    if _opened(address, allowed):
        return None
    # An IPv6 form of an IPv4 address is judged as the IPv4 address: it is what is reached.
    judged = candidates[-1]
    kind = _kind(judged)
    if kind is None:
        return None
    wrapped = " (inside an IPv6 address)" if judged is not address else ""
    article = "an" if kind[0] in "aeiou" else "a"
    return f"{article} {kind} address{wrapped}"


class ForbiddenAddress(httpx.RequestError):
    """A URL the fetcher does not fetch: its scheme, its port, or an address it resolves to.
    `reason` says which, in words that depend on the URL and the DNS only."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url} is not fetched: {reason}")
        self.url, self.reason = url, reason


class FetchTooLarge(httpx.RequestError):
    """A fetch received more bytes than its budget."""


class FetchDeadlineExceeded(httpx.TimeoutException):
    """A fetch took longer in all than its deadline."""


def check_url(url: httpx.URL) -> None:
    """Refuse, before any resolution, what a URL itself rules out: its scheme."""
    if url.scheme not in _SCHEMES:
        raise ForbiddenAddress(str(url), "only http and https URLs are fetched")


async def checked_addresses(
    host: str, port: int, allowed: Iterable[IPNetwork] = ()
) -> list[IPAddress]:
    """Every address `host` resolves to, if each may be reached on `port`; else
    `ForbiddenAddress` (any refused address refuses the host: it decides nothing which one a
    client would pick). A host that does not resolve is a connection error."""
    allowed = tuple(allowed)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"{host} cannot be resolved") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    where = f"[{host}]" if ":" in host else host
    for address in addresses:
        reason = address_refusal(address, allowed)
        if reason is not None:
            raise ForbiddenAddress(where, f"its host is {reason}")
    if port not in WEB_PORTS and not all(_opened(a, allowed) for a in addresses):
        raise ForbiddenAddress(f"{where}:{port}", f"port {port} is not fetched (only 80 and 443)")
    if not addresses:
        raise httpcore.ConnectError(f"{host} has no address")
    return addresses


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses checked here, whatever the DNS says a moment later."""

    def __init__(self, allowed: tuple[IPNetwork, ...]) -> None:
        self._allowed = allowed
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await checked_addresses(host, port, self._allowed)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenAddress(path, "sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@dataclass(frozen=True)
class FetchPolicy:
    """How a fetch is bounded: the networks opened beyond the public internet, its total
    deadline and byte budget (None: unbounded, for a caller that bounds it otherwise), the
    redirects followed, and the timeout of each connect and read within the deadline."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    deadline_seconds: float | None = 10.0
    max_bytes: int | None = 8 * MB
    max_redirects: int = 3
    timeout_seconds: float = 5.0
    #: The CAs trusted for HTTPS: the system's (certifi), or a test's own.
    verify: ssl.SSLContext | bool = field(default=True, compare=False)

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        # Built once: loading the CA bundle for each fetch would cost more than the fetch.
        if isinstance(self.verify, ssl.SSLContext):
            return self.verify
        return httpx.create_ssl_context(verify=self.verify)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport over the checking backend (no retries: a refusal is final)."""

    def __init__(self, policy: FetchPolicy) -> None:
        super().__init__(verify=policy.ssl_context, retries=0, trust_env=False)
        # httpx builds its connection pool without a way to choose the network backend;
        # the pool is replaced whole, with the settings httpx itself would give it.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=policy.ssl_context,
            max_connections=4,
            max_keepalive_connections=4,
            network_backend=_CheckedBackend(policy.allowed_networks),
            retries=0,
        )


class Fetcher:
    """One fetch of a supplied URL: its requests (a HEAD, a few ranged GETs, their
    redirects) share one deadline and one byte budget, both running from `__aenter__`.

    Use as `async with Fetcher(policy) as fetch:`, then `fetch.stream(...)` or `send`.
    """

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.deadline_seconds, self.max_bytes = policy.deadline_seconds, policy.max_bytes
        self.bytes_read = 0
        self.requests = 0
        self._deadline: float | None = None
        self._client = httpx.AsyncClient(
            transport=_GuardedTransport(policy),
            timeout=policy.timeout_seconds,
            follow_redirects=False,
            trust_env=False,
        )

    async def __aenter__(self) -> "Fetcher":
        if self.deadline_seconds is not None:
            self._deadline = asyncio.get_running_loop().time() + self.deadline_seconds
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    @asynccontextmanager
    async def _in_time(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout_at(self._deadline):
                yield
        except TimeoutError as exc:
            raise FetchDeadlineExceeded(
                f"no complete answer within {self.deadline_seconds:g} s"
            ) from exc

    async def send(
        self, method: str, url: str | httpx.URL, *, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """The answer to `method url` after at most `max_redirects` redirects, its body not
        yet read (read it through the response: the budget and the deadline hold there too;
        close it when done)."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:  # (not an httpx.HTTPError: callers would miss it)
            raise ForbiddenAddress(str(url)[:200], f"it is not a valid URL ({exc})") from exc
        for _ in range(self.policy.max_redirects + 1):
            check_url(target)
            # No userinfo: httpx would send it as Basic auth to whoever the host is.
            target = target.copy_with(userinfo=b"")
            request = self._client.build_request(method, target, headers=headers)
            self.requests += 1
            async with self._in_time():
                response = await self._client.send(request, stream=True)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or location is None:
                response.stream = _Bounded(response.stream, self)
                return response
            await response.aclose()
            try:
                target = response.url.join(location)
            except httpx.InvalidURL as exc:
                raise httpx.RemoteProtocolError(
                    f"a redirect to an invalid URL: {location[:200]}"
                ) from exc
            if response.status_code == 303 and method != "HEAD":
                method = "GET"
        raise httpx.TooManyRedirects(f"more than {self.policy.max_redirects} redirects")

    @asynccontextmanager
    async def stream(
        self, method: str, url: str | httpx.URL, *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """`send`, closing the response afterwards."""
        response = await self.send(method, url, headers=headers)
        try:
            yield response
        finally:
            await response.aclose()

    def _count(self, received: int) -> None:
        self.bytes_read += received
        if self.max_bytes is not None and self.bytes_read > self.max_bytes:
            raise FetchTooLarge(f"more than {self.max_bytes} bytes")


class _Bounded(httpx.AsyncByteStream):
    """A response body read within its fetch's deadline and budget."""

    def __init__(self, inner: httpx.AsyncByteStream | httpx.SyncByteStream, fetch: Fetcher):
        assert isinstance(inner, httpx.AsyncByteStream)
        self._inner, self._fetch = inner, fetch

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._inner.__aiter__()
        while True:
            try:
                async with self._fetch._in_time():
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            self._fetch._count(len(chunk))
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class Busy(Exception):
    """A bound on outbound work is reached; `retry_after` is in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message, self.retry_after = message, retry_after


class OverRate(Busy):
    """One key (a workspace) asked more often than its rate."""


class AtCapacity(Busy):
    """The process is fetching as much as it may at once."""


class FetchGate:
    """What keeps one tenant's fetching from stalling another's, in one process: at most
    `max_concurrent` requests fetching at once (more are refused at once, not queued), and
    at most `per_minute` of them per key (a workspace) in any minute."""

    def __init__(self, max_concurrent: int, per_minute: int) -> None:
        self.max_concurrent = max_concurrent
        self._slots = asyncio.Semaphore(max_concurrent)
        self._rate = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def admit(self, key: str) -> None:
        """Count one request for `key`; `OverRate` if it is over its rate."""
        if not self._limiter.hit(self._rate, key):
            reset = self._limiter.get_window_stats(self._rate, key).reset_time
            wait = max(1, ceil(reset - time.time()))
            raise OverRate(f"at most {self._rate.amount} per minute; try again in {wait} s", wait)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the concurrent slots while fetching; `AtCapacity` if none is free."""
        if self._slots.locked():
            raise AtCapacity(f"{self.max_concurrent} already in progress; try again soon", 1)
        async with self._slots:
            yield
