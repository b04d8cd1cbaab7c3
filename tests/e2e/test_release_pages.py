"""An approver reviews a release request in the browser."""

import re

import pytest
from playwright.sync_api import expect

from portal.registry import services as registry
from portal.releases import services as releases
from tests.e2e.test_registry_pages import sign_in
from tests.portal_fixtures import FEATURES, metadata, random_classifier_bytes, settled

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def release_request(users, project, clf):
    import io

    versions = []
    for seed, auc in ((1, 0.96), (2, 0.97)):
        version = registry.register_version(
            users["contributor"], clf, io.BytesIO(random_classifier_bytes(seed)),
            metadata(metrics={"roc_auc": auc, "accuracy": 0.9}))
        versions.append(registry.validate_version(version.pk))
    registry.set_alias(users["approver"], clf, "champion", versions[0])
    production = releases.create_environment(
        users["owner"], project, name="production",
        gates=[{"metric": "roc_auc", "max_drop": 0.01}])
    return releases.request_approval(users["contributor"], versions[1], production,
                                     reason="Better on the new data.")


def test_approver_approves_a_release_with_a_comment(live_server, page, shoot, release_request):
    sign_in(page, live_server.url, "alice")
    page.click("nav >> text=Releases")
    expect(page.locator("#requests tbody tr")).to_have_count(1)
    page.click("#requests >> text=tumor-classifier v2")
    expect(page.locator("h1")).to_contain_text("to production")
    expect(page.locator("#gates")).to_contain_text("not worse")
    expect(page.locator("#deltas")).to_contain_text("roc_auc")
    shoot(page, "07-release-request")
    page.fill("textarea[name=comment]", "Gates pass and AUC improves; ship it.")
    page.click("button[value=approve]")
    expect(page.locator("h1 .badge")).to_have_text("Approved")
    expect(page.locator(".review")).to_contain_text("Gates pass and AUC improves")
    expect(page.locator("button[value=approve]")).to_have_count(0)
    shoot(page, "08-release-approved")
    # The first release of a model in an environment is deployed directly; it is promoting
    # until its model server serves it (what the rollout worker checks; here, the test).
    page.click("text=follow the rollout")
    expect(page.locator(".status-line .badge")).to_have_text(
        re.compile("Promoting|Succeeded"), timeout=30_000)
    from portal.releases.models import Deployment

    settled(Deployment.objects.get(request=release_request))
    expect(page.locator(".status-line .badge")).to_have_text("Succeeded", timeout=30_000)
    expect(page.locator("#events")).to_contain_text("first release")
    shoot(page, "09-rollout")
    assert page.console_errors == []


def test_requester_cannot_approve_their_own_release(live_server, page, release_request):
    sign_in(page, live_server.url, "carlos")
    page.goto(live_server.url + release_request.get_absolute_url())
    expect(page.locator("text=another approver must review it")).to_be_visible()
    expect(page.locator("button[value=approve]")).to_have_count(0)
    expect(page.locator("h1 .badge")).to_have_text(re.compile("Awaiting review"))


def test_approver_watches_a_canary_and_rolls_it_back(live_server, page, shoot, users,
                                                     release_request):
    # v1 serves production already (its first release went out directly).
    champion = release_request.champion
    first = releases.request_approval(users["contributor"], champion,
                                      release_request.environment, strategy="canary")
    releases.review(users["owner"], first, "approve", "baseline")
    from portal.releases.models import Deployment

    assert settled(Deployment.objects.get(request=first)).status == "succeeded"
    # The canary of v2 bakes at 25% for ten minutes: long enough to look at it.
    release_request.strategy_params = {"steps": [{"weight": 0.25, "bake_seconds": 600},
                                                 {"weight": 1.0, "bake_seconds": 60}]}
    release_request.save(update_fields=["strategy_params"])

    sign_in(page, live_server.url, "alice")
    page.goto(live_server.url + release_request.get_absolute_url())
    page.fill("textarea[name=comment]", "Canary it.")
    page.click("button[value=approve]")
    page.click("text=follow the rollout")
    expect(page.locator(".status-line .badge")).to_have_text("Progressing", timeout=30_000)
    expect(page.locator("#events")).to_contain_text("candidate 25%")
    expect(page.locator("[data-chart=traffic-chart]")).to_have_class(re.compile(r"\bdrawn\b"))
    shoot(page, "10-canary-progressing")

    # Promoting at once asks why too (opened, not sent: this rollout is rolled back).
    page.click("#promote-confirm summary")
    expect(page.locator("#promote-confirm textarea[name=comment]")).to_be_visible()
    page.click("#promote-confirm summary")
    page.click("summary:has-text('Roll back')")
    expect(page.locator("#rollback-comment")).to_be_visible()
    page.fill("#rollback-comment", "Error rate doubled at 25%.")
    shoot(page, "11-rollback-confirm")
    page.click("button:has-text('Yes, roll back now')")
    expect(page.locator(".status-line .badge")).to_have_text("Rolled back", timeout=30_000)
    expect(page.locator("#events")).to_contain_text("alice")
    expect(page.locator("#events tbody tr").first).to_contain_text("stable 100%")
    expect(page.locator("#events")).to_contain_text("Error rate doubled at 25%.")
    shoot(page, "12-rolled-back")
    from portal.audit.models import AuditEvent

    assert AuditEvent.objects.get(action="deployment.rollback").changes["comment"] == \
        "Error rate doubled at 25%."
    # The request says what became of it, not just "Approved".
    page.goto(live_server.url + release_request.get_absolute_url())
    expect(page.locator("#rollout-outcome")).to_have_text("Rolled back")
    expect(page.locator("#outcome-note")).to_contain_text("Error rate doubled at 25%.")
    shoot(page, "12b-request-rolled-back")
    assert page.console_errors == []


def test_approver_must_acknowledge_a_breaking_interface_change(live_server, page, shoot, users,
                                                               project, clf, task_queue):
    """The request page shows a breaking change in red with its differences; approving
    needs the acknowledgement ticked."""
    from portal.releases.models import Deployment
    from tests.integration.test_release_interfaces import NARROW, version_of

    task_queue.hold("workers.releases.start_deployment")  # this test stops at the approval
    production = releases.create_environment(users["owner"], project, name="production")
    serving = version_of(users, clf, FEATURES, 1)
    Deployment.objects.create(environment=production, model=clf, candidate=serving,
                              endpoint=clf.name, strategy="direct", spec={}, state={},
                              status="succeeded")
    narrow = version_of(users, clf, NARROW, 2)
    request = releases.request_approval(users["contributor"], narrow, production,
                                        strategy="direct", breaking_change=True,
                                        reason="The new intake form asks three questions.")

    sign_in(page, live_server.url, "alice")
    page.goto(live_server.url + request.get_absolute_url())
    banner = page.locator("#breaking-change")
    expect(banner).to_contain_text("Breaking interface change")
    expect(banner).to_contain_text("missing feature mean area (position 4)")
    assert banner.evaluate("e => getComputedStyle(e).color") == "rgb(127, 29, 29)"  # red
    shoot(page, "13-breaking-change")
    page.fill("textarea[name=comment]", "Callers moved to the three-question form.")
    page.click("button[value=approve]")
    expect(page.locator(".message.error")).to_contain_text("Acknowledge it")
    expect(page.locator("h1 .badge")).to_have_text(re.compile("Awaiting review"))
    page.fill("textarea[name=comment]", "Callers moved to the three-question form.")
    page.check("input[name=acknowledge_breaking_change]")
    page.click("button[value=approve]")
    expect(page.locator("h1 .badge")).to_have_text("Approved")
    assert page.console_errors == []
