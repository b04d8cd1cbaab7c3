"""The interactive API docs work under the portal's Content-Security-Policy (no inline
script: the split Swagger view serves its script from a URL)."""

import pytest
from playwright.sync_api import expect

from tests.e2e.test_registry_pages import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_swagger_ui_renders_every_operation_without_csp_violations(live_server, page, shoot,
                                                                    users):
    sign_in(page, live_server.url, "vera")
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .opblock-tag").first).to_be_visible(timeout=15000)
    expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/feedback/")
    shoot(page, "16-api-docs")
    assert page.console_errors == []
