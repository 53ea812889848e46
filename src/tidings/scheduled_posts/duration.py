"""How long a video is, read where its container says so, a few bytes at a time.

- MP4 and MOV (ISO BMFF): the top-level boxes are walked by their headers (8 bytes, or 16
  with a 64-bit size), each box skipped by its size, until `moov`; inside it, `mvhd` holds
  the timescale and the duration (version 0: 32-bit fields, version 1: 64-bit). The `moov`
  may come before the media data (`mdat`) or after it: either way only the headers on the
  way and the `mvhd` itself are read. A fragmented MP4 whose `mvhd` says 0 has its length in
  `mvex` → `mehd`.
- WebM and Matroska: after the EBML header, the Segment's children are walked (skipped by
  their sizes) until Info, whose Duration (a float, in TimestampScale nanoseconds) is the
  length. A Cluster (media) before Info, or an element of unknown size on the way, ends the
  walk: the length is then unknown rather than searched for in the media.

The walk does no I/O: `video_seconds` is a generator that yields each `Read` it needs and is
sent the bytes back (fewer than asked at the end of the file). Its reads never go back
(each offset is at least the previous one), so a server that ignores Range requests can be
read as one stream. `seconds_of` runs the walk over bytes in memory; the dry run runs it
over HTTP (see `media_check`).
"""

import struct
from collections.abc import Generator
from dataclasses import dataclass

#: Bytes asked for at a time: the first boxes' headers, or a `moov` header and its `mvhd`.
CHUNK = 128
#: Boxes (or Matroska elements) walked at one level before giving up.
MAX_STEPS = 64
#: The largest Matroska Info element read whole (it is usually well under 1 KB).
INFO_MAX = 16 * 1024

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_SEGMENT, _CLUSTER, _INFO = 0x18538067, 0x1F43B675, 0x1549A966
_TIMESTAMP_SCALE, _DURATION = 0x2AD7B1, 0x4489


@dataclass(frozen=True)
class Read:
    """`length` bytes wanted from `offset` of the file."""

    offset: int
    length: int


#: A walk: yields reads, is sent their bytes, returns the length in seconds (None: unknown).
Walk = Generator[Read, bytes, float | None]


@dataclass(frozen=True)
class Box:
    """An ISO BMFF box header: its type, its whole size (0: to the end of the file) and the
    header's own length."""

    type: bytes
    size: int
    header: int


def box_header(data: bytes) -> Box | None:
    """The box header at the start of `data`, or None if there is none."""
    if len(data) < 8:
        return None
    size, kind = struct.unpack(">I4s", data[:8])
    header = 8
    if size == 1:
        if len(data) < 16:
            return None
        (size,) = struct.unpack(">Q", data[8:16])
        header = 16
    if not all(0x20 <= c <= 0x7E for c in kind) or (size != 0 and size < header):
        return None
    return Box(kind, size, header)


def movie_header(body: bytes) -> tuple[int, int] | None:
    """(timescale, duration) from the body of an `mvhd` box; duration 0 when it is unknown."""
    if not body:
        return None
    version = body[0]
    if version == 0 and len(body) >= 20:
        timescale, duration = struct.unpack(">II", body[12:20])
        unknown = 0xFFFFFFFF
    elif version == 1 and len(body) >= 32:
        timescale, duration = struct.unpack(">IQ", body[20:32])
        unknown = 0xFFFFFFFFFFFFFFFF
    else:
        return None
    if timescale == 0:
        return None
    return timescale, 0 if duration == unknown else duration


class _Window:
    """The bytes of the last read, so that what they already hold is not asked for again."""

    def __init__(self, size: int | None) -> None:
        self.at, self.data, self.end = 0, b"", size

    def slice(self, offset: int, length: int) -> bytes | None:
        stop = offset + length
        if self.end is not None and offset >= self.end:
            return b""
        if self.at <= offset and (
            stop <= self.at + len(self.data)
            or (self.end is not None and self.at + len(self.data) >= self.end)
        ):
            return self.data[offset - self.at : stop - self.at]
        return None

    def take(self, offset: int, length: int) -> Generator[Read, bytes, bytes]:
        """`length` bytes from `offset` (fewer at the end of the file)."""
        found = self.slice(offset, length)
        if found is not None:
            return found
        read = Read(offset, max(length, CHUNK))
        data = yield read
        self.at, self.data = offset, data[: read.length]
        if len(data) < read.length:
            self.end = offset + len(data)
        return self.data[:length]


def video_seconds(size: int | None = None) -> Walk:
    """The length of a video in seconds, read from its container (MP4/MOV or WebM/MKV),
    or None when the container does not say; `size` is the file's, when it is known."""
    window = _Window(size)
    head = yield from window.take(0, CHUNK)
    if head.startswith(EBML_MAGIC):
        return (yield from _matroska(window))
    return (yield from _iso_bmff(window))


