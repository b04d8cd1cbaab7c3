"""``?deployment=`` on the experiments list, and refusals of a version's metadata that
state the rule they apply (issue 15)."""

from __future__ import annotations

import pytest

from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration]


def test_experiments_filter_by_deployment(api, matrix_world):
    deployment, experiment = matrix_world["deployment"], matrix_world["experiment"]
    found = api("viewer").get(f"/api/v1/experiments/?deployment={deployment.pk}").json()
    assert [e["id"] for e in found["results"]] == [experiment.pk]
    other = matrix_world["rollouts"]["pause"]
    assert api("viewer").get(f"/api/v1/experiments/?deployment={other.pk}").json()[
        "results"] == []
    assert api("viewer").get("/api/v1/experiments/?deployment=x").status_code == 400


@pytest.mark.parametrize(("key", "value", "words"), [
    ("code", {"commit": "abc123"}, ["7 to 64 hexadecimal characters", "'abc123'"]),
    ("code", {"commit": "g" * 40}, ["7 to 64 hexadecimal characters"]),
    ("label", "1.4", ["MAJOR.MINOR.PATCH", "2.0.0-rc.1", "'1.4'"]),
    ("label", "v1.4.0", ["semantic version", "'v1.4.0'"]),
])
def test_metadata_refusals_state_the_rule(api, clf, key, value, words):
    answer = api("contributor").upload(clf.pk, random_classifier_bytes(5),
                                       metadata(**{key: value}))
    assert answer.status_code == 400 and answer.json()["field"] == key
    for word in words:
        assert word in answer.json()["detail"], answer.json()["detail"]


@pytest.mark.parametrize("commit", ["abc1234", "A" * 40, "0" * 64])
def test_commits_within_the_rule_are_taken(api, clf, commit):
    answer = api("contributor").upload(clf.pk, random_classifier_bytes(6),
                                       metadata(code={"commit": commit}))
    assert answer.status_code == 201, answer.content
