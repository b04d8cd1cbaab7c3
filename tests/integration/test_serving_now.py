"""An environment's "Serving now" is what its backend observes: both versions of a canary
with their shares, and a stopped model server said as such (real model servers)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.conf import settings
from django.test import Client

from ops import rollout
from ops.backends.base import BackendUnavailable
from portal.releases import deployments
from tests.integration.test_deployments import (  # noqa: F401 - the world fixture
    FAST_CANARY,
    _release,
    _version,
    world,
)
from tests.portal_fixtures import random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HALF_CANARY = {**FAST_CANARY, "steps": [{"weight": 0.5, "bake_seconds": 3600},
                                        {"weight": 1.0, "bake_seconds": 1}]}
PAGE = "/p/clinical-ml/environments/production/"


def _page(where) -> str:
    client = Client()
    client.force_login(where["users"]["contributor"])
    response = client.get(PAGE)
    assert response.status_code == 200
    return response.content.decode()


def _serving(api, where) -> list[dict]:
    response = api("contributor").get(f"/api/v1/environments/{where['env'].pk}/")
    assert response.status_code == 200, response.content
    return response.json()["serving"]


def _planned_generation(deployment) -> int:
    spec = rollout.RolloutSpec.from_dict(deployment.spec)
    return rollout.current_plan(spec, rollout.RolloutState.from_dict(deployment.state)).generation


@pytest.fixture
def canary(world):  # noqa: F811 - the imported fixture
    """v2 on a canary held at 50 % (its first step bakes for an hour)."""
    v2 = _version(world["users"], world["model"], random_classifier_bytes(2))
    deployment = _release(world["users"], v2, world["env"], "canary", HALF_CANARY)
    assert deployment.status in deployments.ACTIVE
    return {**world, "v2": v2, "deployment": deployment}


def test_a_canary_at_half_shows_both_versions_with_their_shares(canary, api):
    page = _page(canary)
    v1, v2 = canary["v1"], canary["v2"]
    assert f"v{v1.number}</a> 50 %" in page and f"v{v2.number}</a> 50 %" in page
    assert canary["url"] in page and '<span class="badge">ready</span>' in page
    assert canary["deployment"].get_absolute_url() in page  # the rollout under way
    assert "monitoring" in page

    [endpoint] = _serving(api, canary)
    assert endpoint["model"] == "tumor-classifier" and endpoint["ready"] is True
    assert endpoint["url"] == canary["url"] and endpoint["detail"] == ""
    assert endpoint["generation"] == _planned_generation(canary["deployment"])
    assert {(v["version"], v["version_id"], v["weight"]) for v in endpoint["variants"]} == {
        (v1.number, v1.pk, 0.5), (v2.number, v2.pk, 0.5)}


def test_a_list_of_environments_does_not_ask_the_backend(world, api):  # noqa: F811
    listed = api("contributor").get("/api/v1/environments/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert rows and all("serving" not in row for row in rows)


def test_a_stopped_model_server_is_said_and_the_page_still_answers(world, api):  # noqa: F811
    pidfile = (settings.MODELGATE_SERVING_DIR / f"env-{world['env'].pk}" / "tumor-classifier"
               / "server.pid")
    os.killpg(int(pidfile.read_text()), signal.SIGTERM)
    deadline = time.monotonic() + 15  # "starting" while it is still stopping
    while time.monotonic() < deadline and "not running" not in _serving(api, world)[0]["detail"]:
        time.sleep(0.1)
    [endpoint] = _serving(api, world)
    assert endpoint["ready"] is False and endpoint["variants"] == []
    assert "not running" in endpoint["detail"] and endpoint["url"] == world["url"]
    page = _page(world)
    assert "the model server is not running" in page and world["url"] in page


def test_an_unreachable_backend_is_said_without_paths(world, api, monkeypatch):  # noqa: F811
    class Unreachable:
        def observe(self, endpoint):
            raise BackendUnavailable("cannot read /var/lib/modelgate/serving/plan.json")

    monkeypatch.setattr(deployments, "backend_for", lambda deployment: Unreachable())
    page = _page(world)
    assert "the backend could not be reached: cannot read &lt;path&gt;" in page
    assert "/var/lib" not in page
    [endpoint] = _serving(api, world)
    assert endpoint["ready"] is False and endpoint["detail"].startswith(
        "the backend could not be reached")
