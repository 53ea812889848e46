"""Error bodies, declared once so that OpenAPI documents what the handlers send."""

from typing import Any

from pydantic import BaseModel


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
