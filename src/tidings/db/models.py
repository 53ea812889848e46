"""Every table, imported in one place so Alembic and tests see the whole schema."""

from tidings.auth.models import ApiKey, SignInFailure, UsedSignature, User, UserSession
from tidings.channels.models import Channel
from tidings.db.base import Base
from tidings.publishing.models import PublishAttempt, Task, WorkerHeartbeat
from tidings.sandbox.models import SandboxCall, SandboxPost
from tidings.scheduled_posts.models import PostEvent, ScheduledPost, Target
from tidings.workspaces.models import Invitation, Membership, PasswordReset, Workspace

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "Channel",
    "Invitation",
    "Membership",
    "PasswordReset",
    "PostEvent",
    "PublishAttempt",
    "SandboxCall",
    "SandboxPost",
    "ScheduledPost",
    "SignInFailure",
    "Target",
    "Task",
    "UsedSignature",
    "User",
    "UserSession",
    "WorkerHeartbeat",
    "Workspace",
    "metadata",
]
