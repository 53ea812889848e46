"""The media checks of a dry run: each media URL is asked what it is (a HEAD request, or a
one-byte ranged GET where HEAD is refused) and its content type and size are held against
what each target's platform takes (`Platform.media_limits`).

A video's length is read where its container says so (see `duration`), when a target's
platform bounds it: a few small Range requests (box headers, then the movie header), never
the whole file. A server that ignores Range (200 with the whole body) is read as a stream,
up to `MAX_READ_BYTES`. A length that cannot be read (no Range and the movie header far in,
an unknown container, a network error) is unknown, and unknown is no problem: the platform
has the last word.

Only the dry run fetches (`POST /scheduled-posts/validate`, `GET /scheduled-posts/{id}/
validation`): submitting and approving run the pure rules, without waiting on the network.
Every URL is fetched through the guarded fetcher (`tidings.fetch`), one `Fetcher` per media
item (its probe and its length share one deadline and one byte budget); a URL it refuses is
`media.forbidden_address`, and is never asked anything.
"""

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import httpx

from tidings.fetch import Fetcher, FetchPolicy, ForbiddenAddress
from tidings.platforms import get_platform
from tidings.platforms.base import (
    MB,
    ChannelFacts,
    MediaItem,
    MediaLimit,
    PostContent,
    PostType,
    Problem,
    TargetContent,
)
from tidings.scheduled_posts.duration import Read, Walk, video_seconds

#: What reading one video's length may cost at most: bytes received, requests, seconds.
MAX_READ_BYTES = 4 * MB
MAX_READS = 16
READ_FOR = 10.0
#: Media items of one dry run fetched at once (a carousel has up to 35).
AT_ONCE = 6


@dataclass(frozen=True)
class Probe:
    """What a media URL answered: its content type and size (and a video's length in
    seconds, when asked for and found), or why it could not say."""

    url: str
    content_type: str | None = None
    size: int | None = None
    error: str | None = None
    seconds: float | None = None
    #: Why the guarded fetcher refused the URL (then nothing was sent to it).
    refused: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.refused is None


