"""The portal as people read it (issue 16): a rollout's status line follows the plan last
applied, time charts have readable ticks, numbers are rounded, the dashboard's counts add
up, the model page's metric panels agree, a regressor's target is shown in its own range,
pages waiting for a worker update themselves, and an ended A/B test says why it ended."""

import io
import json
import re
import time

import numpy as np
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from ops import rollout
from portal.experiments import services as experiments
from portal.registry import services as registry
from portal.registry.models import ModelVersion, RegisteredModel
from portal.releases import services as releases
from portal.releases.models import Deployment, DeploymentEvent
from portal.releases.specs import _spec
from tests.e2e.test_registry_pages import sign_in
from tests.integration.test_feedback import _version, ids, make_experiment

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
DRAWN = re.compile(r"\bdrawn\b")
# Fast, within the latency floor, but twice the stable's p99: passes, excused.
# A warning alert with long words, as drift alerts have: the table still fits the page.
FAST = rollout.Analysis(requests=1268.23, error_rate=0.0011213636363636321, p99_latency=0.0112,
                        stable_p99_latency=0.0051, client_error_rate=0.0,
                        stable_client_error_rate=0.0, alerts=(rollout.Alert(
                            "ModelgateFeatureDriftWarning", "warning",
                            {"feature": "mean_concave_points_worst_of_all_the_cells_measured",
                             "variant": "candidate", "value": "0.31234567"}),))


def _decide(deployment, spec, state, now):
    decision = rollout.decide(spec, state, FAST, now)
    plan = decision.plan
    DeploymentEvent.objects.create(
        deployment=deployment, event=str(decision.event), status=str(decision.state.status),
        reason=decision.reason, verdict=str(decision.verdict or ""),
        measurements=[m.to_dict() for m in decision.measurements],
        weights=plan.weights() if plan else {}, generation=plan.generation if plan else None)
    Deployment.objects.filter(pk=deployment.pk).update(
        state=decision.state.to_dict(), status=str(decision.state.status))
    return decision.state


def _ticks(page, chart):
    return page.locator(f"[data-chart={chart}] .xtick text").evaluate_all(
        "texts => texts.map(t => t.textContent)")


def test_the_rollout_page_follows_the_plan_last_applied(live_server, page, shoot, users,
                                                         project, clf):
    production = releases.create_environment(users["owner"], project, name="production")
    v1, v2 = _version(users, clf, 1), _version(users, clf, 2)
    steps = [{"weight": w, "bake_seconds": 600} for w in (0.1, 0.25, 0.5, 1.0)]
    spec = _spec("canary", {"steps": steps}, clf.name, v2, v1)
    deployment = Deployment.objects.create(
        environment=production, model=clf, candidate=v2, stable=v1, endpoint=clf.name,
        strategy="canary", spec=spec.to_dict(), state=rollout.RolloutState.initial(1).to_dict(),
        status="pending")
    now = time.time()
    state = _decide(deployment, spec, rollout.RolloutState.initial(1), now)
    state = _decide(deployment, spec, state, now + 700)  # step 2 of 4, 25 %

    page.clock.install()
    sign_in(page, live_server.url, "vera")
    page.goto(live_server.url + deployment.get_absolute_url())
    line = page.locator("#status-line")
    expect(line).to_contain_text("step 2 of 4")
    expect(line).to_contain_text("candidate 25%")
    expect(page.locator("[data-chart=traffic-chart]")).to_have_class(DRAWN)
    expect(page.locator("[data-chart=measurements-chart]")).to_have_class(DRAWN)
    # The analysis in people's units, the excused latency said in words.
    table = page.locator("#measurements")
    expect(table).to_contain_text("1,270 >= 100 needed")
    expect(table).to_contain_text("11.2 ms")
    expect(table.locator("tr.excused")).to_contain_text("latency floor")
    assert "0.0112136" not in table.inner_text()
    expect(page.locator("#measured-at")).to_contain_text("Excused")
    for chart in ("traffic-chart", "measurements-chart"):
        ticks = _ticks(page, chart)
        assert ticks and all(re.fullmatch(r"\d\d:\d\d", t) for t in ticks), ticks
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    shoot(page, "reading-rollout-step-2")

    # While the page stays open the rollout reaches 100 %: the status line follows it.
    state = _decide(deployment, spec, state, now + 1400)
    state = _decide(deployment, spec, state, now + 2100)
    assert state.step == 3
    page.clock.fast_forward(4000)  # the live refresh's next tick
    expect(line).to_contain_text("step 4 of 4", timeout=15_000)
    expect(line).to_contain_text("candidate 100%")
    expect(page.locator("#events tbody tr").first).to_contain_text("candidate 100%")
    page.reload()
    expect(line).to_contain_text("step 4 of 4")
    expect(line).to_contain_text("candidate 100%")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    # "started … ago" keeps moving while the page stays open.
    started = page.locator(".page-head p.muted time").first
    expect(started).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    page.clock.fast_forward("05:00")
    expect(started).to_have_text(re.compile(r"^5 minutes ago$"))
    shoot(page, "reading-rollout-step-4")
    assert page.console_errors == []


