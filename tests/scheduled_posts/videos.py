"""Synthetic video files for the length tests: MP4 boxes and Matroska elements built byte by
byte, files of any size whose media data is made up as it is read, and a web server that
serves them (honouring Range requests, or not) and counts what it sends."""

import re
import struct
from collections import Counter
from collections.abc import AsyncIterator, Sequence

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

MB = 1024 * 1024


def box(kind: bytes, payload: bytes = b"", *, large: bool = False) -> bytes:
    """An ISO BMFF box; `large`: with a 64-bit size."""
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mvhd(timescale: int, duration: int, *, version: int = 0) -> bytes:
    """A movie header box, every field after the duration as a real one has it."""
    if version == 0:
        times = struct.pack(">IIII", 0, 0, timescale, duration)
    else:
        times = struct.pack(">QQIQ", 0, 0, timescale, duration)
    rest = struct.pack(">IH10x", 0x00010000, 0x0100) + b"\0" * 36 + b"\0" * 24 + b"\0\0\0\2"
    return box(b"mvhd", bytes([version, 0, 0, 0]) + times + rest)


def moov(timescale: int, duration: int, *, version: int = 0, before: Sequence[bytes] = ()) -> bytes:
    """A movie box: `before` (other boxes), its header, and a track."""
    track = box(b"trak", box(b"tkhd", b"\0" * 84))
    return box(b"moov", b"".join(before) + mvhd(timescale, duration, version=version) + track)


FTYP = box(b"ftyp", b"isom\0\0\2\0isomiso2avc1mp41")


def ebml_size(n: int) -> bytes:
    """`n` as an EBML variable-length size, in the fewest bytes."""
    length = 1
    while n >= (1 << (7 * length)) - 1:
        length += 1
    return (n | (1 << (7 * length))).to_bytes(length, "big")


def element(ident: int, payload: bytes, *, unknown_size: bool = False) -> bytes:
    head = ident.to_bytes((ident.bit_length() + 7) // 8, "big")
    size = b"\x01\xff\xff\xff\xff\xff\xff\xff" if unknown_size else ebml_size(len(payload))
    return head + size + payload


def webm(seconds: float | None, *, scale: int = 1_000_000, cluster: int = 2_000) -> bytes:
    """A WebM file: EBML header, a Segment of unknown size with a SeekHead, a Void, Info
    (its Duration in `scale` nanoseconds, or none) and one Cluster of `cluster` bytes."""
    header = element(0x1A45DFA3, element(0x4282, b"webm") + element(0x4287, b"\x04"))
    info = element(0x2AD7B1, scale.to_bytes(3, "big"))
    if seconds is not None:
        info += element(0x4489, struct.pack(">d", seconds * 1e9 / scale))
    info += element(0x4D80, b"tidings-test")
    segment = (
        element(0x114D9B74, b"\0" * 40)
        + element(0xEC, b"\0" * 100)
        + element(0x1549A966, info)
        + element(0x1F43B675, b"\0" * cluster)
    )
    return header + element(0x18538067, segment, unknown_size=True)


class VirtualFile:
    """A file made of byte strings and runs of zeros (an int: that many), the zeros made
    only when they are read: a 50 MB video costs nothing until it is downloaded."""

    def __init__(self, *parts: bytes | int) -> None:
        self.parts = parts
        self.size = sum(p if isinstance(p, int) else len(p) for p in parts)

    def read(self, start: int, stop: int) -> bytes:
        out, at = [], 0
        for part in self.parts:
            length = part if isinstance(part, int) else len(part)
            lo, hi = max(start, at), min(stop, at + length)
            if lo < hi:
                out.append(b"\0" * (hi - lo) if isinstance(part, int) else part[lo - at : hi - at])
            at += length
        return b"".join(out)


def mp4_file(seconds: int, *, moov_first: bool, media: int, timescale: int = 1000) -> VirtualFile:
    """An MP4 of `media` bytes of media data, lasting `seconds`, its movie box first or last."""
    movie = moov(timescale, seconds * timescale)
    mdat_header = struct.pack(">I4s", 8 + media, b"mdat")
    if moov_first:
        return VirtualFile(FTYP, movie, mdat_header, media)
    return VirtualFile(FTYP, mdat_header, media, movie)


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def media_host(files: dict[str, tuple[str, VirtualFile]]) -> tuple[FastAPI, Counter[str]]:
    """Serves `files` (name -> content type, file): under `/` honouring Range requests,
    under `/norange/` always whole (200). The counter has, per name, the bytes sent and
    (under `<name>#requests`) the GET requests."""
    app, sent = FastAPI(), Counter[str]()

    @app.api_route("/{prefix}/{name}", methods=["GET", "HEAD"])
    async def whole(prefix: str, name: str, request: Request) -> Response:
        if prefix != "norange" or name not in files:
            return Response(status_code=404)
        return serve(name, request, ranges=False)

    @app.api_route("/{name}", methods=["GET", "HEAD"])
    async def ranged(name: str, request: Request) -> Response:
        if name not in files:
            return Response(status_code=404)
        return serve(name, request, ranges=True)

    def serve(name: str, request: Request, *, ranges: bool) -> Response:
        content_type, file = files[name]
        if request.method == "HEAD":
            headers = {"Content-Length": str(file.size), "Accept-Ranges": "bytes"}
            return Response(media_type=content_type, headers=headers)
        sent[f"{name}#requests"] += 1
        wanted = _RANGE.match(request.headers.get("range", "")) if ranges else None
        if wanted is None:
            return StreamingResponse(
                stream(name, file),
                media_type=content_type,
                headers={"Content-Length": str(file.size)},
            )
        start = int(wanted[1])
        stop = min(int(wanted[2]) + 1 if wanted[2] else file.size, file.size)
        if start >= file.size:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{file.size}"})
        body = file.read(start, stop)
        sent[name] += len(body)
        headers = {"Content-Range": f"bytes {start}-{stop - 1}/{file.size}"}
        return Response(body, status_code=206, media_type=content_type, headers=headers)

    async def stream(name: str, file: VirtualFile) -> AsyncIterator[bytes]:
        for start in range(0, file.size, 64 * 1024):
            chunk = file.read(start, min(start + 64 * 1024, file.size))
            sent[name] += len(chunk)
            yield chunk

    return app, sent
