"""A data scientist signs in, opens a model, sees its metric chart, opens a version and its
lineage graph, and uploads a new version through the browser."""

import io
import re

import pytest
from playwright.sync_api import expect

from ops.artifacts import dump_skops
from portal.registry import services
from tests.portal_fixtures import FEATURES, metadata, random_classifier_bytes, schema

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
DRAWN = re.compile(r"\bdrawn\b")


@pytest.fixture
def registry(users, project, clf, cancer_frame, fitted_classifier, fitted_forest):
    csv = io.BytesIO(cancer_frame.to_csv(index=False).encode())
    dataset = services.upload_dataset(users["contributor"], project, name="cancer-train",
                                      file=csv, filename="train.csv", target="target")
    services.profile_dataset(dataset.pk)
    parent = None
    for index, estimator in enumerate((fitted_classifier, fitted_forest)):
        meta = metadata(dataset=dataset.pk, metrics={"roc_auc": 0.95 + index / 100,
                                                     "accuracy": 0.9 + index / 50})
        if parent:
            meta["parent"] = parent.number
        version = services.register_version(users["contributor"], clf,
                                            io.BytesIO(dump_skops(estimator)), meta)
        parent = services.validate_version(version.pk)
    return {"model": clf, "dataset": dataset}


def sign_in(page, base, username):
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pw-{username}")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Dashboard")


def test_browse_model_version_and_lineage(live_server, page, shoot, registry):
    sign_in(page, live_server.url, "vera")
    shoot(page, "01-dashboard")
    page.click("text=tumor-classifier >> nth=0")
    expect(page.locator("h1")).to_contain_text("tumor-classifier")
    chart = page.locator("[data-chart=metric-history]")
    expect(chart).to_have_class(DRAWN)
    expect(chart.locator(".xtitle").first).to_have_text("version")
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    shoot(page, "02-model")

    page.click("#versions >> text=v2")
    expect(page.locator("h1")).to_contain_text("tumor-classifier v2")
    expect(page.locator("h1 .badge.status-ready")).to_have_text("Ready")
    lineage = page.locator("[data-chart=lineage-graph]")
    expect(lineage).to_have_class(DRAWN, timeout=10_000)
    expect(lineage.locator("text=cancer-train")).to_be_visible()
    expect(lineage.locator("text=tumor-classifier v1")).to_be_visible()
    expect(page.locator("#metrics >> text=roc_auc")).to_be_visible()
    shoot(page, "03-version")

    # A viewer may not upload: the button is not offered.
    page.goto(live_server.url + registry["model"].get_absolute_url())
    expect(page.locator("text=Upload version")).to_have_count(0)

    page.goto(live_server.url + registry["dataset"].get_absolute_url())
    # The features in the grid, the target (a classifier's classes) in a section of its own.
    expect(page.locator(".chart-grid .chart.drawn")).to_have_count(len(FEATURES))
    expect(page.locator("#target [data-chart=target-chart]")).to_have_class(DRAWN)
    shoot(page, "04-dataset")
    assert page.console_errors == []


def test_contributor_uploads_a_version_in_the_browser(live_server, page, shoot, registry,
                                                      tmp_path):
    artifact = tmp_path / "model.skops"
    artifact.write_bytes(random_classifier_bytes(42))
    sign_in(page, live_server.url, "carlos")
    page.goto(live_server.url + registry["model"].get_absolute_url())
    page.click("a:has-text('Upload version')")
    page.set_input_files("input[name=artifact]", str(artifact))
    page.fill("textarea[name=input_schema]", __import__("json").dumps(schema()))
    page.fill("textarea[name=metrics]", '{"roc_auc": 0.91}')
    page.select_option("select[name=parent]", label="v2")
    page.fill("input[name=tags]", "browser, e2e")
    shoot(page, "05-upload-form")
    page.click("button:has-text('Upload version')")
    expect(page.locator("h1")).to_contain_text("tumor-classifier v3")
    expect(page.locator(".message.success")).to_contain_text("uploaded")
    shoot(page, "06-uploaded")

    # Bad input is reported on the form, and nothing is registered.
    page.goto(live_server.url + registry["model"].get_absolute_url() + "versions/new/")
    page.set_input_files("input[name=artifact]", str(artifact))
    page.fill("textarea[name=input_schema]", "[not json")
    page.click("button:has-text('Upload version')")
    expect(page.locator(".error-text")).to_contain_text("not valid JSON")
    assert registry["model"].versions.count() == 3
    assert page.console_errors == []


def test_a_viewer_reads_what_drives_a_version(live_server, page, shoot, registry):
    forest = registry["model"].versions.get(number=2)
    explanation = services.explain_version(forest.pk)
    assert explanation.status == "ready", explanation.reason
    sign_in(page, live_server.url, "vera")
    page.goto(f"{live_server.url}/p/clinical-ml/m/tumor-classifier/v/2/#explanation")
    expect(page.locator("#explain-summary")).to_contain_text("inputs that move this model most")
    for chart in ("shap-importance", "shap-beeswarm", "shap-dependence", "shap-waterfall"):
        expect(page.locator(f"[data-chart={chart}]")).to_have_class(DRAWN)
    # Headless Chromium has no WebGL: the point clouds fall back to SVG, not to a notice.
    for chart in ("shap-beeswarm", "shap-dependence"):
        expect(page.locator(f"[data-chart={chart}]")).not_to_contain_text("WebGL")
        assert page.locator(f"[data-chart={chart}] .scatterlayer .point").count() > 100
    page.select_option("#explain-feature", FEATURES[1])
    page.click("#explanation form >> nth=0 >> button")
    expect(page.locator("[data-chart=shap-dependence]")).to_contain_text(FEATURES[1])
    shoot(page, "13-explanation")
    assert page.console_errors == []
