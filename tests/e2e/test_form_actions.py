"""Actions that say a word (issue 16): a confirmation, with the reason kept, before what is
hard to take back; and mistakes that can be undone (an archived version is restored, a file
declared with the wrong schema is registered again)."""

import json
import re

import pytest
from playwright.sync_api import expect

from portal.audit.models import AuditEvent
from portal.registry import services
from portal.registry.models import ModelVersion
from tests.e2e import test_registry_pages
from tests.e2e.test_registry_pages import sign_in
from tests.portal_fixtures import FEATURES, random_classifier_bytes, schema

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
registry = test_registry_pages.registry  # the fixture: two ready versions and a dataset


def test_a_wrong_schema_burns_nothing_and_an_archive_can_be_undone(live_server, page, shoot,
                                                                   browser, registry, tmp_path):
    artifact = tmp_path / "model.skops"
    artifact.write_bytes(random_classifier_bytes(7))
    model_url = live_server.url + registry["model"].get_absolute_url()
    sign_in(page, live_server.url, "carlos")

    def upload(declared):
        page.goto(model_url + "versions/new/")
        page.set_input_files("input[name=artifact]", str(artifact))
        if declared:
            page.fill("textarea[name=input_schema]", json.dumps(schema(declared)))
        page.click("button:has-text('Upload version')")

    upload(list(reversed(FEATURES)))
    expect(page.locator("h1")).to_contain_text("tumor-classifier v3")
    page.reload()
    expect(page.locator("h1 .badge")).to_have_text("Invalid")
    expect(page.locator(".message.error")).to_contain_text(
        "different order: the model expects mean radius, mean texture")
    # The same file, the schema left to the portal: registered again (not "already
    # registered as v3"), with the names the artifact carries.
    page.goto(model_url + "versions/new/")
    expect(page.locator("select[name=schema_from] option")).to_have_count(3)
    expect(page.locator("select[name=dataset] option").first).to_have_text(
        "None: no training data recorded")
    upload(None)
    expect(page.locator("h1")).to_contain_text("tumor-classifier v4")
    expect(page.locator(".message.success")).to_contain_text("the worker reads it from the "
                                                              "artifact's feature names")
    page.reload()
    expect(page.locator("#schema-source")).to_contain_text(
        "from the artifact's feature names (feature_names_in_)")
    expect(page.locator("#schema-json")).to_contain_text('"name": "mean radius"')
    page.click("button:has-text('Copy JSON')")
    # The word shows for 2 s (a loaded machine can miss that); the state it leaves stays.
    expect(page.locator("button[data-copy]")).to_have_attribute("data-copy-state",
                                                                re.compile("copied|failed"))
    shoot(page, "15-version-schema-filled")

    page.goto(model_url + "v/3/")
    page.click("#version-archive-action summary")
    expect(page.locator("#version-archive-action .confirm-box")).to_contain_text(
        "an owner can restore it")
    shoot(page, "16-version-archive-confirm")
    page.click("button:has-text('Yes, archive it')")
    expect(page.locator("h1 .badge")).to_have_text("Archived")
    expect(page.locator("#version-archive-action")).to_have_count(0)  # restoring: owners
    assert page.console_errors == []

    owner = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    try:
        sign_in(owner, live_server.url, "olivia")
        owner.goto(model_url + "v/3/")
        owner.click("summary:has-text('Restore')")
        owner.click("button:has-text('Yes, restore it')")
        expect(owner.locator(".message.success")).to_contain_text("v3 restored: invalid again")
        expect(owner.locator("h1 .badge")).to_have_text("Invalid")
        shoot(owner, "17-version-restored")
    finally:
        owner.context.close()
    assert list(ModelVersion.objects.filter(model=registry["model"]).order_by("number")
                .values_list("status", flat=True)) == ["ready", "ready", "invalid", "ready"]


def test_moving_champion_is_confirmed_with_a_reason(live_server, page, shoot, users, registry):
    model = registry["model"]
    services.set_alias(users["approver"], model, "champion", model.versions.get(number=1))
    sign_in(page, live_server.url, "alice")
    page.goto(live_server.url + model.get_absolute_url())
    expect(page.locator("select[name=version] option").first).to_have_text(
        "Choose a ready version")
    page.fill("input[aria-label='Alias name']", "champion")
    page.select_option("select[name=version]", label="v2")
    page.click("button:has-text('Set alias')")

    box = page.locator("#alias-confirm")
    expect(box.locator("h1")).to_contain_text("Point champion at v2?")
    expect(box.locator(".alias-move")).to_contain_text(re.compile(r"points at v1.*→\s*v2"))
    expect(box).to_contain_text("Moving it needs the approver role")
    assert model.aliases.get(name="champion").version.number == 1  # nothing moved yet
    page.fill("textarea[name=comment]", "v2 beat v1 in the staging canary.")
    shoot(page, "18-alias-confirm")
    page.click("button:has-text('Yes, point champion at v2')")
    expect(page.locator(".message.success")).to_contain_text("champion now points at v2")
    event = AuditEvent.objects.filter(action="alias.set").latest("id")
    assert event.changes["comment"] == "v2 beat v1 in the staging canary."
    assert page.console_errors == []


