"""The pages added for teams' own tools, opened in Chromium as their people would: a
contributor's *Import from MLflow* form, an owner's model page with its retraining section,
and an owner's form for a new multi-model endpoint. Each answers, draws without a script
error, fits a phone screen, and is kept as a screenshot."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from portal.releases import services as releases
from tests.e2e.test_layout import LAYOUT
from tests.e2e.test_registry_pages import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_mlflow_retraining_and_multimodel_pages_open_and_fit(live_server, browser, shoot,
                                                                  users, project, clf):
    environment = releases.create_environment(users["owner"], project, name="production")
    slug = project.slug
    pages = {
        "mlflow-import": reverse("registry:mlflow-import", args=[slug, clf.name]),
        "model-with-retraining": clf.get_absolute_url(),
        "multimodel-new": reverse("releases:multimodel-create", args=[slug, environment.name]),
    }
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    sign_in(page, live_server.url, "olivia")
    problems = {}
    for name, path in pages.items():
        answer = page.goto(live_server.url + path)
        assert answer.status == 200, (name, answer.status)
        expect(page.locator("h1")).to_be_visible()
        shoot(page, f"new-{name}")
        fit = page.evaluate(LAYOUT)
        if fit["scrollWidth"] > fit["clientWidth"] or fit["wide"] or fit["outside"]:
            problems[name] = fit
    context.close()
    assert problems == {}
    assert errors == []
