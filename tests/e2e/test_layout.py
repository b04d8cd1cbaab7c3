"""The portal on a phone (390 px wide): every page fits the screen (no sideways scroll of the
page; a wide table or chart scrolls inside its own box), and the navigation stays inside
the header. Also: the API docs lead back to the portal, and the favicon browsers ask for is
there."""

import io

import pytest
from django.urls import reverse

from ops.artifacts import dump_skops
from portal.registry import services as registry
from portal.releases import services as releases
from tests.e2e.test_registry_pages import sign_in
from tests.integration.test_feedback import make_experiment
from tests.portal_fixtures import metadata

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# What overflows: the page's width beyond the viewport, and any header link or form
# outside the header's box.
LAYOUT = """() => {
  const doc = document.documentElement;
  const header = document.querySelector("header.topbar, header.portal-bar");
  const box = header ? header.getBoundingClientRect() : null;
  const outside = box ? [...header.querySelectorAll("a, button")]
    .filter(el => el.offsetParent !== null)
    .map(el => [el.textContent.trim(), el.getBoundingClientRect()])
    .filter(([, r]) => r.left < box.left - 0.5 || r.right > box.right + 0.5 ||
                       r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
    .map(([text]) => text) : ["(no header)"];
  const wide = [...document.querySelectorAll("body *")]
    .filter(el => el.getBoundingClientRect().right > doc.clientWidth + 0.5)
    .filter(el => !el.closest(".table, .chart, pre, .swagger-ui"))
    .slice(0, 5).map(el => el.tagName.toLowerCase() + "." + el.className);
  return {scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, outside, wide};
}"""


@pytest.fixture
def portal_pages(users, project, clf, cancer_frame, fitted_classifier):
    """Every kind of page, with data: an A/B test running, a dataset, a version with its
    explanation, a release request waiting."""
    experiment = make_experiment(users, project, clf)
    deployment = experiment.deployment
    csv = io.BytesIO(cancer_frame.to_csv(index=False).encode())
    dataset = registry.upload_dataset(users["contributor"], project, name="cancer-train",
                                      file=csv, filename="train.csv", target="target")
    registry.profile_dataset(dataset.pk)
    version = registry.register_version(users["contributor"], clf,
                                        io.BytesIO(dump_skops(fitted_classifier)),
                                        metadata(dataset=dataset.pk))
    version = registry.validate_version(version.pk)
    assert registry.explain_version(version.pk).status == "ready"
    request = releases.request_approval(users["contributor"], version, deployment.environment,
                                        strategy="direct", reason="Better on the newest rows.")
    slug, environment = project.slug, deployment.environment.name
    return [
        reverse("web:dashboard"), reverse("registry:projects"), project.get_absolute_url(),
        reverse("registry:project-settings", args=[slug]),
        reverse("registry:project-audit", args=[slug]),
        reverse("registry:models"), clf.get_absolute_url(), version.get_absolute_url(),
        dataset.get_absolute_url(), reverse("releases:queue"), request.get_absolute_url(),
        reverse("releases:rollouts"), deployment.get_absolute_url(),
        reverse("releases:environments", args=[slug]),
        reverse("releases:environment", args=[slug, environment]),
        f"/p/{slug}/environments/{environment}/monitoring/{deployment.endpoint}/",
        reverse("monitoring:alerts"), reverse("experiments:experiments"),
        experiment.get_absolute_url(), reverse("accounts:tokens"),
        reverse("accounts:invitations"), reverse("api-docs"),
    ]


def test_every_page_fits_a_phone_screen(live_server, browser, shoot, portal_pages):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    missing = []
    page.on("response", lambda r: r.status == 404 and missing.append(r.url))
    sign_in(page, live_server.url, "olivia")
    problems = {}
    try:
        for path in portal_pages:
            page.goto(live_server.url + path, wait_until="load")
            if path == reverse("api-docs"):
                page.wait_for_selector(".swagger-ui .opblock-tag", timeout=15000)
                back = page.locator("#back-to-portal")
                assert back.get_attribute("href") == "/"
            else:
                page.wait_for_timeout(300)  # charts draw, fragments arrive
            found = page.evaluate(LAYOUT)
            name = path.strip("/").replace("/", "_") or "dashboard"
            if found["scrollWidth"] > found["clientWidth"] or found["outside"] or found["wide"]:
                problems[path] = found
                shoot(page, f"layout-390-{name}")
        shoot(page, "layout-390-api-docs")
    finally:
        context.close()
    assert not problems, problems
    assert not missing, f"not found: {missing}"


@pytest.mark.django_db  # no transaction to flush: WhiteNoise answers before any view
def test_the_favicon_browsers_ask_for_is_there(client):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200
    assert b"".join(answer.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an icon file
