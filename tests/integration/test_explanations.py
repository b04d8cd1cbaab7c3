"""SHAP explanations of registered versions: computed by the worker task when a version
becomes ready, stored only when additive, shown on the version page and through the API."""

import io
import re

import pytest
from django.test import Client

from portal.registry import services
from portal.registry.models import Explanation
from tests.portal_fixtures import metadata

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(users, project, cancer_frame, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = services.upload_dataset(
            users["contributor"], project, name="cancer",
            file=io.BytesIO(cancer_frame.to_csv(index=False).encode()), filename="cancer.csv",
            target="target")
    created.refresh_from_db()
    return created


def register(users, model, artifact, capture, **meta):
    with capture(execute=True):  # validation, then the explanation, run as the worker would
        version = services.register_version(users["contributor"], model, io.BytesIO(artifact),
                                            metadata(**meta))
    version.refresh_from_db()
    return version


def test_a_ready_version_is_explained_by_the_worker(users, clf, dataset, forest_bytes, settings,
                                                    django_capture_on_commit_callbacks):
    settings.MODELGATE_EXPLAIN_VERSIONS = True
    version = register(users, clf, forest_bytes, django_capture_on_commit_callbacks,
                       dataset=dataset.pk)
    assert version.status == "ready"
    explanation = Explanation.objects.get(version=version)
    assert explanation.status == "ready", explanation.reason
    assert explanation.method == "tree" and explanation.output == "probability of class 1"
    assert explanation.sample_size == 500 and len(explanation.values) == 500
    assert explanation.max_additivity_error < 1e-6
    assert [i["feature"] for i in explanation.importance][0] in explanation.feature_names


def test_the_api_and_the_page_show_it_to_viewers(api, users, clf, dataset, skops_bytes,
                                                 settings, django_capture_on_commit_callbacks):
    settings.MODELGATE_EXPLAIN_VERSIONS = True
    version = register(users, clf, skops_bytes, django_capture_on_commit_callbacks,
                       dataset=dataset.pk)
    body = api("viewer").get(f"/api/v1/versions/{version.pk}/explanation/").json()
    assert body["status"] == "ready" and body["method"] == "linear"
    assert body["output"] == "log-odds of class 1" and body["target_class"] == "1"
    assert body["summary"].startswith("The 3 inputs that move this model most are")
    assert "values" not in body
    full = api("viewer").get(f"/api/v1/versions/{version.pk}/explanation/?values=1").json()
    assert len(full["values"]) == len(full["rows"]) == full["sample_size"]
    assert api("outsider").get(
        f"/api/v1/versions/{version.pk}/explanation/").status_code == 404

    client = Client()
    client.force_login(users["viewer"])
    url = f"/p/clinical-ml/m/tumor-classifier/v/{version.number}/"
    page = client.get(url + "?feature=mean+area&row=3").content.decode()
    for chart in ("shap-importance", "shap-beeswarm", "shap-dependence", "shap-waterfall"):
        assert f'data-chart="{chart}"' in page
    assert 'id="explain-summary"' in page and "Effect of mean area by its value" in page
    assert client.get(url + "?row=nonsense&feature=nope").status_code == 200

    # "Show" answers with a fragment for htmx, a page without it; "Explain your rows" is a
    # form posting to the portal, permission-checked as the API's explain is.
    fragment = client.get(url + "explanation/?row=2", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and b"<html" not in fragment.content
    assert b'data-chart="shap-waterfall"' in fragment.content
    assert b"<html" in client.get(url + "explanation/?row=2").content
    rows = ",".join(str(v) for v in full["rows"][0])
    pending = client.post(url + "explain/", {"rows": rows}, headers={"HX-Request": "true"})
    assert "A worker is explaining 1 row" in pending.content.decode()  # then it asks again
    item = version.instance_explanations.get()
    services.explain_instances(item.pk)  # as the worker does
    answer = client.get(url + f"explain/{item.pk}/", headers={"HX-Request": "true"})
    assert b"probability" in answer.content and b'id="explained-rows"' in answer.content
    refused = client.post(url + "explain/", {"rows": "1,2"}, headers={"HX-Request": "true"})
    assert b"the model takes 5" in refused.content
    outsider = Client()
    outsider.force_login(users["outsider"])
    assert outsider.post(url + "explain/", {"rows": rows}).status_code == 404
    assert outsider.get(url + "explanation/").status_code == 404


def test_without_a_reference_dataset_the_reason_is_shown(api, users, clf, skops_bytes, settings,
                                                         django_capture_on_commit_callbacks):
    settings.MODELGATE_EXPLAIN_VERSIONS = True
    version = register(users, clf, skops_bytes, django_capture_on_commit_callbacks)
    explanation = Explanation.objects.get(version=version)
    assert explanation.status == "failed" and "no reference dataset" in explanation.reason
    body = api("viewer").get(f"/api/v1/versions/{version.pk}/explanation/").json()
    assert body["status"] == "failed" and body["importance"] == []
    client = Client()
    client.force_login(users["viewer"])
    page = client.get(f"/p/clinical-ml/m/tumor-classifier/v/{version.number}/").content.decode()
    assert "No explanation:" in page and "no reference dataset" in page


def test_explaining_twice_computes_once_and_invalid_versions_are_skipped(
        users, clf, dataset, skops_bytes, django_capture_on_commit_callbacks):
    version = register(users, clf, skops_bytes, django_capture_on_commit_callbacks,
                       dataset=dataset.pk)
    assert not Explanation.objects.exists()  # explaining is off in the tests by default
    first = services.explain_version(version.pk)
    second = services.explain_version(version.pk)
    assert first.pk == second.pk and second.updated_at == first.updated_at
    assert services.explain_version(999999) is None


def test_a_release_request_gets_the_diff_against_the_champion(
        api, users, clf, dataset, skops_bytes, forest_bytes, settings,
        django_capture_on_commit_callbacks):
    from portal.registry.services import set_alias
    from portal.releases import services as releases

    settings.MODELGATE_EXPLAIN_VERSIONS = True
    champion = register(users, clf, skops_bytes, django_capture_on_commit_callbacks,
                        dataset=dataset.pk, metrics={"roc_auc": 0.97, "accuracy": 0.93})
    candidate = register(users, clf, forest_bytes, django_capture_on_commit_callbacks,
                         dataset=dataset.pk, metrics={"roc_auc": 0.95, "accuracy": 0.94},
                         classes={"0": "malignant", "1": "benign"})
    set_alias(users["approver"], clf, "champion", champion)
    production = releases.create_environment(users["owner"], clf.project, name="production")
    with django_capture_on_commit_callbacks(execute=True):
        request = releases.request_approval(users["contributor"], candidate, production)
    request.refresh_from_db()
    diff = request.release_diff
    assert diff["status"] == "ready", diff
    assert diff["champion_version"] == champion.number and diff["rows"] == 569
    assert {m["metric"]: m["verdict"] for m in diff["metrics"]} == {
        "accuracy": "better", "roc_auc": "worse"}
    assert 0 < diff["disagreement_rate"] < 0.5
    assert diff["importance"]["attribution_drift"] is not None
    body = api("viewer").get(f"/api/v1/approval-requests/{request.pk}/").json()
    assert body["release_diff"]["status"] == "ready"
    client = Client()
    client.force_login(users["approver"])
    page = client.get(request.get_absolute_url()).content.decode()
    for part in ('id="release-diff"', 'id="deltas"', 'id="diff-importance"',
                 'id="diff-rows"', "Attribution drift"):
        assert part in page
    assert diff["score"] == "probability of “benign”"  # the classes by their names
    assert re.search(r"→ (benign|malignant)", page) and "class 1" not in page


# -- on demand ---------------------------------------------------------------------------------


@pytest.fixture
def forest_version(users, clf, dataset, forest_bytes, django_capture_on_commit_callbacks):
    return register(users, clf, forest_bytes, django_capture_on_commit_callbacks,
                    dataset=dataset.pk)


def test_explain_rows_on_demand_and_the_same_rows_are_answered_from_the_store(
        api, forest_version, cancer_frame):
    from tests.portal_fixtures import FEATURES

    rows = cancer_frame[FEATURES].head(3).to_numpy().tolist()
    url = f"/api/v1/versions/{forest_version.pk}/explain/"
    first = api("viewer").post(url, {"instances": rows}, format="json")
    # The worker takes it after the request commits: 202 and where to look.
    assert first.status_code == 202 and first.json()["status"] == "pending", first.json()
    assert first["Location"] == f"{url}{first.json()['id']}/"
    body = api("viewer").get(first["Location"]).json()
    assert body["status"] == "ready", body
    result = body["result"]
    assert len(result["predictions"]) == 3 and len(result["values"]) == 3
    for values, output in zip(result["values"], result["outputs"], strict=True):
        assert abs(result["base_value"] + sum(values) - output) < 1e-6
    assert result["background"].startswith("569 rows of cancer")
    as_objects = [dict(zip(FEATURES, row, strict=True)) for row in rows]
    again = api("viewer").post(url, {"instances": as_objects}, format="json")
    assert again.status_code == 200  # the same question, answered once, from the store
    assert again.json()["id"] == body["id"] and again.json()["result"] == result
    fetched = api("viewer").get(f"{url}{body['id']}/").json()
    assert fetched["status"] == "ready"
    assert api("viewer").get(f"{url}999999/").status_code == 404


@pytest.mark.parametrize("instances, field", [
    ([], "instances"),
    ([[1.0, 2.0]], "instances[0]"),
    ([{"mean radius": 1.0}], "instances[0]"),
    ([[1.0, 2.0, 3.0, 4.0, "x"]], "instances[0]"),
    ([[1.0] * 5] * 101, "instances"),
])
def test_bad_explain_requests_are_refused(api, forest_version, instances, field):
    response = api("viewer").post(f"/api/v1/versions/{forest_version.pk}/explain/",
                                  {"instances": instances}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["field"] == field


def test_non_finite_values_are_refused(api, forest_version):
    response = api("viewer").post(f"/api/v1/versions/{forest_version.pk}/explain/",
                                  '{"instances": [[1, 2, 3, 4, 1e999]]}',
                                  content_type="application/json")
    assert response.status_code == 400 and "finite" in response.json()["detail"]


def test_invalid_versions_and_outsiders_cannot_ask(api, users, clf, forest_version):
    from tests.portal_fixtures import random_classifier_bytes, schema

    assert api("outsider").post(f"/api/v1/versions/{forest_version.pk}/explain/",
                                {"instances": [[1.0] * 5]}, format="json").status_code == 404
    bad = api("contributor").upload(clf.pk, random_classifier_bytes(9),
                                    metadata(input_schema=schema(["a"]))).json()
    refused = api("viewer").post(f"/api/v1/versions/{bad['id']}/explain/",
                                 {"instances": [[1.0]]}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "version_not_ready"


def test_a_slow_explanation_is_stopped_with_a_clear_answer(api, forest_version):
    item = services.request_instance_explanation(
        forest_version.model.project.memberships.first().user, forest_version, [[1.0] * 5])
    done = services.explain_instances(item.pk, timed_out=True)
    assert done.status == "failed" and "longer than the time allowed" in done.reason
