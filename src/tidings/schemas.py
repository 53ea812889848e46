"""The base of request bodies, and the error bodies declared once for OpenAPI."""

from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, model_validator

from tidings.errors import RequestShapeError

NUL = "\x00"


def _find_nul(value: Any, path: list[str | int]) -> list[str | int] | None:
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                return [*path, key]
            found = _find_nul(item, [*path, key])
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_nul(item, [*path, index])
            if found is not None:
                return found
    return None


def _nul_error(path: list[str | int]) -> RequestShapeError:
    return RequestShapeError(
        "text must not contain the NUL character (U+0000)", path, "string_nul_character"
    )


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, and so is U+0000 anywhere in its text
    (PostgreSQL cannot store it, and no caption or name needs it)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        found = _find_nul(data, [])
        if found is not None:
            # Not a ValueError: it leaves validation as is, keeping its exact path.
            raise _nul_error(found)
        return data


async def refuse_nul_in_url(request: Request) -> None:
    """A dependency of every route: no NUL in path or query parameters either."""
    if NUL in request.url.path or NUL in str(request.path_params):
        raise _nul_error(["path"])
    for name, value in request.query_params.multi_items():
        if NUL in name or NUL in value:
            raise _nul_error(["query", name])


class MessageBody(BaseModel):
    message: str


class ShapeError(BaseModel):
    message: str
    path: list[str | int]
    type: str
    context: dict[str, Any]


class ShapeErrorBody(BaseModel):
    error: list[ShapeError]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": MessageBody, "description": "Refused, e.g. publish validation failed"},
    401: {"model": MessageBody, "description": "Not authenticated (the message says why)"},
    403: {"model": MessageBody, "description": "Not allowed for this actor"},
    404: {"model": MessageBody, "description": "Not found in this workspace"},
    409: {"model": MessageBody, "description": "Not allowed in the current status"},
    422: {"model": ShapeErrorBody, "description": "The request does not fit its schema"},
}
