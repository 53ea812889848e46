"""Request and response bodies of the /auth routes."""

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from tidings.auth.scopes import Scope, Signing
from tidings.schemas import RequestModel
from tidings.workspaces.service import check_timezone


class LoginRequest(RequestModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    workspaceId: str | None = Field(
        default=None,
        max_length=40,
        description="Which of the person's workspaces; their first by default.",
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
    signing: Signing = Field(description="What x-signature covers: the request, or the date.")
    scopes: list[Scope]


class ApiKeyList(BaseModel):
    data: list[ApiKeyOut]


class ApiKeyCreate(RequestModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    signing: Signing = Field(
        default=Signing.REQUEST,
        description="`request` (default): x-signature covers the method, path, query, "
        "x-date and body. `date`: the x-date alone, for Dynamo-compatible clients; each "
        "(x-date, x-signature) pair is then accepted once.",
    )
    scopes: list[Scope] | None = Field(
        default=None,
        min_length=1,
        description="What the key may do; default: posts:read, posts:write, channels:read, "
        "channels:write.",
    )


class ApiKeyIssued(BaseModel):
    """A new key. `secret` (and `token`, `<id>.<secret>`) are shown in this answer only."""

    id: str
    name: str
    createdAt: datetime
    signing: Signing
    scopes: list[Scope]
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
