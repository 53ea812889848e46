"""The channel table."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, TimestampMixin, str_enum


class ChannelStatus(StrEnum):
    ACTIVE = "ACTIVE"
    NEEDS_RECONNECT = "NEEDS_RECONNECT"
    DISABLED = "DISABLED"


class Channel(TimestampMixin, Base):
    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[ChannelStatus] = mapped_column(
        str_enum(ChannelStatus), default=ChannelStatus.ACTIVE
    )
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The account's tokens, sealed with the secret key (see `platforms.store`); None for
    # platforms that need none (the sandbox).
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class PlatformApp(TimestampMixin, Base):
    """A workspace's own app on a platform (its OAuth client), so that an agency can use
    one app per client. The secret is sealed like the tokens."""

    __tablename__ = "platform_apps"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(200))
    client_secret: Mapped[bytes] = mapped_column(LargeBinary)


class OAuthState(Base):
    """An account connection under way: the `state` sent to the platform (only its SHA-256
    is kept), bound to the person's sign-in and workspace, used once, for ten minutes."""

    __tablename__ = "oauth_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    session_hash: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(32))
    code_verifier: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class PendingConnection(Base):
    """A consent that gave access to several accounts, waiting for the person to choose
    which become channels; bound to the sign-in and workspace like the state, used once,
    for ten minutes. Only the SHA-256 of its token (the `connectionId` the person chooses
    with) is kept. `accounts`: `[{"platform", "accountId", "name", "credentials"}]`, each
    account's credentials sealed (a Fernet token) as a channel's are."""

    __tablename__ = "pending_connections"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    session_hash: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(32))
    accounts: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
