"""The alerts page and an endpoint's monitoring charts in Chromium, with real data: a model
server receiving drifting traffic, a managed Prometheus, drift and alerts computed as beat
would. Screenshots go to test-output/screenshots/."""

import json
import re
import time

import pytest
from playwright.sync_api import expect

from portal.monitoring import prometheus_sync
from tests.e2e.test_registry_pages import sign_in
from tests.integration.monitoring_fixtures import Traffic, firing, tick, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_alerts_and_monitoring_charts_render_with_data(live_server, page, shoot, monitored):
    prometheus_sync.sync()
    with Traffic(monitored["url"], monitored["model"].name) as traffic:
        for _ in range(6):  # some undrifted history first
            tick()
            time.sleep(1)
        traffic.shift = 3.0
        wait_for(lambda: firing(name="ModelgateFeatureDriftCritical"), 40, "no drift alert")
        tick()

        sign_in(page, live_server.url, "vera")
        expect(page.locator("#firing-alerts")).to_be_visible()
        page.click("nav >> text=Alerts")
        # One incident per cause: the drifting features' alerts are one row, folded.
        incident = page.locator("#incidents tbody.incident",
                                has_text="ModelgateFeatureDriftCritical")
        expect(incident).to_have_count(1)
        expect(incident.locator("tr.incident-row .badge.state-firing")).to_be_visible()
        incident.locator("details summary").click()
        rows = incident.locator("table.alerts tbody tr")
        expect(rows).to_have_count(2)  # the two shifted features, on the one variant serving
        expect(rows.first).to_contain_text("drifted far")
        shoot(page, "monitoring-alerts")

        page.select_option("#f-severity", "critical")
        page.click("#alert-filters button[type=submit]")
        expect(page.locator("#incidents tr.incident-row").first).to_contain_text("critical")
        incident.locator("details summary").click()
        rows.first.locator("a").first.click()
        expect(page.locator("h1")).to_contain_text("drifted far")
        expect(page.locator("text=Contributors of the project")).to_be_visible()
        shoot(page, "monitoring-alert-detail")

        page.click("#endpoint-link")
        page.click("#window-chips >> text=15m")
        expect(page.locator("#drift-table tbody tr")).to_have_count(5)
        expect(page.locator("#drift-table .badge.drift-critical")).to_have_count(2)
        for chart in ("traffic", "errors", "rejects", "latency", "predictions", "drift-over-time",
                      "comparison"):
            expect(page.locator(f'[data-chart="{chart}"].drawn')).to_be_visible(timeout=15000)
        assert page.locator('[data-chart="comparison"] .bars path').count() > 0
        # The drift badge takes the colour of the worst feature, and counts them.
        badge = page.locator("#drift-badge")
        expect(badge).to_have_class(re.compile(r"\bdrift-critical\b"))
        expect(badge).to_contain_text(re.compile(r"of 5 features drifted: 2 critical"))
        for chart in ("traffic", "errors", "rejects", "latency"):
            figure = json.loads(page.locator(f"script#{chart}").text_content())
            names = [trace["name"] for trace in figure["data"]]
            assert names and not any(n.split()[0] == "none" for n in names), (chart, names)
        # The release of v1 is marked on the time charts (Grafana-style annotations).
        expect(page.locator('[data-chart="traffic"] .annotation-text').first).to_contain_text(
            "v1")
        ticks = page.locator('[data-chart="traffic"] .xtick text').evaluate_all(
            "texts => texts.map(t => t.textContent)")
        assert all(re.fullmatch(r"\d\d:\d\d", t) for t in ticks), ticks
        expect(page.locator("#monitoring-unavailable")).to_have_count(0)
        shoot(page, "monitoring-endpoint")
    assert page.console_errors == []
