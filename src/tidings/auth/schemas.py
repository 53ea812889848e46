"""Request and response bodies of the /auth routes."""

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from tidings.schemas import RequestModel
from tidings.workspaces.service import check_timezone


class LoginRequest(RequestModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    workspaceId: str | None = Field(
        default=None, description="Which of the person's workspaces; their first by default."
    )


class LoginResponse(BaseModel):
    csrfToken: str = Field(description="Send as X-CSRF-Token on every write with this session.")
    userId: str
    workspaceId: str
    role: str


class WhoAmI(BaseModel):
    workspaceId: str
    actor: str
    method: str
    userId: str | None
    apiKeyId: str | None


class ApiKeyOut(BaseModel):
    """A key as listed: never its secret."""

    id: str
    name: str
    createdAt: datetime
    revokedAt: datetime | None


class ApiKeyList(BaseModel):
    data: list[ApiKeyOut]


class ApiKeyCreate(RequestModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ApiKeyIssued(BaseModel):
    """A new key. `secret` (and `token`, `<id>.<secret>`) are shown in this answer only."""

    id: str
    name: str
    createdAt: datetime
    secret: str
    token: str


def _own_timezone(name: str) -> str:
    return check_timezone(name) if name else name


# A bad zone is a request-shape error (422), as everywhere; empty follows the workspace's.
OwnTimezone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=64), AfterValidator(_own_timezone)
]


class OwnSettings(RequestModel):
    timezone: OwnTimezone | None = Field(
        description="Your own IANA timezone; null or empty: the workspace's."
    )


class OwnSettingsOut(BaseModel):
    userId: str
    timezone: str | None = Field(description="Your own timezone; null: the workspace's.")
    effectiveTimezone: str = Field(description="Where the web app shows you times.")
