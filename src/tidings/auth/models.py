"""Users, web sessions and API keys."""

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tidings.auth.scopes import DEFAULT_SCOPES, Signing, ordered
from tidings.db.base import Base, TimestampMixin, str_enum
from tidings.timefmt import utcnow


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    # Where the person reads times in the web app (IANA); None: the workspace's timezone.
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)


class UserSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "user_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ApiKey(Base):
    """A workspace's key: the secret is kept encrypted, never in plain text."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    signing: Mapped[Signing] = mapped_column(str_enum(Signing, 16), default=Signing.REQUEST)
    # Scope values (`auth.scopes.Scope`), in the enum's order.
    scopes: Mapped[list[str]] = mapped_column(
        JSON, default=lambda: [s.value for s in ordered(DEFAULT_SCOPES)]
    )


class UsedSignature(Base):
    """A date-signed key's `x-signature` already accepted, kept until its `x-date` is out of
    the accepted window: inserting it again conflicts on the primary key, so a captured
    pair is refused as replayed, in every process sharing the database."""

    __tablename__ = "used_signatures"

    api_key_id: Mapped[str] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SignInFailure(Base):
    """Sign-in attempts counted against one email (`email:<addr>`) or one client address
    (`ip:<addr>`), and until when that key is refused. Kept in the database so that every
    process serving the same database throttles alike."""

    __tablename__ = "sign_in_failures"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int]
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    # The last counted attempt: a key quiet for long enough is forgotten (and swept).
    updated_at: Mapped[datetime] = mapped_column(index=True)
