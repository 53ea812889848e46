"""One base error with a status code; the app renders every one as `{"message": ...}`."""

from typing import Any


class TidingsError(Exception):
    """A failure the client caused or must know about, rendered with its status code."""

    status_code = 400

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}

    def headers(self) -> dict[str, str]:
        return {}


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


class _RetryLater(TidingsError):
    """A refusal that passes: `Retry-After` says in how many seconds to try again."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManyRequests(_RetryLater):
    status_code = 429


class ServiceUnavailable(_RetryLater):
    status_code = 503


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
