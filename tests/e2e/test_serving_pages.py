"""The model and version pages' "Serving now" in Chromium: a canary held at 50 % on a real
model server, as its backend observes it."""

import pytest
from playwright.sync_api import expect

from tests.e2e.test_registry_pages import sign_in
from tests.integration.test_deployments import world  # noqa: F401 - the canary's fixture
from tests.integration.test_serving_now import MODEL_PAGE, canary  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_model_and_version_pages_show_what_serves_now(live_server, page, shoot,
                                                          canary):  # noqa: F811
    v1, v2 = canary["v1"], canary["v2"]
    sign_in(page, live_server.url, canary["users"]["contributor"].username)
    page.goto(live_server.url + MODEL_PAGE)
    row = page.locator("#serving tbody tr", has_text="production")
    expect(row).to_contain_text(f"v{v1.number} 50 %")
    expect(row).to_contain_text(f"v{v2.number} 50 %")
    expect(row).to_contain_text(canary["url"])
    expect(row.locator(".badge")).to_have_text("ready")
    expect(row).to_contain_text(f"rollout of v{v2.number} under way")
    shoot(page, "serving-model-page")

    row.locator(f"a:text-is('v{v2.number}')").click()
    expect(page.locator("h1")).to_contain_text(f"v{v2.number}")
    serving = page.locator("#serving tbody tr", has_text="production")
    expect(serving).to_contain_text("this version 50 %")
    expect(serving).to_contain_text(canary["url"])
    shoot(page, "serving-version-page")
    assert page.console_errors == []
