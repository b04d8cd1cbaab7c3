"""Approvers judge current evidence: a request's gates compare the candidate with the version
serving the environment now, and an approval after that changed is refused until the gates
(and the diff) have been judged again against what serves.

The incident: a request computed against champion v2 still showed v2's gates and deltas
after v4 had become champion and was serving; approval went through and the rollout said
"replacing v4"."""

import pytest

from portal.audit.models import AuditEvent
from portal.registry.models import ModelVersion
from portal.releases import services as releases
from portal.releases.models import ApprovalRequest
from tests.integration.test_release_interfaces import serves, version_of
from tests.portal_fixtures import FEATURES

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rollouts_held(task_queue):
    return task_queue.hold("workers.releases.start_deployment")


@pytest.fixture
def world(users, project, clf):
    production = releases.create_environment(
        users["owner"], project, name="production",
        gates=[{"metric": "roc_auc", "max_drop": 0.01}])
    v1, v2, v3 = (version_of(users, clf, FEATURES, seed) for seed in (1, 2, 3))
    for version, auc in ((v1, 0.90), (v2, 0.93), (v3, 0.99)):  # declared at upload, as if
        ModelVersion.objects.filter(pk=version.pk).update(metrics={"roc_auc": auc})
        version.refresh_from_db()
    serves(production, v1)
    return {"env": production, "v1": v1, "v2": v2, "v3": v3}


def test_a_request_is_compared_with_what_serves_the_environment(users, world):
    request = releases.request_approval(users["contributor"], world["v2"], world["env"],
                                        strategy="direct")
    assert request.champion == world["v1"] and request.gates_passed


def test_an_approval_after_what_serves_changed_is_refused_and_judged_again(api, users, world):
    request = releases.request_approval(users["contributor"], world["v2"], world["env"],
                                        strategy="direct")
    assert request.gates_passed  # 0.93 against v1's 0.90
    serves(world["env"], world["v3"])  # meanwhile v3 (0.99) went out

    url = f"/api/v1/approval-requests/{request.pk}/approve/"
    refused = api("approver").post(url, {"comment": "ship it"}, format="json")
    assert refused.status_code == 409, refused.content
    body = refused.json()
    assert body["code"] == "stale_comparison"
    assert "v3 serves production now, not v1" in body["detail"]
    assert "the gates fail" in body["detail"]
    request = ApprovalRequest.objects.get(pk=request.pk)
    assert request.champion == world["v3"] and not request.gates_passed
    assert request.status == "open" and not request.reviews.exists()
    event = AuditEvent.objects.get(action="approval_request.compare_again")
    assert event.changes["compared_with"] == {"from": 1, "to": 3}

    again = api("approver").post(url, {"comment": "ship it"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "gates_failed"


def test_an_approval_on_current_evidence_goes_through(api, users, world):
    request = releases.request_approval(users["contributor"], world["v2"], world["env"],
                                        strategy="direct")
    url = f"/api/v1/approval-requests/{request.pk}/approve/"
    assert api("approver").post(url, {"comment": "ok"}, format="json").status_code in (200, 201)
    assert ApprovalRequest.objects.get(pk=request.pk).status == "approved"
    assert not AuditEvent.objects.filter(action="approval_request.compare_again").exists()
