"""Browser tests: the real app (API, pages and its embedded worker) served on a free port
over each database, driven by a real headless Chromium (Debian's, through Playwright).

Each test may save screenshots (`shot`) under `artifacts/screenshots/`, kept by CI as what
the pages looked like."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import TEST_SECRET_KEY
from tests.emulators.server import EmulatorServer
from tidings.app import create_app
from tidings.config import Settings

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The whole of `tidings serve` (its worker too) on a free port; its base URL."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
        embedded_worker=True,
    )
    with EmulatorServer(create_app(settings)) as server:
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
