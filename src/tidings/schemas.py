"""The base of request bodies, and the error bodies declared once for OpenAPI."""

import json
from collections.abc import Iterator
from typing import Any, get_args

from fastapi import Request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from tidings.errors import RequestShapeError

NUL = "\x00"
# What the OpenAPI says of the text the server refuses with NUL in it. A description, not a
# pattern on every string: generating data for hundreds of patterns made fuzzing ten times
# slower, and this one rule holds for all text alike.
NO_NUL = "No text in it may contain NUL (U+0000)."
NO_NUL_PARAMETER = "Must not contain NUL (U+0000)."
# Text that is stripped and must not be empty once stripped (a JSON Schema regex).
NOT_BLANK = "^[^\\x00]*[^\\s\\x00][^\\x00]*$"
STRIPPED = "Surrounding whitespace is removed."


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

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = super().__get_pydantic_json_schema__(core_schema, handler)
        document_text_rules(cls, handler.resolve_ref_schema(json_schema))
        return json_schema


def _string_schemas(schema: Any) -> Iterator[dict[str, Any]]:
    """The free-text string schemas in a JSON schema (not enums, constants or formats),
    through unions, arrays and maps (not $refs)."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not {"enum", "const", "format"} & schema.keys():
        yield schema
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            yield from _string_schemas(branch)
    for key in ("items", "additionalProperties"):
        yield from _string_schemas(schema.get(key))


def _stripped(field: FieldInfo) -> StringConstraints | None:
    """The constraints of a field whose text is stripped before it is checked, if it is."""

    def walk(items: Any) -> StringConstraints | None:
        for item in items:
            if isinstance(item, StringConstraints) and item.strip_whitespace:
                return item
            found = walk(get_args(item))
            if found is not None:
                return found
        return None

    return walk([*field.metadata, *get_args(field.annotation)])


def _say(schema: dict[str, Any], sentence: str) -> None:
    description = schema.get("description", "")
    if sentence not in description:
        schema["description"] = f"{description} {sentence}".strip()


def document_text_rules(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Say in a request body's JSON schema what the server does to its text: NUL is refused
    everywhere, and stripped fields say so (those that must not be blank by a pattern)."""
    _say(schema, NO_NUL)
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    for name, prop in schema.get("properties", {}).items():
        field = fields.get(name)
        stripped = _stripped(field) if field is not None else None
        if stripped is None:
            continue
        for text in _string_schemas(prop):
            if (stripped.min_length or 0) > 0:
                text.setdefault("pattern", NOT_BLANK)
            _say(text, STRIPPED)


def document_nul_in_url(openapi: dict[str, Any]) -> dict[str, Any]:
    """Say of every text path and query parameter that NUL is refused (refuse_nul_in_url)."""
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                texts = list(_string_schemas(parameter.get("schema")))
                if parameter.get("in") in ("path", "query") and texts:
                    _say(parameter, NO_NUL_PARAMETER)
    return openapi


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
    503: {"model": MessageBody, "description": "The database is unavailable; try again"},
}
