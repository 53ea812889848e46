"""Settings refuse unsafe production defaults and keep an embedded secret key stable."""

import re
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from tidings.config import Settings
from tidings.db.engine import async_url


def test_production_mode_requires_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TIDINGS_SECRET_KEY"):
        Settings(mode="production", data_dir=tmp_path)


def test_production_mode_refuses_a_short_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(mode="production", data_dir=tmp_path, secret_key="short")


def test_embedded_mode_generates_one_secret_key_and_keeps_it(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).resolved_secret_key
    second = Settings(data_dir=tmp_path).resolved_secret_key
    assert first == second
    assert len(first) >= 32
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    url = Settings(data_dir=tmp_path).resolved_database_url
    assert url == f"sqlite:///{tmp_path.resolve() / 'tidings.db'}"


def test_plain_urls_get_async_drivers() -> None:
    assert async_url("postgresql://u@h:5432/db").drivername == "postgresql+asyncpg"
    assert async_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert async_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"


def test_unsupported_database_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        async_url("mysql://u@h/db")


def test_worker_lease_and_call_timeout_reach_the_engine(tmp_path: Path) -> None:
    from datetime import timedelta

    from tidings.publishing.worker import engine_config

    config = engine_config(
        Settings(data_dir=tmp_path, worker_lease_seconds=9, worker_call_timeout_seconds=4)
    )
    assert config.lease == timedelta(seconds=9)
    assert config.call_timeout == timedelta(seconds=4)


def test_a_lease_shorter_than_the_call_timeout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="LEASE_SECONDS must be longer"):
        Settings(data_dir=tmp_path, worker_lease_seconds=5, worker_call_timeout_seconds=5)


def test_fetch_allowed_networks_are_cidrs_and_open_only_what_they_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_FETCH_ALLOWED_NETWORKS", "127.0.0.0/8, ::1/128")
    policy = Settings(data_dir=tmp_path).fetch_policy
    assert [str(n) for n in policy.allowed_networks] == ["127.0.0.0/8", "::1/128"]
    assert (
        Settings(data_dir=tmp_path, fetch_allowed_networks="").fetch_policy.allowed_networks == ()
    )
    with pytest.raises(ValidationError, match=re.escape("127.0.0.0/33")):
        Settings(data_dir=tmp_path, fetch_allowed_networks="127.0.0.0/33")
    with pytest.raises(ValidationError, match="localhost"):
        Settings(data_dir=tmp_path, fetch_allowed_networks="10.0.0.0/8,localhost")


def test_a_short_metrics_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TIDINGS_METRICS_TOKEN must be at least 16"):
        Settings(data_dir=tmp_path, metrics_token="short")
    assert Settings(data_dir=tmp_path, metrics_token="x" * 16).metrics_token is not None


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
def test_embedded_mode_on_postgresql_refuses_a_generated_key(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}://postgres@127.0.0.1:5432/tidings"
    with pytest.raises(ValidationError, match="TIDINGS_SECRET_KEY must be set when") as refused:
        Settings(data_dir=tmp_path, database_url=url)
    assert "cannot open, on another machine," in str(refused.value)
    assert not (tmp_path / "secret_key").exists()
    with_key = Settings(data_dir=tmp_path, database_url=url, secret_key="k" * 32)
    assert with_key.resolved_secret_key == "k" * 32
    assert Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/x.db").secret_key is None


def test_secure_data_dir_tightens_a_loose_data_dir_and_key_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    settings.secure_data_dir()
    assert not data.exists()  # nothing to tighten yet: created private when needed
    settings.resolved_secret_key  # noqa: B018 - creates the data directory and the key file
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    data.chmod(0o755)
    (data / "secret_key").chmod(0o644)
    settings.secure_data_dir()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600


def test_production_mode_checks_every_key_of_the_ring(tmp_path: Path) -> None:
    long_key = "k" * 32
    with pytest.raises(ValidationError, match=r"at least 32 characters \(each key\)"):
        Settings(mode="production", data_dir=tmp_path, secret_key=f"{long_key},short")
    ring = Settings(mode="production", data_dir=tmp_path, secret_key=f"{long_key},\n{'o' * 40}")
    assert ring.resolved_secret_key == f"{long_key},\n{'o' * 40}"