def seconds_of(data: bytes) -> float | None:
    """The length of the video whose whole file is `data`."""
    walk = video_seconds(len(data))
    try:
        read = next(walk)
        while True:
            read = walk.send(data[read.offset : read.offset + read.length])
    except StopIteration as done:
        seconds: float | None = done.value
        return seconds


def _iso_bmff(window: _Window) -> Walk:
    offset = 0
    for _ in range(MAX_STEPS):
        box = box_header((yield from window.take(offset, 16)))
        if box is None:
            return None
        if box.type == b"moov":
            end = offset + box.size if box.size else None
            return (yield from _movie(window, offset + box.header, end))
        if box.size == 0:
            return None  # the last box, and not the movie
        offset += box.size
    return None


def _movie(window: _Window, offset: int, end: int | None) -> Walk:
    timescale = 0
    for _ in range(MAX_STEPS):
        if end is not None and offset + 8 > end:
            return None
        box = box_header((yield from window.take(offset, 16)))
        if box is None or box.size == 0:
            return None
        if box.type == b"mvhd":
            found = movie_header((yield from window.take(offset + box.header, 32)))
            if found is None:
                return None
            timescale, duration = found
            if duration:
                return duration / timescale
        elif box.type == b"mvex" and timescale:
            return (
                yield from _fragments(window, offset + box.header, offset + box.size, timescale)
            )
        offset += box.size
    return None


def _fragments(window: _Window, offset: int, end: int, timescale: int) -> Walk:
    """A fragmented movie's length, from `mehd` in `mvex` (in the `mvhd`'s timescale)."""
    for _ in range(MAX_STEPS):
        if offset + 8 > end:
            return None
        box = box_header((yield from window.take(offset, 16)))
        if box is None or box.size == 0:
            return None
        if box.type == b"mehd":
            body = yield from window.take(offset + box.header, 12)
            if body[:1] == b"\x00" and len(body) >= 8:
                (duration,) = struct.unpack(">I", body[4:8])
            elif body[:1] == b"\x01" and len(body) >= 12:
                (duration,) = struct.unpack(">Q", body[4:12])
            else:
                return None
            return duration / timescale if duration else None
        offset += box.size
    return None


@dataclass(frozen=True)
class Element:
    """A Matroska (EBML) element header: its id, its body's size (None: unknown) and the
    header's own length."""

    id: int
    size: int | None
    header: int


def _vint(data: bytes, at: int, *, marker: bool) -> tuple[int, int, bool] | None:
    """The variable-length integer at `at`: (value, its length, all value bits set)."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None
    value = int.from_bytes(data[at : at + length], "big")
    bits = (1 << (7 * length)) - 1
    return (value if marker else value & bits), length, value & bits == bits


def element_header(data: bytes) -> Element | None:
    """The EBML element header at the start of `data`, or None if there is none."""
    ident = _vint(data, 0, marker=True)
    if ident is None or ident[1] > 4:
        return None
    size = _vint(data, ident[1], marker=False)
    if size is None:
        return None
    return Element(ident[0], None if size[2] else size[0], ident[1] + size[1])


def _matroska(window: _Window) -> Walk:
    ebml = element_header((yield from window.take(0, 16)))
    if ebml is None or ebml.size is None:
        return None
    offset = ebml.header + ebml.size
    segment = element_header((yield from window.take(offset, 16)))
    if segment is None or segment.id != _SEGMENT:
        return None
    offset += segment.header
    for _ in range(MAX_STEPS):
        child = element_header((yield from window.take(offset, 16)))
        if child is None or child.size is None or child.id == _CLUSTER:
            return None
        if child.id == _INFO:
            if child.size > INFO_MAX:
                return None
            return info_seconds((yield from window.take(offset + child.header, child.size)))
        offset += child.header + child.size
    return None


def info_seconds(body: bytes) -> float | None:
    """The Duration of a Matroska Info element's body, in seconds."""
    scale, duration, at = 1_000_000, None, 0
    while at < len(body):
        child = element_header(body[at : at + 12])
        if child is None or child.size is None or at + child.header + child.size > len(body):
            break
        value = body[at + child.header : at + child.header + child.size]
        if child.id == _TIMESTAMP_SCALE and 1 <= len(value) <= 8:
            scale = int.from_bytes(value, "big")
        elif child.id == _DURATION and len(value) in (4, 8):
            (duration,) = struct.unpack(">f" if len(value) == 4 else ">d", value)
        at += child.header + child.size
    if duration is None or not duration > 0 or duration == float("inf") or scale == 0:
        return None
    return float(duration) * scale / 1e9
