"""Request and response bodies of /members and /workspace."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from tidings.schemas import RequestModel
from tidings.workspaces.service import check_timezone

RoleName = Literal["owner", "admin", "editor", "reviewer", "viewer"]
# A bad zone is a request-shape error (422), as it is on a post.
TimezoneName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(check_timezone),
]


class MemberOut(BaseModel):
    userId: str
    email: str
    role: RoleName
    timezone: str | None = Field(description="The person's own timezone; null: the workspace's.")
    joinedAt: datetime


class MemberList(BaseModel):
    data: list[MemberOut]


class MemberAdd(RequestModel):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]
    password: str = Field(
        min_length=1,
        max_length=1024,
        description="A new account's password; an existing account's own password must match.",
    )
    role: RoleName


class MemberUpdate(RequestModel):
    role: RoleName


class WorkspaceOut(BaseModel):
    id: str
    name: str
    timezone: str


class WorkspaceUpdate(RequestModel):
    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    timezone: TimezoneName | None = None
