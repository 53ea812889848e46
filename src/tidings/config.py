"""Settings for a Tidings process, read from `TIDINGS_*` environment variables."""

import ipaddress
import os
import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from tidings.mail import Mailer
from tidings.fetch import FetchPolicy, parse_networks

SECRET_KEY_FILE = "secret_key"
MIN_SECRET_KEY_LENGTH = 32
MIN_METRICS_TOKEN_LENGTH = 16
#: host:port, an IPv6 host in brackets.
BIND_PATTERN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):\d{1,5}")
#: The data directory and the files in it are the owner's alone.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def split_keys(ring: str) -> list[str]:
    """The keys of a key ring, newest first: separated by commas or line breaks (spaces
    inside a key are kept, around one are not)."""
    return [key.strip() for key in ring.replace(",", "\n").splitlines() if key.strip()]


def make_private_dir(path: Path) -> None:
    """Create `path` readable by its owner only, or take away what others may do there."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(PRIVATE_DIR_MODE)


class Settings(BaseSettings):
    """Everything a process needs to know; one instance is built at start-up and passed down.

    `mode` decides how forgiving the settings are: `embedded` (the default, for
    `tidings serve` on one machine) generates a secret key and keeps it in the data
    directory; `production` refuses to start without an explicit `TIDINGS_SECRET_KEY`
    and sends cookies only over HTTPS.
    """

    # An invalid setting's error must not print the others (keys, the SMTP password).
    model_config = SettingsConfigDict(
        env_prefix="TIDINGS_", extra="ignore", hide_input_in_errors=True
    )

    mode: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Path(".tidings")
    database_url: str | None = Field(
        default=None,
        description="postgresql://… or sqlite:///…; SQLite in the data directory when unset.",
    )
    secret_key: SecretStr | None = None
    # A Bearer token that reads /metrics without a person or an API key (a scraper's).
    metrics_token: SecretStr | None = None
    # host:port where `tidings serve` and `tidings worker` also serve /metrics, without
    # credentials (a private address for a scraper).
    metrics_bind: str | None = None
    session_ttl_minutes: int = Field(default=12 * 60, ge=1)
    # Sign-in throttling (auth/throttle.py): failures allowed per email and per client
    # address, then a lock from the first backoff, doubling per failure up to the maximum.
    sign_in_free_attempts: int = Field(default=5, ge=1)
    sign_in_free_attempts_per_address: int = Field(default=20, ge=1)
    sign_in_first_backoff_seconds: float = Field(default=1, gt=0)
    sign_in_max_backoff_seconds: float = Field(default=15 * 60, gt=0)
    # Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: a
    # comma-separated list of addresses and CIDR networks ("*": any). None by default.
    trusted_proxies: str = ""
    # The signed-request clock window: server_time - x_date must be within [-skew, +max_age].
    signature_max_future_seconds: float = 5.0
    signature_max_age_seconds: float = 60.0
    sqlite_busy_timeout_ms: int = 30_000
    # A request that finds no free database connection within this is answered 503.
    database_pool_timeout_seconds: float = Field(default=10, gt=0)
    embedded_worker: bool = Field(
        default=True, description="Run a publishing worker inside `tidings serve`."
    )
    worker_concurrency: int = Field(default=64, ge=1, le=10_000)
    # Tasks claimed and prepared per transaction (bigger: faster bursts, longer write locks).
    worker_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Calls at once per platform and worker, e.g. '{"instagram": 4}' (unbounded if absent).
    platform_concurrency: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    missed_after_hours: float = Field(default=24, gt=0)
    # A claimed task whose worker stops answering is taken over after its lease runs out;
    # a platform call is abandoned (and its outcome looked up) after the call timeout.
    worker_lease_seconds: float = Field(default=120, gt=0)
    worker_call_timeout_seconds: float = Field(default=60, gt=0)
    # /health answers 503 past these.
    # Where each platform's API is: any server that speaks the documented protocol can
    # stand in (a local emulator, a rehearsal proxy).
    instagram_api_url: str = "https://graph.instagram.com"
    facebook_api_url: str = "https://graph.facebook.com"
    threads_api_url: str = "https://graph.threads.net"
    tiktok_api_url: str = "https://open.tiktokapis.com"
    graph_api_version: str = Field(default="v25.0", pattern=r"^v\d+\.\d+$")
    # Where people are sent to connect an account, and where the code is exchanged.
    instagram_oauth_url: str = "https://www.instagram.com/oauth/authorize"
    instagram_token_url: str = "https://api.instagram.com/oauth/access_token"
    # Facebook Login's dialog; unset: https://www.facebook.com/<graph_api_version>/dialog/oauth.
    # Its code is exchanged on the Facebook API (facebook_api_url), Threads' on threads_api_url.
    facebook_oauth_url: str | None = None
    threads_oauth_url: str = "https://threads.net/oauth/authorize"
    # TikTok's consent page (Login Kit); its code is exchanged on tiktok_api_url.
    tiktok_oauth_url: str = "https://www.tiktok.com/v2/auth/authorize/"
    # How this server is reached from a browser: OAuth redirects come back under it.
    public_url: str = "http://127.0.0.1:8000"
    platform_http_timeout_seconds: float = Field(default=30, gt=0)
    # Bytes per part when a video is uploaded to TikTok (FILE_UPLOAD): 5 to 64 MiB.
    tiktok_chunk_bytes: int = Field(
        default=16 * 1024 * 1024, ge=5 * 1024 * 1024, le=64 * 1024 * 1024
    )
    # Mail (invitations, password reset links): smtp://user:pass@host:587?from=… (see mail.py).
    smtp_url: SecretStr | None = None
    invitation_ttl_hours: float = Field(default=7 * 24, gt=0)
    password_reset_ttl_hours: float = Field(default=24, gt=0)
    health_max_lag_seconds: float = Field(default=60, gt=0)
    health_max_heartbeat_age_seconds: float = Field(default=30, gt=0)
    # A request body over this is refused (413) before it is read or parsed.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Adding or connecting one more channel past this is refused (409).
    max_channels_per_workspace: int = Field(default=200, ge=1)
    # Outbound fetches of URLs that users supply (media probes, video uploads; see
    # tidings.fetch). Networks opened beyond the public internet, on any port (comma-separated
    # CIDRs, e.g. 127.0.0.0/8 for a rehearsal's emulators); each fetch's total deadline and
    # byte budget; requests fetching at once per process (more are refused with 503); dry
    # runs per workspace and minute (more are refused with 429); and a dry run's own deadline.
    fetch_allowed_networks: str = ""
    fetch_deadline_seconds: float = Field(default=10, gt=0)
    fetch_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    fetch_max_concurrent: int = Field(default=16, ge=1)
    dry_runs_per_minute: int = Field(default=30, ge=1)
    dry_run_deadline_seconds: float = Field(default=20, gt=0)
    # /health gives up on the database after this (a full pool, a lock) and answers 503.
    health_timeout_seconds: float = Field(default=2, gt=0)

    @field_validator("fetch_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # a ValueError names the part that is not a CIDR
        return value

    @cached_property
    def fetch_policy(self) -> FetchPolicy:
        """How URLs that users supply are fetched (built once: it holds the TLS context)."""
        return FetchPolicy(
            allowed_networks=parse_networks(self.fetch_allowed_networks),
            deadline_seconds=self.fetch_deadline_seconds,
            max_bytes=self.fetch_max_bytes,
        )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> "Settings":
        if self.mode == "production":
            keys = split_keys(self.secret_key.get_secret_value()) if self.secret_key else []
            if not keys or min(len(key) for key in keys) < MIN_SECRET_KEY_LENGTH:
                raise ValueError(
                    "TIDINGS_SECRET_KEY must be set to at least "
                    f"{MIN_SECRET_KEY_LENGTH} characters (each key) in production mode"
                )
        return self

    @model_validator(mode="after")
    def _smtp_url_is_usable(self) -> "Settings":
        from tidings.mail import Mailer

        if self.smtp_url is not None:
            Mailer.from_url(self.smtp_url.get_secret_value())
        return self

    @property
    def mailer(self) -> "Mailer | None":
        """Where mail goes; None when `TIDINGS_SMTP_URL` is unset (links are shown instead)."""
        from tidings.mail import mailer_for

        return mailer_for(self.smtp_url.get_secret_value() if self.smtp_url else None)

    @model_validator(mode="after")
    def _metrics_token_is_long_enough(self) -> "Settings":
        token = self.metrics_token.get_secret_value() if self.metrics_token else None
        if token is not None and len(token) < MIN_METRICS_TOKEN_LENGTH:
            raise ValueError(
                f"TIDINGS_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters"
            )
        return self

    @field_validator("metrics_bind")
    @classmethod
    def _bind_is_host_and_port(cls, value: str | None) -> str | None:
        if value is not None and not BIND_PATTERN.fullmatch(value):
            raise ValueError(f"expected host:port (say 127.0.0.1:9100), got {value!r}")
        return value

    @model_validator(mode="after")
    def _shared_database_needs_a_shared_key(self) -> "Settings":
        # A key generated into this data directory is unknown to the processes on other
        # machines that share the database: they could not open the secrets stored there.
        backend = (self.database_url or "").split(":", 1)[0].split("+", 1)[0]
        if backend in ("postgresql", "postgres") and self.secret_key is None:
            raise ValueError(
                "TIDINGS_SECRET_KEY must be set when TIDINGS_DATABASE_URL is PostgreSQL: "
                "a key generated into one data directory cannot open, on another machine, "
                "the secrets stored in the shared database"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_call(self) -> "Settings":
        if self.worker_lease_seconds <= self.worker_call_timeout_seconds:
            raise ValueError(
                "TIDINGS_WORKER_LEASE_SECONDS must be longer than "
                "TIDINGS_WORKER_CALL_TIMEOUT_SECONDS, or a slow call would lose its lease"
            )
        return self

    @model_validator(mode="after")
    def _proxies_are_addresses(self) -> "Settings":
        for item in self.trusted_proxy_list:
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"TIDINGS_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR network"
                ) from None
        return self

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [item.strip() for item in self.trusted_proxies.split(",") if item.strip()]

    @property
    def resolved_database_url(self) -> str:
        """The configured database URL, or SQLite inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tidings.db').resolve()}"

    @property
    def resolved_facebook_oauth_url(self) -> str:
        """Where people are sent to connect Facebook Pages (and Instagram through them)."""
        return (
            self.facebook_oauth_url
            or f"https://www.facebook.com/{self.graph_api_version}/dialog/oauth"
        )

    @property
    def secure_cookies(self) -> bool:
        return self.mode == "production"

    @property
    def secret_key_file(self) -> Path:
        """The key ring kept in the data directory when `TIDINGS_SECRET_KEY` is unset."""
        return self.data_dir / SECRET_KEY_FILE

    @cached_property
    def resolved_secret_key(self) -> str:
        """The key ring that encrypts secrets at rest (see `split_keys`; the first key seals,
        every key opens); generated once and kept in the data directory in embedded mode."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.secret_key_file
        if path.exists():
            return path.read_text().strip()
        make_private_dir(self.data_dir)
        key = secrets.token_urlsafe(48)
        # O_EXCL: two processes starting at once must not each write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key

    def secure_data_dir(self) -> None:
        """Make the data directory (and the key ring in it) the owner's alone: tightened at
        every start, whatever an older release or a copy left."""
        if not self.data_dir.is_dir():
            return  # created private when first needed (the key ring, SQLite's database)
        make_private_dir(self.data_dir)
        ring = self.secret_key_file
        if ring.exists() and ring.stat().st_mode & 0o077:
            ring.chmod(PRIVATE_FILE_MODE)
