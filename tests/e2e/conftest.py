"""Headless Chromium (Debian's package) driven by Playwright; no browser download. The
portal's fixtures (users, project, artifacts, Prometheus) come from the plugins
tests/conftest.py registers."""

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(os.environ.get("MODELGATE_TEST_OUTPUT", "test-output")) / "screenshots"

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# between page actions are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# Charts below the fold are drawn after the load event, one at a time (static/js/charts.js):
# on a busy machine the last can come later than Playwright's default 5 s.
expect.set_options(timeout=10_000)


@pytest.fixture(autouse=True)
def _artifacts_per_test(artifact_root):
    """Each test stores artifacts and runs model servers in its own folder (portal_fixtures)."""


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    yield page
    context.close()


@pytest.fixture
def shoot():
    OUTPUT.mkdir(parents=True, exist_ok=True)

    def save(page, name):
        path = OUTPUT / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    return save
