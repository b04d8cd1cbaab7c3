"""A release candidate's inputs against those of what the environment serves: refused at
request time unless marked a breaking interface change, which then goes out directly or by
blue/green, is acknowledged by its approver, and is checked again when its rollout starts.

The incident: a version trained on 10 features was uploaded as a version of a 30-feature
model with a 10-feature schema, requested as a canary and approved; every real request then
got 400 from the candidate."""

import io

import pytest
from django.test import Client
from django.utils import timezone

from ops.artifacts import dump_skops
from portal.audit.models import AuditEvent
from portal.registry import services as registry
from portal.releases import compatibility, deployments
from portal.releases import services as releases
from portal.releases.models import ApprovalRequest, Deployment
from tests.portal_fixtures import FEATURES, local_target, metadata, schema

pytestmark = pytest.mark.django_db

NARROW = FEATURES[:3]  # a version trained on three of the model's five inputs


def classifier_bytes(features, seed=1) -> bytes:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(40, len(features))), columns=features)
    return dump_skops(LogisticRegression().fit(frame, [0, 1] * 20))


def version_of(users, model, features, seed):
    version = registry.register_version(users["contributor"], model,
                                        io.BytesIO(classifier_bytes(features, seed)),
                                        metadata(input_schema=schema(features)))
    version = registry.validate_version(version.pk)
    assert version.status == "ready"
    return version


def serves(environment, version, status="succeeded"):
    """``environment`` serves ``version``: a rollout of it that ended so (or is under way)."""
    return Deployment.objects.create(
        environment=environment, model=version.model, candidate=version,
        endpoint=version.model.name, strategy="direct", spec={}, state={}, status=status,
        finished_at=timezone.now() if status == "succeeded" else None)


@pytest.fixture(autouse=True)
def rollouts_held(task_queue):
    return task_queue.hold("workers.releases.start_deployment")


@pytest.fixture
def world(users, project, clf):
    production = releases.create_environment(users["owner"], project, name="production")
    wide = version_of(users, clf, FEATURES, 1)
    serves(production, wide)
    return {"env": production, "v1": wide, "narrow": version_of(users, clf, NARROW, 2),
            "same": version_of(users, clf, FEATURES, 3)}


def _request(api, version, environment, **extra):
    return api("contributor").post("/api/v1/approval-requests/", {
        "version": version.pk, "environment": environment.pk, "strategy": "canary", **extra},
        format="json")


def test_a_version_with_other_inputs_is_refused_naming_the_differences(api, world):
    response = _request(api, world["narrow"], world["env"])
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "incompatible_interface" and body["field"] == "version"
    assert body["detail"].startswith(
        "v2's inputs differ from those of v1, which production serves now: feature count 5 → 3; "
        "missing feature mean area (position 4); missing feature mean smoothness (position 5).")
    assert "breaking interface change (breaking_change)" in body["detail"]
    assert not ApprovalRequest.objects.exists()
    assert _request(api, world["same"], world["env"]).status_code == 201  # the same inputs


def test_where_nothing_serves_there_is_nothing_to_compare(api, users, project, world):
    staging = releases.create_environment(users["owner"], project, name="staging")
    response = _request(api, world["narrow"], staging)
    assert response.status_code == 201, response.json()
    assert response.json()["interface_changes"] == []


def test_a_rollout_under_way_serves_its_candidate_too(api, users, clf, world):
    other = version_of(users, clf, list(reversed(FEATURES)), 4)
    serves(world["env"], other, status="progressing")
    assert compatibility.serving_versions(world["env"], clf) == [world["v1"], other]
    response = _request(api, world["same"], world["env"])
    assert response.status_code == 400
    assert "v3's inputs differ from those of v4, which production serves now: feature mean " \
           "radius moved from position 5 to 1" in response.json()["detail"]


@pytest.mark.parametrize("strategy", ["canary", "ab", "shadow"])
def test_a_breaking_change_cannot_go_out_gradually(api, world, strategy):
    response = _request(api, world["narrow"], world["env"], strategy=strategy,
                        breaking_change=True)
    assert response.status_code == 400
    assert response.json()["code"] == "breaking_change_strategy"
    assert response.json()["field"] == "strategy"
    assert "choose direct or blue/green" in response.json()["detail"]


@pytest.mark.parametrize("strategy", ["direct", "bluegreen"])
def test_a_breaking_change_goes_out_directly_or_by_blue_green(api, world, strategy):
    response = _request(api, world["narrow"], world["env"], strategy=strategy,
                        breaking_change=True)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["breaking_change"] is True
    assert body["interface_changes"] == [{"version": 1, "differences": [
        "feature count 5 → 3", "missing feature mean area (position 4)",
        "missing feature mean smoothness (position 5)"]}]
    created = AuditEvent.objects.get(action="approval_request.create")
    assert created.changes["breaking_change"] is True


