"""Request and response bodies of the /auth routes."""

from pydantic import BaseModel, Field

from tidings.schemas import RequestModel


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
