"""A bound on request bodies, enforced before the app reads them.

Pure ASGI, so that it works the same for every route (JSON, forms, the web app) and for
bodies of any framing: a `Content-Length` over the limit is refused before a byte of the
body is read; a body without one (chunked) is counted as it streams in, and refused the
moment it passes the limit. Either way the app never sees more than the limit, and never
sees a partial body as if it were whole: it gets an error from `receive` instead, and
whatever it answers is replaced by the 413.
"""

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _message(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes"


class BodyTooLarge(HTTPException):
    """Raised to the app by `receive` once the body has passed the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_message(limit))


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered `413 {"message"}`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        overflowed = False
        app_started = False

        async def bounded_receive() -> Message:
            nonlocal received, overflowed
            if overflowed:
                raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflowed = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal app_started
            if overflowed and not app_started:
                # The 413 below is the answer; whatever the app made of the error is dropped.
                return
            if message["type"] == "http.response.start":
                app_started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not overflowed or app_started:
                raise
        if overflowed and not app_started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"message": _message(self.max_bytes)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is not read: the connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length; counting still applies
    return None
