"""The media checks of a dry run: each media URL is asked what it is (a HEAD request, or a
one-byte ranged GET where HEAD is refused) and its content type and size are held against
what each target's platform takes (`Platform.media_limits`).

Only the dry run fetches (`POST /scheduled-posts/validate`, `GET /scheduled-posts/{id}/
validation`): submitting and approving run the pure rules, without waiting on the network.
"""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from tidings.platforms import get_platform
from tidings.platforms.base import (
    MB,
    ChannelFacts,
    MediaItem,
    MediaLimit,
    PostContent,
    Problem,
    TargetContent,
)

TIMEOUT = 5.0


@dataclass(frozen=True)
class Probe:
    """What a media URL answered: its content type and size, or why it could not say."""

    url: str
    content_type: str | None = None
    size: int | None = None
    error: str | None = None


async def probe(http: httpx.AsyncClient, url: str) -> Probe:
    try:
        response = await http.head(url, follow_redirects=True)
        if response.status_code in (403, 405, 501):  # some hosts refuse HEAD
            response = await http.get(url, headers={"Range": "bytes=0-0"}, follow_redirects=True)
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


async def media_problems(
    post: PostContent,
    targets: Sequence[TargetContent],
    channels: Mapping[str, ChannelFacts],
    http: httpx.AsyncClient,
) -> list[Problem]:
    """Every media item fetched once; each unreachable one is one problem, and each one a
    target's platform would refuse is one problem for that target."""
    probes = await asyncio.gather(*(probe(http, item.url) for item in post.media))
    problems: list[Problem] = []
    for item, found in zip(post.media, probes, strict=True):
        if found.error is not None:
            problems.append(
                Problem(
                    None, "media.unreachable", f"media {item.url} cannot be fetched ({found.error})"
                )
            )
            continue
        for target in targets:
            channel = channels.get(target.channel_id)
            platform = get_platform(channel.platform) if channel is not None else None
            if platform is not None:
                problems.extend(
                    _against(item, found, target.channel_id, platform.name, platform.media_limits)
                )
    return problems


def _against(
    item: MediaItem, found: Probe, channel_id: str, platform: str, limits: Mapping[str, MediaLimit]
) -> list[Problem]:
    kind = (
        "video"
        if (found.content_type or "").startswith("video/") or item.looks_like_video
        else "image"
    )
    limit = limits.get(kind)
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
    return problems
