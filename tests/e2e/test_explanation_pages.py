"""A stakeholder reads a version's explanation in Chromium: class names the model gave
("benign", "malignant"), probabilities instead of log-odds, "Show" answering in place, the
"Explain your rows" form answering pasted rows, and an endpoint's "Try it" box."""

import io
import re

import pytest
from playwright.sync_api import expect

from ops.artifacts import dump_skops
from portal.registry import services
from portal.registry.models import ModelVersion
from tests.e2e.test_registry_pages import sign_in
from tests.integration.test_deployments import world  # noqa: F401 - v1 serving, for try-it
from tests.portal_fixtures import FEATURES, metadata

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
DRAWN = re.compile(r"\bdrawn\b")
LABELS = {"0": "malignant", "1": "benign"}


@pytest.fixture
def explained(users, project, clf, cancer_frame, fitted_classifier):
    """A scaled logistic regression (explained on the log-odds scale) with named classes."""
    csv = io.BytesIO(cancer_frame.to_csv(index=False).encode())
    dataset = services.upload_dataset(users["contributor"], project, name="cancer-train",
                                      file=csv, filename="train.csv", target="target")
    services.profile_dataset(dataset.pk)
    version = services.register_version(
        users["contributor"], clf, io.BytesIO(dump_skops(fitted_classifier)),
        metadata(dataset=dataset.pk, classes=LABELS))
    version = services.validate_version(version.pk)
    explanation = services.explain_version(version.pk)
    assert explanation.status == "ready", explanation.reason
    assert explanation.output == "log-odds of class 1"
    return version


def shown(page, button):
    """Click a "Show" button; wait for the swapped-in charts to be drawn (not the old ones)."""
    page.evaluate("document.querySelectorAll('#explain-detail .chart')"
                  ".forEach(function (el) { el.dataset.old = '1'; })")
    page.click(button)
    for chart in ("shap-dependence", "shap-waterfall"):
        expect(page.locator(f"[data-chart={chart}]:not([data-old])")).to_have_class(
            DRAWN, timeout=15_000)


def test_a_version_explained_in_words_with_show_and_explain_your_rows(live_server, page, shoot,
                                                                      explained):
    sign_in(page, live_server.url, "vera")
    page.goto(live_server.url + explained.get_absolute_url())
    section = page.locator("#explanation")
    for chart in ("shap-importance", "shap-beeswarm", "shap-dependence", "shap-waterfall"):
        expect(page.locator(f"[data-chart={chart}]")).to_have_class(DRAWN, timeout=15_000)
    expect(page.locator("#explain-summary")).to_contain_text("probability of “benign”")
    expect(page.locator("#explain-average")).to_contain_text(
        re.compile(r"On average the model gives “benign” a probability of \d+(\.\d)?%"))
    expect(page.locator("text=sklearn.pipeline.Pipeline(StandardScaler → LogisticRegression)")
           ).to_be_visible()
    waterfall = page.locator("[data-chart=shap-waterfall]")
    expect(waterfall.locator(".gtitle")).to_contain_text(re.compile(r"(benign|malignant) \("))
    expect(page.locator("[data-chart=shap-importance] .legend")).to_contain_text(
        "higher values")
    text = section.inner_text()
    for machine in ("log-odds", "class 1", "class 0", "e+0", "e-0"):
        assert machine not in text, machine
    shoot(page, "explanation-version")

    # "Show" swaps the charts in place: the page is not loaded again.
    page.evaluate("window.notReloaded = true")
    page.fill("#explain-row", "7")
    shown(page, "#explain-row-form button")
    expect(page.locator("#explain-row")).to_have_value("7")
    page.select_option("#explain-feature", index=1)
    shown(page, "#explain-feature-form button")
    expect(page.locator("#explain-row")).to_have_value("7")
    assert page.evaluate("window.notReloaded") is True

    # Explain your rows: a clear error for a word where a number goes, then an answer.
    page.fill("#explain-input", ",".join(FEATURES) + "\n" + ",".join(["abc"] + ["1"] *
                                                                    (len(FEATURES) - 1)))
    page.click("#explain-form button[type=submit]")
    expect(page.locator("#explain-error")).to_contain_text(f"Line 2, {FEATURES[0]}: 'abc' is "
                                                           "not a number")
    page.fill("#explain-input", "1,2")
    page.click("#explain-form button[type=submit]")
    expect(page.locator("#explain-error")).to_contain_text(f"the model takes {len(FEATURES)}")
    rows = [",".join(str(v) for v in row) for row in
            explained.explanation.rows[:2]]
    page.fill("#explain-input", "\n".join(rows))
    page.click("#explain-form button[type=submit]")
    answers = page.locator("#explained-rows tbody tr")
    expect(answers).to_have_count(2, timeout=20_000)
    expect(answers.first).to_contain_text(re.compile(r"(benign|malignant) \(probability"))
    expect(page.locator("#explain-answer .chart").first).to_have_class(DRAWN, timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    assert "log-odds" not in page.locator("#explain-answer").inner_text()
    shoot(page, "explanation-rows")
    assert page.console_errors == []


def test_try_it_sends_a_row_to_the_endpoint_and_explains_the_answer(live_server, page, shoot,
                                                                     world):  # noqa: F811
    v1 = world["v1"]
    ModelVersion.objects.filter(pk=v1.pk).update(output_schema={"classes": LABELS})
    sign_in(page, live_server.url, "vera")
    page.goto(f"{live_server.url}/p/{world['env'].project.slug}/environments/production/"
              f"monitoring/{world['model'].name}/")
    form = page.locator("#try-it-form")
    expect(form.locator("input[name=f0]")).to_be_visible(timeout=10_000)
    page.evaluate("window.notReloaded = true")
    form.locator("input[name=f0]").fill("twelve")
    form.locator("button[type=submit]").click()
    expect(page.locator("#try-it-answer #explain-error")).to_contain_text(
        f"{FEATURES[0]}: 'twelve' is not a number")
    form.locator("input[name=f0]").fill("14.2")
    form.locator("button[type=submit]").click()
    expect(page.locator("#served-answer")).to_contain_text(
        re.compile(r"The endpoint answered (benign|malignant) \(probability \d"),
        timeout=20_000)
    expect(page.locator("#served-answer")).to_contain_text(f"v{v1.number}")
    expect(page.locator("#explained-rows tbody tr")).to_have_count(1)
    expect(page.locator("#try-it-answer .chart").first).to_have_class(DRAWN, timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    text = page.locator("#try-it").inner_text()
    assert "log-odds" not in text and "class 1" not in text
    shoot(page, "explanation-try-it")
    assert page.console_errors == []