def test_owner_manages_members_and_environments_with_a_word(live_server, page, shoot, users,
                                                           project, settings):
    from portal.releases import services as releases

    releases.create_environment(users["owner"], project, name="production")
    sign_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/p/clinical-ml/")
    expect(page.locator("input[aria-label='Username to invite']")).to_have_attribute(
        "placeholder", "username or e-mail address")
    row = page.locator("tr", has_text="carlos")
    row.locator("summary:has-text('Remove')").click()
    expect(row.locator(".confirm-box")).to_contain_text("carlos loses access")
    shoot(page, "19-member-remove-confirm")
    row.locator("textarea[name=comment]").fill("Moved to another team.")
    row.locator("button:has-text('Yes, remove carlos')").click()
    expect(page.locator(".message.success")).to_contain_text("carlos removed")
    event = AuditEvent.objects.filter(action="membership.delete").latest("id")
    assert event.changes["comment"] == "Moved to another team."

    # Invited by e-mail (no mail here): the link is shown once, with a button to copy it.
    page.fill("input[aria-label='Username to invite']", "newcomer@example.com")
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    page.click("button:has-text('Invite')")
    expect(page.locator("#invitation-link")).to_contain_text("newcomer@example.com")
    # The link shows as the page parses; its script (deferred) may not have run yet.
    page.wait_for_load_state()
    page.click("button:has-text('Copy link')")
    # The word shows for 2 s (a loaded machine can miss that); the state it leaves stays.
    expect(page.locator("button[data-copy]")).to_have_attribute("data-copy-state",
                                                                re.compile("copied|failed"))

    # The environment's rules, edited by its owner.
    page.goto(f"{live_server.url}/p/clinical-ml/environments/production/")
    page.click("a:has-text('Edit')")
    page.fill("input[name=required_approvals]", "2")
    page.fill("textarea[name=gates]", '[{"metric": "roc_auc"}]')
    page.click("button:has-text('Save')")
    expect(page.locator(".error-text")).to_contain_text("needs exactly one of min")
    page.fill("textarea[name=gates]", '[{"metric": "roc_auc", "min": 0.9}]')
    shoot(page, "20-environment-edit")
    page.click("button:has-text('Save')")
    expect(page.locator(".message.success")).to_contain_text("production saved")
    expect(page.locator("text=Approvals needed")).to_be_visible()
    expect(page.locator("tr", has_text="Approvals needed")).to_contain_text("2")
    expect(page.locator("tr", has_text="Gates")).to_contain_text("roc_auc")

    # A webhook to a loopback address is refused when it is made, not when it delivers.
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = False
    page.goto(f"{live_server.url}/p/clinical-ml/webhooks/")
    page.fill("input[name=name]", "local")
    page.fill("input[name=url]", "http://127.0.0.1:9000/hook")
    page.click("button:has-text('Add webhook')")
    expect(page.locator("#webhook-form .error-text")).to_contain_text("non-public address")
    shoot(page, "21-webhook-refused")
    assert page.console_errors == []


def test_the_release_form_asks_for_the_strategy_parameters(live_server, page, shoot, users,
                                                           registry):
    from portal.releases import services as releases
    from portal.releases.models import ApprovalRequest

    model = registry["model"]
    services.set_alias(users["approver"], model, "champion", model.versions.get(number=1))
    production = releases.create_environment(users["owner"], model.project, name="production")
    sign_in(page, live_server.url, "carlos")
    page.goto(live_server.url + model.get_absolute_url() + "v/2/release/")
    expect(page.locator("select[name=environment] option").first).to_have_text(
        "Choose where it goes")
    page.select_option("select[name=environment]", str(production.pk))
    # Canary: its steps and bake time; the A/B fields stay hidden.
    expect(page.locator("input[name=canary_steps]")).to_be_visible()
    expect(page.locator("select[name=outcome_metric]")).to_be_hidden()
    page.fill("input[name=canary_steps]", "20, 60")
    page.fill("input[name=bake_minutes]", "5")
    page.click("button:has-text('Request release')")
    # The API's own words, on the field the parameter came from.
    expect(page.locator("#field-canary_steps .error-text")).to_contain_text(
        "canary steps must end with weight 1.0")

    page.select_option("select[name=strategy]", "ab")
    expect(page.locator("input[name=canary_steps]")).to_be_hidden()
    outcome = page.locator("select[name=outcome_metric]")
    expect(outcome).to_be_visible()
    expect(outcome.locator("option").first).to_have_text("Choose what the test measures")
    page.fill("input[name=split_percent]", "20")
    page.fill("input[name=duration_hours]", "48")
    page.click("button:has-text('Request release')")
    expect(page.locator("#field-outcome_metric .error-text")).to_contain_text(
        "Choose what decides the test")
    page.select_option("select[name=outcome_metric]", "correct")
    page.fill("textarea[name=reason]", "Does v2 get more diagnoses right?")
    shoot(page, "22-release-form-ab")
    page.click("button:has-text('Request release')")
    expect(page.locator(".message.success")).to_contain_text("Release requested")
    expect(page.locator("p.muted").first).to_contain_text("20% of users to the candidate")
    expect(page.locator("p.muted").first).to_contain_text("outcome: correct")
    params = ApprovalRequest.objects.get().strategy_params
    assert params["split"] == 0.2 and params["duration_seconds"] == 48 * 3600
    assert params["outcome"] == {"metric": "correct", "kind": "binary", "higher_is_better": True}
    assert page.console_errors == []
