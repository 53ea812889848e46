"""One base error with a status code; the app renders every one as `{"message": ...}`."""

from collections.abc import Mapping
from typing import Any


class TidingsError(Exception):
    """A failure the client caused or must know about, rendered with its status code."""

    status_code = 400
    #: Headers sent with the error's response (e.g. `Retry-After`).
    headers: Mapping[str, str] | None = None

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


class BadRequest(TidingsError):
    status_code = 400


class Unauthorized(TidingsError):
    status_code = 401


class Forbidden(TidingsError):
    status_code = 403


class NotFound(TidingsError):
    status_code = 404


class Conflict(TidingsError):
    status_code = 409


class TooManyRequests(TidingsError):
    """Refused for now: the client must wait `retry_after` seconds (sent as `Retry-After`)."""

    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class RequestShapeError(TidingsError):
    """A request that does not fit its schema, found after parsing (e.g. a bad cursor)."""

    status_code = 422

    def __init__(self, message: str, path: list[str | int], type_: str) -> None:
        super().__init__(message)
        self.path = path
        self.type = type_

    def body(self) -> dict[str, Any]:
        return {
            "error": [
                {"message": self.message, "path": self.path, "type": self.type, "context": {}}
            ]
        }
