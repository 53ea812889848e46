"""Reading a video's length from its container, without I/O: MP4/MOV boxes (the movie box
first or last, version 0 and 1 headers, 64-bit sizes, fragmented files) and WebM's Info."""

import struct

from hypothesis import given
from hypothesis import strategies as st

from tests.scheduled_posts.videos import FTYP, box, element, moov, mvhd, webm
from tidings.scheduled_posts.duration import (
    CHUNK,
    Read,
    box_header,
    element_header,
    movie_header,
    seconds_of,
    video_seconds,
)


def reads_of(data: bytes) -> tuple[float | None, list[Read]]:
    """The length `data` says, and every read the walk asked for on the way."""
    walk, reads = video_seconds(len(data)), []
    try:
        read = next(walk)
        while True:
            reads.append(read)
            read = walk.send(data[read.offset : read.offset + read.length])
    except StopIteration as done:
        return done.value, reads


def test_a_faststart_mp4_is_read_from_its_first_bytes() -> None:
    data = FTYP + moov(600, 600 * 42) + box(b"mdat", b"\0" * 100_000)
    seconds, reads = reads_of(data)
    assert seconds == 42.0
    assert all(r.offset < 200 for r in reads)


def test_the_movie_box_after_the_media_is_reached_by_skipping_it() -> None:
    data = FTYP + box(b"mdat", b"\0" * 100_000) + moov(90_000, 90_000 * 95 // 2)
    seconds, reads = reads_of(data)
    assert seconds == 47.5
    # ftyp header, mdat header, moov header (+ mvhd in the same read): nothing in between.
    # The first read holds the ftyp and mdat headers; the next one the moov header and mvhd.
    assert reads == [Read(0, CHUNK), Read(len(FTYP) + 100_008, CHUNK)]


def test_version_1_headers_and_64_bit_box_sizes() -> None:
    data = FTYP + box(b"mdat", b"\0" * 5000, large=True) + moov(1000, 2**33, version=1)
    assert seconds_of(data) == 2**33 / 1000


def test_the_movie_header_after_other_boxes_of_the_movie() -> None:
    data = FTYP + moov(1000, 7_250, before=[box(b"iods", b"\0" * 16), box(b"udta", b"x" * 300)])
    assert seconds_of(data) == 7.25


def test_a_fragmented_mp4_says_its_length_in_mehd() -> None:
    mehd = box(b"mehd", b"\0\0\0\0" + struct.pack(">I", 12_000))
    movie = box(b"moov", mvhd(1000, 0) + box(b"mvex", box(b"trex", b"\0" * 24) + mehd))
    assert seconds_of(FTYP + movie + box(b"moof", b"\0" * 50)) == 12.0
    assert seconds_of(FTYP + box(b"moov", mvhd(1000, 0))) is None


def test_unknown_lengths() -> None:
    assert seconds_of(FTYP + box(b"mdat", b"\0" * 1000)) is None  # no movie box
    assert seconds_of(FTYP + moov(0, 1000)) is None  # no timescale
    assert seconds_of(FTYP + moov(1000, 0xFFFFFFFF)) is None  # "unknown" in version 0
    assert seconds_of(b"\xff\xd8\xff\xe0" + b"\0" * 100) is None  # a JPEG
    assert seconds_of(b"") is None
    # A last box that runs to the end of the file (size 0), before any movie box.
    assert seconds_of(FTYP + struct.pack(">I4s", 0, b"mdat") + b"\0" * 100) is None


def test_webm_says_its_length_in_its_info() -> None:
    assert seconds_of(webm(12.5)) == 12.5
    assert seconds_of(webm(61.0, scale=1000)) == 61.0
    assert seconds_of(webm(None)) is None  # a live recording has no Duration


def test_webm_whose_info_comes_after_its_media_is_not_searched() -> None:
    ebml = element(0x1A45DFA3, element(0x4282, b"webm"))
    info = element(0x1549A966, element(0x4489, struct.pack(">d", 5000.0)))
    cluster = element(0x1F43B675, b"\0" * 10)
    assert seconds_of(ebml + element(0x18538067, info + cluster)) == 5.0
    assert seconds_of(ebml + element(0x18538067, cluster + info)) is None


def test_box_and_element_headers() -> None:
    assert box_header(b"\0\0\0\x08free") is not None
    assert box_header(b"\0\0\0\x04free") is None  # smaller than its own header
    assert box_header(b"\0\0\0\x01mdat\0\0\0\0") is None  # 64-bit size cut short
    assert movie_header(b"\x02" + b"\0" * 40) is None  # no version 2
    assert element_header(b"\x1a\x45\xdf\xa3\x84") is not None
    assert element_header(b"\0\0") is None


boxes = st.sampled_from([b"free", b"skip", b"wide", b"uuid", b"pdin"])


@given(
    timescale=st.integers(1, 2**32 - 1),
    duration=st.integers(1, 2**32 - 2),
    version=st.sampled_from([0, 1]),
    moov_first=st.booleans(),
    media=st.integers(0, 5000),
    large=st.booleans(),
    extra=st.lists(st.tuples(boxes, st.integers(0, 300)), max_size=4),
    inner=st.lists(st.tuples(st.sampled_from([b"iods", b"udta", b"meta"]), st.integers(0, 200))),
)
def test_any_mp4_layout_gives_the_length_its_movie_header_says(
    timescale: int,
    duration: int,
    version: int,
    moov_first: bool,
    media: int,
    large: bool,
    extra: list[tuple[bytes, int]],
    inner: list[tuple[bytes, int]],
) -> None:
    movie = moov(
        timescale, duration, version=version, before=[box(k, b"\0" * n) for k, n in inner[:3]]
    )
    mdat = box(b"mdat", b"\0" * media, large=large)
    others = b"".join(box(kind, b"\0" * size) for kind, size in extra)
    data = FTYP + others + (movie + mdat if moov_first else mdat + movie)
    seconds, reads = reads_of(data)
    assert seconds == duration / timescale
    # Reads never go back (a stream can serve them), and only headers are read.
    assert [r.offset for r in reads] == sorted(r.offset for r in reads)
    assert all(r.length == CHUNK for r in reads)
    assert len(reads) <= 3 + len(extra) + len(inner[:3]) + 2


@given(st.binary(max_size=400))
def test_any_bytes_give_a_length_or_none_and_never_fail(data: bytes) -> None:
    seconds = seconds_of(data)
    assert seconds is None or seconds >= 0


@given(st.binary(max_size=200))
def test_any_bytes_after_an_mp4_or_webm_start_never_fail(tail: bytes) -> None:
    for head in (FTYP + b"\0\0\0\x40moov", webm(3.0)[:40]):
        seconds_of(head + tail)


@given(st.floats(0.5, 36_000, allow_nan=False), st.sampled_from([1_000_000, 1000, 100_000]))
def test_any_webm_length(seconds: float, scale: int) -> None:
    found = seconds_of(webm(seconds, scale=scale))
    assert found is not None
    assert abs(found - seconds) < 1e-6 * seconds