def test_dashboard_counts_add_up_and_metric_panels_agree(live_server, page, shoot, users,
                                                         project, clf):
    metrics = [{"roc_auc": 0.9, "log_loss": 0.31}, {"roc_auc": 0.92},
               {"roc_auc": 0.93, "log_loss": 0.25}, {"roc_auc": 0.91, "log_loss": 0.28}]
    for seed, figures in enumerate(metrics, start=1):
        version = _version(users, clf, seed)
        ModelVersion.objects.filter(pk=version.pk).update(metrics=figures)
    ModelVersion.objects.filter(model=clf, number=4).update(status="archived")
    # An archived model's versions are out of the dashboard, as the model is.
    old = registry.create_model(users["contributor"], project, name="old-model",
                                task="classification")
    _version(users, old, 9)
    RegisteredModel.objects.filter(pk=old.pk).update(archived_at=timezone.now())

    sign_in(page, live_server.url, "vera")
    stat = page.locator(".stat", has=page.locator("#version-counts"))
    total = int(stat.locator(".n").inner_text())
    parts = [int(n) for n in re.findall(r"(\d+) \w+", page.locator("#version-counts")
                                        .inner_text())]
    assert total == 4 and sum(parts) == total, (total, parts)
    expect(page.locator("#version-counts")).to_contain_text("1 archived")
    shoot(page, "reading-dashboard")

    page.goto(live_server.url + clf.get_absolute_url())
    expect(page.locator("[data-chart=metric-history]")).to_have_class(DRAWN)
    figure = json.loads(page.locator("#metric-history").text_content())
    titles = [a["text"] for a in figure["layout"]["annotations"]]
    assert titles == ["log_loss (↓ lower is better)", "roc_auc (↑ higher is better)"]
    layout = figure["layout"]
    assert layout["xaxis"]["range"] == layout["xaxis2"]["range"] == [0.5, 4.5]
    log_loss = next(t for t in figure["data"] if t["name"] == "log_loss")
    assert log_loss["y"][1] is None and log_loss["connectgaps"] is False
    expect(page.locator("[data-chart=metric-history] .infolayer")).to_contain_text(
        "lower is better")
    shoot(page, "reading-model-metrics")
    assert page.console_errors == []


def test_a_regressor_dataset_updates_itself_and_shows_its_target(live_server, page, shoot,
                                                                 users, project, task_queue):
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    task_queue.hold("workers.registry.profile_dataset")
    dataset = registry.upload_dataset(users["contributor"], project, name="diabetes-train",
                                      file=io.BytesIO(frame.to_csv(index=False).encode()),
                                      filename="diabetes.csv", target="target")
    sign_in(page, live_server.url, "vera")
    page.goto(live_server.url + dataset.get_absolute_url())
    expect(page.locator("#self-refresh")).to_contain_text("updates itself")
    registry.profile_dataset(dataset.pk)
    # No reload: the page sees the profile arrive.
    expect(page.locator("#self-refresh")).to_have_count(0, timeout=15_000)
    chart = page.locator("[data-chart=target-chart]")
    expect(chart).to_have_class(DRAWN)
    low, high = chart.evaluate("el => el._fullLayout.xaxis.range")
    assert 0 < low < 25 and 346 < high < 400, (low, high)  # its values run 25 to 346
    expect(page.locator("#target")).to_contain_text("max 346")
    expect(page.locator(".chart-grid")).not_to_contain_text("0.00000000")
    shoot(page, "reading-dataset-target")
    assert page.console_errors == []


def test_an_ended_ab_test_says_why_it_ended(live_server, page, shoot, users, project, clf):
    experiment = make_experiment(users, project, clf)
    rng = np.random.default_rng(3)
    items = [{"prediction_id": p, "outcome": int(rng.random() < 0.1)}
             for variant in ("stable", "candidate") for p in ids(experiment, variant, 300)]
    assert experiments.record_feedback(users["contributor"], items).accepted == 600
    deployment = experiment.deployment
    reason = "rolled back at A/B (50% to the candidate, sticky): critical alert on the candidate"
    Deployment.objects.filter(pk=deployment.pk).update(
        status="rolled_back", finished_at=timezone.now(),
        state={**deployment.state, "status": "rolled_back", "reason": reason})

    sign_in(page, live_server.url, "vera")
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    expect(page.locator("#ended-why")).to_contain_text("critical alert on the candidate")
    verdict = page.locator("#verdict .verdict-text")
    expect(verdict).to_contain_text("Not enough")
    expect(verdict).not_to_contain_text("yet")
    expect(page.locator("#test-status")).to_have_text("Rolled back")
    shoot(page, "reading-ab-ended")
    assert page.console_errors == []
