"""Run Alembic migrations programmatically (`tidings migrate`, `tidings serve`, tests)."""

import contextlib
import os
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s",
    )
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` to `revision`; a SQLite database (its
    directory, file, WAL and shared memory) is made or kept readable by its owner only."""
    sqlite_file = _private_sqlite_file(database_url)
    command.upgrade(alembic_config(database_url), revision)
    if sqlite_file is not None:
        tighten_sqlite_files(sqlite_file)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


_PRIVATE_DIR = 0o700
_PRIVATE_FILE = 0o600
#: SQLite's companions of a database file in WAL mode. SQLite creates them with the mode of
#: the database file, so a private database keeps them private too.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _private_sqlite_file(database_url: str) -> Path | None:
    """Create a SQLite database's directory (0700) and its empty file (0600) if missing, so
    that no other user can read it at any moment; the file's path, or None if not SQLite."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database)
    path.parent.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
    # An empty file is an empty SQLite database; O_EXCL leaves an existing one alone.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE))
    return path


def tighten_sqlite_files(path: Path) -> None:
    """Take away what group and others may do with a SQLite database and its companions
    (a database made by an older release was 0644)."""
    for candidate in (path, *(path.with_name(path.name + s) for s in SQLITE_COMPANIONS)):
        try:
            if candidate.stat().st_mode & 0o077:
                candidate.chmod(_PRIVATE_FILE)
        except FileNotFoundError:
            continue
