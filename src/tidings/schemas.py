"""The base of request bodies, and the error bodies declared once for OpenAPI."""

import json
from typing import Any

from fastapi import Request
from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

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


def _depth(value: Any, limit: int) -> int:
    """How deeply `value` nests (a scalar is 0, `{"a": 1}` is 1), counted to `limit` + 1."""
    if limit < 0 or not isinstance(value, dict | list):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(item, limit - 1) for item in items), default=0)


def bounded_json(max_bytes: int, max_depth: int) -> AfterValidator:
    """A bound on free-form JSON (platform options): its size as compact UTF-8 JSON, and
    how deeply it nests; past either, a 422 at the field's path that says which."""

    def check(value: Any) -> Any:
        if _depth(value, max_depth) > max_depth:
            raise PydanticCustomError(
                "json_too_deep",
                "must nest at most {max_depth} levels deep",
                {"max_depth": max_depth},
            )
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > max_bytes:
            raise PydanticCustomError(
                "json_too_large",
                "must be at most {max_bytes} bytes as JSON (this is {size})",
                {"max_bytes": max_bytes, "size": size},
            )
        return value

    return AfterValidator(check)


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
    413: {"model": MessageBody, "description": "The request body is over the size limit"},
    422: {"model": ShapeErrorBody, "description": "The request does not fit its schema"},
}
