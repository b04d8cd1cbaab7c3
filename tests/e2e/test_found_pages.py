"""Pages people looked for: two versions compared side by side from the model page, a
dataset's file downloaded from its page, every rollout on one page, and a project's audit
log read by its owner."""

import io
import re

import pytest
from playwright.sync_api import expect

from portal.registry import services
from portal.releases.models import Deployment, Environment
from tests.e2e.test_registry_pages import sign_in
from tests.portal_fixtures import FEATURES, metadata, random_classifier_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
CSV = "a,b,target\n1,2,0\n3,4,1\n"


@pytest.fixture
def people_world(users, project, clf):
    dataset = services.upload_dataset(users["contributor"], project, name="cancer-train",
                                      file=io.BytesIO(CSV.encode()), filename="train.csv",
                                      target="target")
    schema = [{"name": n, "type": "double"} for n in FEATURES[1:]] + [
        {"name": "age", "type": "integer"}]
    versions = []
    for seed, auc, loss, features in ((1, 0.94, 0.21, None), (2, 0.97, 0.25, schema)):
        meta = metadata(dataset=dataset.pk, metrics={"roc_auc": auc, "log_loss": loss},
                        params={"C": 1.0 / seed, "max_iter": 200})
        if features:
            meta.update(input_schema=features, parent=versions[-1].number)
        versions.append(services.register_version(
            users["contributor"], clf, io.BytesIO(random_classifier_bytes(seed)), meta))
    environments = [Environment.objects.create(project=project, name=name)
                    for name in ("staging", "production")]
    for environment, status in ((environments[0], "succeeded"),
                                (environments[1], "rolled_back"),
                                (environments[1], "progressing")):
        Deployment.objects.create(environment=environment, model=clf, candidate=versions[1],
                                  stable=versions[0], endpoint=clf.name, strategy="canary",
                                  spec={}, state={}, status=status, created_by=users["owner"])
    return {"model": clf, "dataset": dataset}


def test_a_viewer_compares_two_versions_and_downloads_their_dataset(live_server, page, shoot,
                                                                    people_world):
    sign_in(page, live_server.url, "vera")
    page.goto(live_server.url + people_world["model"].get_absolute_url())
    page.check("input[aria-label='Compare v1']")
    page.check("input[aria-label='Compare v2']")
    shoot(page, "found-00-model-picks")
    page.click("button:has-text('Compare selected')")
    expect(page.locator("h1")).to_have_text("Compare versions of tumor-classifier")
    metrics = page.locator("#compare-metrics")
    expect(metrics.locator("tr:has-text('roc_auc') td.best")).to_contain_text("0.97")
    expect(metrics.locator("tr:has-text('log_loss') td.best")).to_contain_text("0.21")
    expect(metrics.locator("tr:has-text('log_loss')")).to_contain_text("↓ lower")
    schema = page.locator("#compare-schema")
    expect(schema.locator("tr:has-text('mean radius') .badge")).to_have_text("removed")
    expect(schema.locator("tr:has-text('age') .badge")).to_have_text("added")
    expect(page.locator("#compare-lineage")).to_contain_text("cancer-train")
    expect(page.locator(".crumbs")).to_contain_text("tumor-classifier / compare")
    shoot(page, "found-01-compare")

    page.click("#compare-lineage >> text=cancer-train >> nth=0")
    with page.expect_download() as download:
        page.click("#dataset-download")
    assert download.value.suggested_filename == "cancer-train.csv"
    assert open(download.value.path()).read() == CSV
    shoot(page, "found-02-dataset")
    assert page.console_errors == []


def test_an_owner_follows_every_rollout_and_reads_the_audit_log(live_server, page, shoot,
                                                                people_world):
    sign_in(page, live_server.url, "olivia")
    page.click("nav.mainnav >> text=Rollouts")
    expect(page.locator("h1")).to_have_text("Rollouts")
    rows = page.locator("#rollouts tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("Progressing")  # newest first
    page.select_option("#f-status", "rolled_back")
    page.click("#rollout-filters button")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("production")
    shoot(page, "found-03-rollouts")

    page.goto(live_server.url + "/p/clinical-ml/")
    page.click("a:has-text('Audit log')")
    expect(page.locator("h1")).to_have_text("Audit log")
    expect(page.locator("#audit-events")).to_contain_text("dataset.create")
    page.select_option("#f-actor", "carlos")
    page.click("#audit-filters button")
    expect(page.locator("#audit-events")).to_contain_text("model.create")
    who = page.locator("#audit-events tbody tr td:nth-child(2)").all_inner_texts()
    assert len(who) >= 4 and set(who) == {"carlos"}  # the model, the dataset, two versions
    when = page.locator("#audit-events tbody tr time").first  # the one date format
    expect(when).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    shoot(page, "found-04-audit")
    assert page.console_errors == []
