"""Reading a video's length over real HTTP: a few Range requests for a 50 MB file whose
movie box is first or last; a server that ignores Range is read as a stream and left once
the limit is reached."""

from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.conftest import LOCAL_NETWORKS
from tests.emulators.server import EmulatorServer
from tests.scheduled_posts.videos import MB, VirtualFile, media_host, mp4_file, webm
from tidings.fetch import Fetcher, FetchPolicy, parse_networks
from tidings.scheduled_posts.duration import CHUNK
from tidings.scheduled_posts.media_check import MAX_READ_BYTES, RangeReader, video_length

FILES = {
    "first.mp4": ("video/mp4", mp4_file(42, moov_first=True, media=50 * MB)),
    "last.mp4": ("video/mp4", mp4_file(95, moov_first=False, media=50 * MB)),
    "clip.webm": ("video/webm", VirtualFile(webm(61.5))),
    "small-last.mp4": ("video/mp4", mp4_file(7, moov_first=False, media=1 * MB)),
}


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[str, Counter[str]]]:
    app, sent = media_host(FILES)
    with EmulatorServer(app) as server:
        yield server.url, sent


@pytest.fixture
async def http() -> AsyncIterator[Fetcher]:
    # The fetcher's own deadline and budget are not what these tests measure: the reader's are.
    policy = FetchPolicy(parse_networks(LOCAL_NETWORKS), deadline_seconds=None, max_bytes=None)
    async with Fetcher(policy) as fetch:
        yield fetch


async def measured(
    http: Fetcher, host: tuple[str, Counter[str]], path: str
) -> tuple[float | None, RangeReader, int]:
    """The length read from `path`, the reader (what it received) and the bytes the server
    sent for it meanwhile."""
    url, sent = host
    name = path.rpartition("/")[2]
    before = sent[name]
    reader = RangeReader(http, f"{url}/{path}")
    seconds = await video_length(http, reader.url, reader=reader)
    return seconds, reader, sent[name] - before


async def test_a_movie_box_at_the_start_takes_one_small_request(
    http: Fetcher, host: tuple[str, Counter[str]]
) -> None:
    seconds, reader, sent = await measured(http, host, "first.mp4")
    assert seconds == 42.0
    assert (reader.requests, reader.bytes_read, sent) == (1, CHUNK, CHUNK)


async def test_a_movie_box_after_50_mb_of_media_is_reached_by_its_box_headers(
    http: Fetcher, host: tuple[str, Counter[str]]
) -> None:
    seconds, reader, sent = await measured(http, host, "last.mp4")
    assert seconds == 95.0
    # The ftyp and mdat headers in the first read; then the moov header and its mvhd.
    assert reader.requests == 2
    assert sent == reader.bytes_read == 2 * CHUNK


async def test_webm_info_is_read_from_the_start(
    http: Fetcher, host: tuple[str, Counter[str]]
) -> None:
    seconds, reader, sent = await measured(http, host, "clip.webm")
    assert seconds == 61.5
    assert reader.requests <= 4
    assert sent < 1024


async def test_a_server_ignoring_range_is_read_as_a_stream_as_far_as_needed(
    http: Fetcher, host: tuple[str, Counter[str]]
) -> None:
    seconds, reader, _ = await measured(http, host, "norange/first.mp4")
    assert seconds == 42.0
    assert reader.requests == 1
    assert reader.bytes_read <= 64 * 1024 + CHUNK  # one chunk of the stream, at most
    seconds, reader, _ = await measured(http, host, "norange/small-last.mp4")
    assert seconds == 7.0
    assert reader.requests == 1  # the one answer, read past the media to the movie box


async def test_a_server_ignoring_range_is_left_at_the_limit(
    http: Fetcher, host: tuple[str, Counter[str]]
) -> None:
    seconds, reader, _ = await measured(http, host, "norange/last.mp4")
    assert seconds is None  # unknown: no problem is made of it
    # Received, then the connection is closed (what the server goes on writing into a
    # closed socket is its own affair, so it is not counted here).
    assert MAX_READ_BYTES < reader.bytes_read <= MAX_READ_BYTES + 1 * MB


async def test_a_request_limit_and_a_missing_file(
    http: Fetcher, host: tuple[str, Counter[str]]
) -> None:
    url, _ = host
    reader = RangeReader(http, f"{url}/last.mp4", max_requests=1)
    assert await video_length(http, reader.url, reader=reader) is None
    assert reader.requests == 2  # the second was refused before it was sent
    assert await video_length(http, f"{url}/gone.mp4") is None
