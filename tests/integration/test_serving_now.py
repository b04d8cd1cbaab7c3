"""An environment's "Serving now" is what its backend observes: both versions of a canary
with their shares, and a stopped model server said as such (real model servers). The
model and version pages and the API's detail of a model and a version say the same, every
backend of a page asked at once within a time budget."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from django.conf import settings
from django.test import Client

from ops import rollout
from ops.backends.base import BackendUnavailable, ObservedState
from portal.releases import deployments, serving
from portal.releases import services as releases
from portal.releases.models import Deployment
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


# The model and version pages and their API detail say the same, from the same observation.

MODEL_PAGE = "/p/clinical-ml/m/tumor-classifier/"


def _get(where, path: str) -> str:
    client = Client()
    client.force_login(where["users"]["contributor"])
    response = client.get(path)
    assert response.status_code == 200
    return response.content.decode()


def _detail(api, path: str) -> dict:
    response = api("contributor").get(path)
    assert response.status_code == 200, response.content
    return response.json()


def _rows(listed) -> list[dict]:
    return listed["results"] if isinstance(listed, dict) else listed


def _elsewhere(where, name: str = "staging"):
    """Another environment of the project, the model recorded as released there too (its
    backend is the test's to fake)."""
    environment = releases.create_environment(where["users"]["owner"], where["env"].project,
                                              name=name)
    deployment = Deployment.objects.filter(environment=where["env"]).order_by("pk").first()
    deployment.pk, deployment.request, deployment.environment = None, None, environment
    deployment.save()
    return environment


def test_the_model_page_shows_what_serves_it_in_each_environment(canary, api):
    releases.create_environment(canary["users"]["owner"], canary["env"].project, name="qa")
    page = _get(canary, MODEL_PAGE)
    v1, v2 = canary["v1"], canary["v2"]
    serving_now = page[page.index('id="serving-now"'):page.index('id="versions"')]
    assert f"v{v1.number}</a> 50 %" in serving_now and f"v{v2.number}</a> 50 %" in serving_now
    assert canary["url"] in serving_now and '<span class="badge">ready</span>' in serving_now
    assert f"plan {_planned_generation(canary['deployment'])}" in serving_now
    assert canary["deployment"].get_absolute_url() in serving_now
    assert "<strong>qa</strong>" in serving_now and "not released here" in serving_now

    model = _detail(api, f"/api/v1/models/{canary['model'].pk}/")
    [endpoint] = model["serving"]
    assert endpoint["environment"] == "production" and endpoint["ready"] is True
    assert endpoint["url"] == canary["url"]
    assert endpoint["generation"] == _planned_generation(canary["deployment"])
    assert {(v["version"], v["weight"]) for v in endpoint["variants"]} == {
        (v1.number, 0.5), (v2.number, 0.5)}
    assert _serving(api, canary)[0] == endpoint  # the environment's says the same


def test_the_version_page_shows_where_it_serves_and_its_share(canary, api):
    v1, v2 = canary["v1"], canary["v2"]
    page = _get(canary, f"{MODEL_PAGE}v/{v2.number}/")
    serving_now = page[page.index('id="serving-now"'):page.index('id="explanation"')]
    assert "<strong>production</strong>" in serving_now and canary["url"] in serving_now
    assert "<strong>this version 50 %</strong>" in serving_now
    assert f"v{v1.number}</a> 50 %" in serving_now
    assert '<span class="badge">ready</span>' in serving_now

    [endpoint] = _detail(api, f"/api/v1/versions/{v2.pk}/")["serving"]
    assert endpoint["environment"] == "production" and endpoint["ready"] is True
    assert endpoint["url"] == canary["url"]
    assert {v["version_id"]: v["weight"] for v in endpoint["variants"]}[v2.pk] == 0.5

    # A version no backend serves says so.
    v3 = _version(canary["users"], canary["model"], random_classifier_bytes(3))
    page = _get(canary, f"{MODEL_PAGE}v/{v3.number}/")
    assert "No environment's backend serves this version now." in page
    assert _detail(api, f"/api/v1/versions/{v3.pk}/")["serving"] == []


def test_lists_of_models_and_versions_do_not_ask_the_backend(world, api, monkeypatch):  # noqa: F811
    def refuse(deployment):
        raise AssertionError("a list asked the backend")

    monkeypatch.setattr(deployments, "backend_for", refuse)
    for path in ("/api/v1/models/", "/api/v1/versions/",
                 f"/api/v1/models/{world['model'].pk}/versions/"):
        rows = _rows(api("contributor").get(path).json())
        assert rows and all("serving" not in row for row in rows), path


def test_an_unreachable_backend_is_said_on_the_model_and_version_pages(world, api,  # noqa: F811
                                                                       monkeypatch):
    class Unreachable:
        def observe(self, endpoint):
            raise BackendUnavailable("cannot read /var/lib/modelgate/serving/plan.json")

    monkeypatch.setattr(deployments, "backend_for", lambda deployment: Unreachable())
    v1 = world["v1"]
    for path in (MODEL_PAGE, f"{MODEL_PAGE}v/{v1.number}/"):
        page = _get(world, path)
        assert "the backend could not be reached: cannot read &lt;path&gt;" in page, path
        assert "/var/lib" not in page
    for path in (f"/api/v1/models/{world['model'].pk}/", f"/api/v1/versions/{v1.pk}/"):
        [endpoint] = _detail(api, path)["serving"]
        assert endpoint["ready"] is False and endpoint["variants"] == []
        assert endpoint["detail"] == "the backend could not be reached: cannot read <path>"


def test_backends_are_asked_at_once_and_a_hanging_one_does_not_hold_the_page(
        world, api, monkeypatch):  # noqa: F811
    """Two environments whose backends take a second each answer in about a second; one
    that does not answer is given up after the budget, and said so."""
    _elsewhere(world)
    released = threading.Event()

    class Slow:
        def __init__(self, deployment):
            self.hangs = deployment.environment.name == "staging" and hang

        def observe(self, endpoint):
            if self.hangs:
                released.wait(30)
                raise BackendUnavailable("released")
            time.sleep(1)
            return ObservedState(endpoint=endpoint, exists=True, ready=True, generation=7,
                                 url="http://model.example")

    monkeypatch.setattr(deployments, "backend_for", lambda deployment: Slow(deployment))
    hang = False
    started = time.monotonic()
    page = _get(world, MODEL_PAGE)
    assert time.monotonic() - started < 1.9  # not one after the other
    assert page.count("http://model.example") == 2 and "plan 7" in page

    hang = True
    monkeypatch.setattr(serving, "OBSERVE_BUDGET_SECONDS", 1.5)
    try:
        started = time.monotonic()
        page = _get(world, MODEL_PAGE)
        assert time.monotonic() - started < 2.5
        assert "the backend could not be reached: no answer within 1.5 s" in page
        assert "http://model.example" in page  # production answered
        [production, staging] = _detail(api, f"/api/v1/models/{world['model'].pk}/")["serving"]
        assert production["environment"] == "production" and production["ready"] is True
        assert staging["environment"] == "staging" and "no answer within" in staging["detail"]
    finally:
        released.set()
