"""The README's drift walkthrough, on a real model server: the demo's traffic
(``demo_traffic``, which ``rundemo`` starts), ``inject_drift`` shifting it, and
``inject_drift --stop`` ending the shift. With pandas 3, ``to_numpy()`` hands out read-only
views: shifting them in place stopped the traffic, and with it the whole demo."""

import io
import json

import pytest
import requests
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from ops import promql
from portal.registry import services as registry
from portal.releases import services as releases
from portal.releases.models import Deployment
from portal.web.management.commands import rundemo
from portal.web.management.commands.demo_traffic import drift_file
from tests.integration.local_fixtures import free_port
from tests.portal_fixtures import FEATURES, local_target, metadata, settled

pytestmark = pytest.mark.django_db

SHIFTED = FEATURES[:2]
ROUNDS = 20  # requests of 5 rows each


@pytest.fixture
def served(users, project, clf, settings, skops_bytes, cancer_frame,
           django_capture_on_commit_callbacks):
    """tumor-classifier (the demo's name: demo_traffic draws its rows from scikit-learn's
    breast-cancer data) released to production on a real model server."""
    with django_capture_on_commit_callbacks(execute=True):
        dataset = registry.upload_dataset(
            users["contributor"], project, name="breast-cancer", filename="cancer.csv",
            file=io.BytesIO(cancer_frame.to_csv(index=False).encode()), target="target")
    dataset.refresh_from_db()
    assert dataset.profile_status == "ready", dataset.profile_reason
    version = registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(skops_bytes),
        metadata(dataset=dataset.pk)).pk)
    assert version.status == "ready", version.status_reason
    port = free_port()
    local_target(settings, port)
    production = releases.create_environment(users["owner"], project, name="production")
    with django_capture_on_commit_callbacks(execute=True):
        request = releases.request_approval(users["contributor"], version, production,
                                            strategy="direct")
        releases.review(users["approver"], request, "approve", "ok")
    assert settled(Deployment.objects.get(request=request)).status == "succeeded"
    return f"http://127.0.0.1:{port}"


def top_bin_rows(url: str) -> dict[str, tuple[float, float]]:
    """(rows in the feature's highest baseline bin, rows binned) per feature, as the model
    server counts them."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    counts: dict[str, dict[int, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (promql.FEATURE_BIN, promql.FEATURE_BIN + "_total"):
                feature = counts.setdefault(sample.labels["feature"], {})
                feature[int(sample.labels["bin"])] = sample.value
    return {name: (bins[max(bins)], sum(bins.values())) for name, bins in counts.items()}


def traffic(rounds: int = ROUNDS) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("demo_traffic", rounds=rounds, rate=1000, stdout=out, stderr=err)
    assert not err.getvalue(), err.getvalue()
    return out.getvalue()


def shares(before: dict, after: dict) -> dict[str, float]:
    """The share of the rows sent in between that fell in each feature's highest bin."""
    return {name: (after[name][0] - before.get(name, (0, 0))[0])
            / (after[name][1] - before.get(name, (0, 0))[1]) for name in after}


def banner() -> str:
    """What ``rundemo`` prints once the portal is up."""
    out = io.StringIO()
    rundemo.Command(stdout=out)._welcome("http://127.0.0.1:8000/", monitoring=True,
                                         traffic=True)
    return out.getvalue()


def test_the_drift_walkthrough_shifts_the_demo_traffic_and_stop_ends_it(served, settings,
                                                                        tmp_path):
    settings.DATA_DIR = tmp_path  # where inject_drift leaves its file for demo_traffic
    normal = traffic()
    assert f"{ROUNDS} answered, 0 refused, 0 unreachable, 0 failed" in normal
    start = top_bin_rows(served)

    out = io.StringIO()
    call_command("inject_drift", features=len(SHIFTED), stdout=out)
    assert "inject_drift --stop" in out.getvalue()
    assert json.loads(drift_file().read_text())["features"] == SHIFTED
    # The shift outlives the demo: started again, it says so and how to end it.
    assert "Drift is on" in banner() and "inject_drift --stop" in banner()
    drifted = traffic()
    assert f"{ROUNDS} answered, 0 refused, 0 unreachable, 0 failed" in drifted
    shifted = top_bin_rows(served)
    moved = shares(start, shifted)
    # 2.5 standard deviations up: most rows land past the baseline's last edge.
    assert all(moved[name] > 0.6 for name in SHIFTED), moved
    assert all(moved[name] < 0.4 for name in FEATURES[2:]), moved

    call_command("inject_drift", stop=True, stdout=io.StringIO())
    assert not drift_file().exists() and "Drift is on" not in banner()
    assert f"{ROUNDS} answered" in traffic()
    assert all(share < 0.4 for share in shares(shifted, top_bin_rows(served)).values())