async def probe(fetch: Fetcher, url: str) -> Probe:
    """What `url` says it is, from the headers of a HEAD (or of a one-byte ranged GET where
    HEAD is refused); no body is read."""
    try:
        async with fetch.stream("HEAD", url) as response:
            pass
        if response.status_code in (403, 405, 501):  # some hosts refuse HEAD
            async with fetch.stream("GET", url, headers={"Range": "bytes=0-0"}) as response:
                pass
    except ForbiddenAddress as exc:
        return Probe(url, refused=exc.reason)
    except httpx.HTTPError as exc:
        return Probe(url, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
    if response.status_code >= 400:
        return Probe(url, error=f"HTTP {response.status_code}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower() or None
    size = None
    total = response.headers.get("content-range", "").rpartition("/")[2]
    length = total if total.isdigit() else response.headers.get("content-length", "")
    if response.status_code != 206 or total.isdigit():
        size = int(length) if length.isdigit() else None
    return Probe(url, content_type, size)


class Unreadable(Exception):
    """The bytes a length is read from cannot be had (within the limits)."""


class RangeReader:
    """Parts of a file on a web server, each fetched by its own Range request; if the
    server ignores Range and sends the whole file, that one answer is read on as a stream
    (the reads of a walk never go back). Counts what it receives, and stops at the limits."""

    def __init__(
        self,
        fetch: Fetcher,
        url: str,
        *,
        max_bytes: int = MAX_READ_BYTES,
        max_requests: int = MAX_READS,
    ) -> None:
        self.fetch, self.url = fetch, url
        self.max_bytes, self.max_requests = max_bytes, max_requests
        self.bytes_read = 0
        self.requests = 0
        self._whole: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._at, self._buffer, self._ended = 0, b"", False

    async def read(self, read: Read) -> bytes:
        if self._chunks is not None:
            return await self._from_stream(read)
        self.requests += 1
        if self.requests > self.max_requests:
            raise Unreadable(f"more than {self.max_requests} requests")
        last = read.offset + read.length - 1
        response = await self.fetch.send(
            "GET",
            self.url,
            headers={"Range": f"bytes={read.offset}-{last}", "Accept-Encoding": "identity"},
        )
        if response.status_code == 200:  # Range ignored: this is the whole file
            self._whole, self._chunks = response, response.aiter_bytes()
            return await self._from_stream(read)
        try:
            if response.status_code == 416:  # starts past the end of the file
                return b""
            first = response.headers.get("content-range", "").removeprefix("bytes ")
            if response.status_code != 206 or not first.startswith(f"{read.offset}-"):
                raise Unreadable(f"HTTP {response.status_code} to a Range request")
            data = b""
            async for chunk in response.aiter_bytes():
                self._count(len(chunk))
                data += chunk
                if len(data) >= read.length:
                    break
            return data[: read.length]
        finally:
            await response.aclose()

    async def _from_stream(self, read: Read) -> bytes:
        if read.offset < self._at:
            raise Unreadable("a read went back in a stream")
        stop = read.offset + read.length
        while self._at + len(self._buffer) < stop and not self._ended:
            assert self._chunks is not None
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._ended = True
                break
            self._count(len(chunk))
            self._buffer += chunk
            # Keep only what this read (and the ones after it) can still want.
            drop = min(len(self._buffer), read.offset - self._at)
            self._buffer, self._at = self._buffer[drop:], self._at + drop
        return self._buffer[read.offset - self._at : stop - self._at]

    def _count(self, received: int) -> None:
        self.bytes_read += received
        if self.bytes_read > self.max_bytes:
            raise Unreadable(f"more than {self.max_bytes} bytes needed")

    async def aclose(self) -> None:
        if self._whole is not None:
            await self._whole.aclose()


async def video_length(
    fetch: Fetcher, url: str, size: int | None = None, *, reader: RangeReader | None = None
) -> float | None:
    """The length in seconds of the video at `url` (of `size` bytes, when known), or None
    when it cannot be read within the limits."""
    reader = reader or RangeReader(fetch, url)
    walk = video_seconds(size)
    try:
        async with asyncio.timeout(READ_FOR):
            return await _run(walk, reader)
    except (Unreadable, httpx.HTTPError, TimeoutError):
        return None
    finally:
        walk.close()
        await reader.aclose()


async def _run(walk: Walk, reader: RangeReader) -> float | None:
    """Answer each read of `walk` from `reader`, until it says how long the video is."""
    read = next(walk)
    while True:
        data = await reader.read(read)
        try:
            read = walk.send(data)
        except StopIteration as done:
            seconds: float | None = done.value
            return seconds


def limit_for(
    limits: Mapping[str, MediaLimit], post_type: PostType, kind: str
) -> tuple[str, MediaLimit | None]:
    """The limit on `kind` (image, video) for a post of `post_type`: the one for that type
    (`reel:video`, `story:video`) if the platform has one, else its general one; with the
    key it was found under."""
    narrow = f"{post_type.value.lower()}:{kind}"
    if narrow in limits:
        return narrow, limits[narrow]
    return kind, limits.get(kind)


async def media_problems(
    post: PostContent,
    targets: Sequence[TargetContent],
    channels: Mapping[str, ChannelFacts],
    fetch: FetchPolicy,
) -> list[Problem]:
    """Every media item fetched once; each unreachable one is one problem, and each one a
    target's platform would refuse is one problem for that target."""
    platforms = []
    for target in targets:
        channel = channels.get(target.channel_id)
        platform = get_platform(channel.platform) if channel is not None else None
        if platform is not None:
            platforms.append((target.channel_id, platform.name, platform.media_limits))
    timed = any(
        _bounds_length(limit_for(limits, post.type, "video")[1]) for *_, limits in platforms
    )
    turns = asyncio.Semaphore(AT_ONCE)

    async def probed(item: MediaItem) -> Probe:
        async with turns:
            return await _probe(fetch, item, timed)

    probes = await asyncio.gather(*(probed(item) for item in post.media))
    problems: list[Problem] = []
    for item, found in zip(post.media, probes, strict=True):
        if found.refused is not None:
            problems.append(
                Problem(
                    None,
                    "media.forbidden_address",
                    f"media {item.url} is not fetched: {found.refused}",
                )
            )
            continue
        if found.error is not None:
            problems.append(
                Problem(
                    None, "media.unreachable", f"media {item.url} cannot be fetched ({found.error})"
                )
            )
            continue
        for channel_id, name, limits in platforms:
            problems.extend(_against(item, found, channel_id, name, limits, post.type))
    return problems


async def _probe(policy: FetchPolicy, item: MediaItem, timed: bool) -> Probe:
    """The probe of one media item, with a video's length when some platform bounds it."""
    async with Fetcher(policy) as fetch:
        found = await probe(fetch, item.url)
        if timed and found.ok and _kind(item, found) == "video":
            seconds = await video_length(fetch, item.url, found.size)
            found = Probe(found.url, found.content_type, found.size, seconds=seconds)
    return found


def _bounds_length(limit: MediaLimit | None) -> bool:
    return limit is not None and (limit.min_seconds is not None or limit.max_seconds is not None)


def _kind(item: MediaItem, found: Probe) -> str:
    video = (found.content_type or "").startswith("video/") or item.looks_like_video
    return "video" if video else "image"


def _against(
    item: MediaItem,
    found: Probe,
    channel_id: str,
    platform: str,
    limits: Mapping[str, MediaLimit],
    post_type: PostType = PostType.POST,
) -> list[Problem]:
    kind = _kind(item, found)
    key, limit = limit_for(limits, post_type, kind)
    if limit is None:
        return []
    problems = []
    types = limit.types
    if found.content_type is not None and found.content_type not in types:
        problems.append(
            Problem(
                channel_id,
                f"{platform}.media_content_type",
                f"channel {channel_id}: {item.url} is {found.content_type}; {platform} takes "
                f"{', '.join(sorted(types))}",
            )
        )
    max_bytes = limit.max_bytes
    if found.size is not None and max_bytes is not None and found.size > max_bytes:
        problems.append(
            Problem(
                channel_id,
                f"{platform}.media_too_large",
                f"channel {channel_id}: {item.url} is {found.size / MB:.1f} MB; {platform} takes "
                f"{kind}s up to {max_bytes / MB:.0f} MB",
            )
        )
    seconds, low, high = found.seconds, limit.min_seconds, limit.max_seconds
    if seconds is not None and (
        (low is not None and seconds < low) or (high is not None and seconds > high)
    ):
        what = {"reel:video": "reels", "story:video": "video stories"}.get(key, "videos")
        problems.append(
            Problem(
                channel_id,
                f"{platform}.video_duration",
                f"channel {channel_id}: {item.url} is {_duration(seconds)} long; {platform} "
                f"takes {what} {_bounds(low, high)}",
            )
        )
    return problems


def _duration(seconds: float) -> str:
    """A length as people read it: `2.5 s`, `90 s`, `15 min`, `16 min 40 s`."""
    if seconds < 120:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min" + (f" {rest} s" if rest else "")


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"of {_duration(low)} to {_duration(high)}"
    if high is not None:
        return f"of at most {_duration(high)}"
    return f"of at least {_duration(low or 0)}"