def test_approving_a_breaking_change_needs_its_acknowledgement(api, world):
    request = _request(api, world["narrow"], world["env"], strategy="direct",
                       breaking_change=True).json()
    url = f"/api/v1/approval-requests/{request['id']}/approve/"
    refused = api("approver").post(url, {"comment": "ship it"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["code"] == "acknowledgement_required"
    assert refused.json()["field"] == "acknowledge_breaking_change"
    assert ApprovalRequest.objects.get(pk=request["id"]).reviews.count() == 0
    done = api("approver").post(url, {"comment": "callers are migrated",
                                      "acknowledge_breaking_change": True}, format="json")
    assert done.status_code == 200 and done.json()["status"] == "approved"
    acknowledged = AuditEvent.objects.get(action="approval_request.acknowledge_breaking_change")
    assert acknowledged.actor_name == "alice"
    assert acknowledged.changes["interface_changes"][0]["differences"][0] == \
        "feature count 5 → 3"


def test_a_breaking_change_is_rejected_without_acknowledgement(api, world):
    request = _request(api, world["narrow"], world["env"], strategy="direct",
                       breaking_change=True).json()
    rejected = api("approver").post(f"/api/v1/approval-requests/{request['id']}/reject/",
                                    {"comment": "callers are not ready"}, format="json")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"


def test_the_pages_request_show_and_approve_a_breaking_change(users, world):
    requester = Client()
    requester.force_login(users["contributor"])
    form_url = f"/p/clinical-ml/m/tumor-classifier/v/{world['narrow'].number}/release/"
    refused = requester.post(form_url, {"environment": world["env"].pk, "strategy": "canary"})
    assert refused.status_code == 200
    assert "missing feature mean area (position 4)" in refused.content.decode()
    gradual = requester.post(form_url, {"environment": world["env"].pk, "strategy": "canary",
                                        "breaking_change": "on"})
    assert "choose direct or blue/green" in gradual.content.decode()
    made = requester.post(form_url, {"environment": world["env"].pk, "strategy": "direct",
                                     "breaking_change": "on"}, follow=True)
    assert b"Release requested" in made.content
    request = ApprovalRequest.objects.get()
    assert request.breaking_change is True

    approver = Client()
    approver.force_login(users["approver"])
    assert "breaking interface" in approver.get("/releases/").content.decode()
    page = approver.get(request.get_absolute_url()).content.decode()
    assert 'class="banner bad" id="breaking-change"' in page
    assert "<li>missing feature mean smoothness (position 5)</li>" in page
    assert 'name="acknowledge_breaking_change"' in page
    review = f"/releases/{request.pk}/review/"
    unacknowledged = approver.post(review, {"decision": "approve", "comment": "ok"}, follow=True)
    assert b"Acknowledge it (acknowledge_breaking_change) to approve" in unacknowledged.content
    approved = approver.post(review, {"decision": "approve", "comment": "callers migrated",
                                      "acknowledge_breaking_change": "on"}, follow=True)
    assert b"the request is approved" in approved.content


def test_a_rollout_whose_serving_inputs_changed_since_fails_before_any_traffic(
        api, users, clf, world):
    request = _request(api, world["same"], world["env"]).json()
    assert api("approver").post(f"/api/v1/approval-requests/{request['id']}/approve/",
                                {"comment": "ok"}, format="json").json()["status"] == "approved"
    # Meanwhile the narrow version was released (directly, as a breaking change).
    serves(world["env"], world["narrow"])

    deployment = deployments.start_deployment(request["id"])
    assert deployment.status == "failed" and deployment.finished_at is not None
    assert deployment.next_check_at is None
    event = deployment.events.get()
    assert event.event == "failed" and event.weights == {} and event.generation is None
    assert event.reason.startswith("not started, before any traffic: v3's inputs differ from "
                                   "those of v2, which production serves now: feature count "
                                   "3 → 5; extra feature mean area (position 4)")
    assert deployment.state["generation"] == deployment.state["base_generation"]
    # Nothing was started on the machine for it.
    from django.conf import settings

    assert not any(settings.MODELGATE_SERVING_DIR.glob("*/*/plan.json"))


def test_a_breaking_change_starts_despite_its_differences(api, settings, users, world):
    from tests.integration.local_fixtures import free_port

    local_target(settings, free_port())
    request = releases.request_approval(users["contributor"], world["narrow"], world["env"],
                                        strategy="direct", breaking_change=True)
    releases.review(users["approver"], request, "approve", "callers migrated",
                    acknowledge_breaking_change=True)
    deployment = deployments.start_deployment(request.pk)
    # Its plan went out: all traffic to the candidate.
    assert deployment.status != "failed", list(deployment.events.values("event", "reason"))
    assert deployment.events.filter(weights={"candidate": 1.0}).exists()
