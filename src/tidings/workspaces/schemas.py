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
    nextCursor: str | None = None


Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class InvitationCreate(RequestModel):
    email: Email
    role: RoleName


class InvitationOut(BaseModel):
    id: str
    email: str
    role: RoleName
    invitedBy: str | None
    createdAt: datetime
    expiresAt: datetime


class InvitationIssued(InvitationOut):
    """A new invitation. Its link is in this answer only, and only when no SMTP server is
    configured; otherwise it is e-mailed to the address and to no one else."""

    link: str | None = Field(description="The invitation link to pass on; null: e-mailed.")
    mailed: bool


class InvitationList(BaseModel):
    data: list[InvitationOut]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")


class InvitationAccept(RequestModel):
    token: Token
    password: Password | None = Field(
        default=None,
        description="A new account's password (8 characters at least); leave it out when "
        "accepting signed in as the invited address.",
    )


class Accepted(BaseModel):
    workspaceId: str
    userId: str
    email: str
    role: RoleName


class PasswordResetIssued(BaseModel):
    """A reset link for a member: in this answer only when no SMTP server is configured."""

    userId: str
    email: str
    expiresAt: datetime
    link: str | None = Field(description="The reset link to pass on; null: e-mailed.")
    mailed: bool


class PasswordResetUse(RequestModel):
    token: Token
    newPassword: Password


class PasswordChange(RequestModel):
    currentPassword: Password
    newPassword: Password


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
