"""A/B tests end to end: real model servers answer, feedback on their prediction ids reaches
each variant's readout, and the decision goes through the rollout."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from portal.experiments.models import Experiment, ExperimentDecision
from portal.releases import deployments
from portal.releases.models import Deployment
from tests.integration.test_deployments import (  # noqa: F401 - the world fixture
    FAST_CANARY,
    _release,
    _version,
    world,
)
from tests.portal_fixtures import random_classifier_bytes, settled

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROW = [14.0, 19.0, 90.0, 650.0, 0.1]


def predict(url: str, unit: str, rows: int = 1) -> tuple[str, list[str]]:
    body = {"inputs": [{"name": "input-0", "shape": [rows, 5], "datatype": "FP64",
                        "data": [ROW] * rows}]}
    answer = requests.post(f"{url}/v2/models/tumor-classifier/infer", json=body,
                           headers={"X-Unit-Id": unit}, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Variant"], answer.json()["parameters"]["prediction_ids"]


@pytest.fixture
def ab(world):  # noqa: F811 - the imported fixture
    v2 = _version(world["users"], world["model"], random_classifier_bytes(7))
    deployment = _release(world["users"], v2, world["env"], "ab", {
        **FAST_CANARY, "split": 0.5, "duration_seconds": 3600,
        "outcome": {"metric": "readmission", "kind": "binary", "higher_is_better": False}})
    assert deployment.status == "progressing"
    return {**world, "deployment": deployment, "v2": v2,
            "experiment": Experiment.objects.get(deployment=deployment)}


def test_outcomes_of_real_predictions_reach_the_variant_that_answered(ab, api):
    url = ab["url"]
    experiment = ab["experiment"]
    assert (experiment.metric, experiment.kind, experiment.higher_is_better) == \
        ("readmission", "binary", False)
    rng = np.random.default_rng(1)
    sent = {"stable": [], "candidate": []}
    items = []
    for unit in range(300):
        variant, ids = predict(url, f"user-{unit}", rows=1 + unit % 3)
        for pid in ids:  # rows of one request share a variant, each has its own id
            outcome = int(rng.random() < (0.30 if variant == "stable" else 0.15))
            sent[variant].append(outcome)
            items.append({"prediction_id": pid, "outcome": outcome})
    assert sent["stable"] and sent["candidate"]
    answer = api("contributor").post("/api/v1/feedback/", {"items": items}, format="json")
    assert answer.status_code == 200 and answer.json()["accepted"] == len(items), answer.json()
    again = api("contributor").post("/api/v1/feedback/", {"items": items[:50]}, format="json")
    assert again.json() == {"accepted": 0, "duplicates": 50, "rejected": 0, "errors": []}

    readout = api("viewer").get(f"/api/v1/experiments/{experiment.pk}/readout/").json()
    r = readout["readout"]
    assert r["control"]["units"] == len(sent["stable"])
    assert r["treatment"]["units"] == len(sent["candidate"])
    assert r["control"]["rate"] == pytest.approx(np.mean(sent["stable"]))
    assert r["treatment"]["rate"] == pytest.approx(np.mean(sent["candidate"]))
    assert not r["srm_broken"]  # the sticky split is about 50/50 by units of rows
    page = api("viewer").client
    page.force_login(ab["users"]["viewer"])
    html = page.get(f"/experiments/{experiment.pk}/").content.decode()
    assert "readmission" in html and r["verdict"].split(" (")[0][:40] in html.replace(
        "&#x27;", "'")
    assert 'id="decide-form"' not in html  # viewers read, approvers decide


def test_a_prediction_from_before_the_test_and_a_forged_one_are_refused(world, api):  # noqa: F811
    _, early = predict(world["url"], "early-user")
    v2 = _version(world["users"], world["model"], random_classifier_bytes(8))
    _release(world["users"], v2, world["env"], "ab", {**FAST_CANARY, "split": 0.5,
                                                      "duration_seconds": 3600})
    _, during = predict(world["url"], "some-user")
    forged = during[0].replace("stable.", "candidate.", 1) if during[0].startswith("stable.") \
        else during[0].replace("candidate.", "stable.", 1)
    answer = api("contributor").post("/api/v1/feedback/", {"items": [
        {"prediction_id": early[0], "outcome": 1}, {"prediction_id": forged, "outcome": 1},
        {"prediction_id": during[0], "outcome": 1}]}, format="json").json()
    assert answer["accepted"] == 1
    assert [(e["index"], e["code"]) for e in answer["errors"]] == [
        (1, "invalid_signature"), (0, "unknown_prediction")]


def test_promote_decision_goes_through_the_rollout_and_closes_the_test(ab, api):
    experiment, deployment = ab["experiment"], ab["deployment"]
    _, ids = predict(ab["url"], "u-1")
    viewer = api("viewer").post(f"/api/v1/experiments/{experiment.pk}/decide/",
                                {"decision": "promote", "comment": "looks good"}, format="json")
    assert viewer.status_code == 403
    no_comment = api("approver").post(f"/api/v1/experiments/{experiment.pk}/decide/",
                                      {"decision": "promote", "comment": " "}, format="json")
    assert no_comment.status_code == 400

    extended = api("approver").post(f"/api/v1/experiments/{experiment.pk}/decide/",
                                    {"decision": "extend", "comment": "weekend traffic",
                                     "extend_hours": 48}, format="json")
    assert extended.status_code == 201, extended.content
    deployment.refresh_from_db()
    assert deployment.status == "progressing"
    assert deployment.spec["duration_seconds"] >= 48 * 3600
    assert deployment.state["generation"] == experiment.generation  # same split, same test

    promoted = api("approver").post(f"/api/v1/experiments/{experiment.pk}/decide/",
                                    {"decision": "promote", "comment": "B cuts readmissions"},
                                    format="json")
    assert promoted.status_code == 201, promoted.content
    deployment = settled(Deployment.objects.get(pk=deployment.pk))
    experiment.refresh_from_db()
    assert deployment.status == "succeeded" and experiment.decision == "promote"
    assert deployments.serving_version(ab["env"], ab["model"]).pk == ab["v2"].pk
    assert [d.decision for d in ExperimentDecision.objects.filter(experiment=experiment)] == \
        ["extend", "promote"]
    assert ExperimentDecision.objects.get(decision="promote").readout["verdict"]
    served = requests.post(f"{ab['url']}/v2/models/tumor-classifier/infer", json={
        "inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP64", "data": [ROW]}]},
        timeout=5)
    assert served.headers["X-Variant"] == "candidate"

    late = api("contributor").post("/api/v1/feedback/", {"prediction_id": ids[0],
                                                         "outcome": 1}, format="json")
    assert late.status_code == 409 and late.json()["code"] == "test_finished"
    again = api("approver").post(f"/api/v1/experiments/{experiment.pk}/decide/",
                                 {"decision": "keep", "comment": "changed my mind"},
                                 format="json")
    assert again.status_code == 409


def test_keep_decision_ends_the_test_with_the_stable(ab, api):
    experiment = ab["experiment"]
    answer = api("approver").post(f"/api/v1/experiments/{experiment.pk}/decide/",
                                  {"decision": "keep", "comment": "no gain"}, format="json")
    assert answer.status_code == 201, answer.content
    deployment = Deployment.objects.get(pk=ab["deployment"].pk)
    assert deployment.status == "kept_stable"
    assert deployments.serving_version(ab["env"], ab["model"]).pk == ab["v1"].pk


def test_bad_outcome_settings_are_refused_when_the_release_is_requested(world, api):  # noqa: F811
    from portal.errors import ValidationFailed
    from portal.releases import services as releases

    v2 = _version(world["users"], world["model"], random_classifier_bytes(9))
    with pytest.raises(ValidationFailed) as caught:
        releases.request_approval(world["users"]["contributor"], v2, world["env"],
                                  strategy="ab", strategy_params={
                                      "split": 0.5, "outcome": {"kind": "ordinal"}})
    assert "outcome kind" in caught.value.detail
