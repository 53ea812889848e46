"""Browser tests: the real app (API, pages and its embedded worker) served on a free port
over each database, driven by a real headless Chromium (Debian's, through Playwright).

Each test may save screenshots (`shot`) under `artifacts/screenshots/`, kept by CI as what
the pages looked like."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import LOCAL_NETWORKS, TEST_SECRET_KEY, run_apart
from tests.emulators.server import EmulatorServer, free_port
from tidings.app import create_app
from tidings.auth import service as auth_service
from tidings.channels import service as channel_service
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.db.engine import Database
from tidings.workspaces import service as workspace_service
from tidings.workspaces.models import Role

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One Chromium for the browser tests, closed after them: Playwright's sync API keeps an
    event loop running in the main thread meanwhile, which the async tests cannot share."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def live_settings() -> dict[str, Any]:
    """Settings of the live app a test module wants on top of the defaults (say, where a
    platform's emulator is)."""
    return {}


@pytest.fixture
def live(database_url: str, tmp_path: Path, live_settings: dict[str, Any]) -> Iterator[str]:
    """The whole of `tidings serve` (its worker too) on a free port; its base URL, which is
    also its public URL (where OAuth consent pages send the browser back)."""
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
        embedded_worker=True,
        public_url=f"http://127.0.0.1:{port}",
        fetch_allowed_networks=LOCAL_NETWORKS,
        **live_settings,
    )
    with EmulatorServer(create_app(settings), port) as server:
        yield server.url


@pytest.fixture
def page(browser: Browser, live: str) -> Iterator[Page]:
    context = browser.new_context(base_url=live, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


def shot(page: Page, name: str, request: pytest.FixtureRequest) -> Path:
    """Save what the page looks like, named after the test (and its database)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    path = SHOTS / f"{test}-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Team:
    """A workspace set up behind the browser's back: one person per role (`email[role]`,
    all with `PASSWORD`), an API key (`token`) and a sandbox channel."""

    workspace_id: str
    email: dict[str, str]
    token: str
    channel_id: str


@pytest.fixture
def team(live: str, database_url: str) -> Team:
    """Acme (Europe/Paris), set up in the database the live app serves."""
    found: dict[str, Any] = {}

    async def build() -> None:
        db = Database.connect(database_url)
        now = datetime.now(UTC)
        try:
            async with db.transaction() as session:
                ws = await workspace_service.create_workspace(
                    session, "Acme", now, timezone="Europe/Paris"
                )
                emails = {}
                for role in Role:
                    email = f"{role.value}@acme.example.com"
                    await workspace_service.add_member(
                        session,
                        workspace_id=ws.id,
                        email=email,
                        password=PASSWORD,
                        role=role,
                        now=now,
                    )
                    emails[role.value] = email
                issued = await auth_service.create_api_key(
                    session, SecretBox(TEST_SECRET_KEY), ws.id, "ci", now
                )
                channel = await channel_service.add_channel(
                    session,
                    workspace_id=ws.id,
                    platform="sandbox",
                    name="Demo feed",
                    options={},
                    now=now,
                )
                found.update(
                    workspace_id=ws.id,
                    email=emails,
                    token=f"{issued.key.id}.{issued.secret}",
                    channel_id=channel.id,
                )
        finally:
            await db.dispose()

    run_apart(build)
    return Team(**found)


def sign_in(page: Page, team: Team, role: str = "owner") -> None:
    """Sign in through the form as the team's person with `role`."""
    page.goto("/app/signin")
    page.get_by_label("Email").fill(team.email[role])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/app(\?.*)?$"))
