"""Registering versions through the REST API: the happy path and every kind of bad input."""

import hashlib
import json

import pytest

from portal.registry.models import ModelVersion
from tests.portal_fixtures import FEATURES, metadata, random_classifier_bytes, schema, stored_files

pytestmark = pytest.mark.django_db


def test_upload_stores_artifact_hashes_it_and_validates_it_in_a_task(api, clf, skops_bytes,
                                                                     artifact_root):
    response = api("contributor").upload(clf.pk, skops_bytes, metadata(label="1.0.0"))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["number"] == 1
    assert body["artifact"]["sha256"] == hashlib.sha256(skops_bytes).hexdigest()
    assert body["artifact"]["unsafe"] is False
    assert body["code"] == {"repository": "https://git.example.com/ml/cancer",
                            "commit": "a1b2c3d4e5f6"}
    version = ModelVersion.objects.get(pk=body["id"])
    assert version.status == "ready", version.status_reason
    assert version.estimator == "sklearn.pipeline.Pipeline(StandardScaler → LogisticRegression)"
    assert version.classes == [0, 1]
    files = stored_files(artifact_root)
    assert len(files) == 1 and files[0].read_bytes() == skops_bytes

    detail = api("viewer").get(f"/api/v1/versions/{version.pk}/").json()
    assert detail["status"] == "ready" and detail["metrics"]["roc_auc"] == 0.97
    download = api("viewer").get(f"/api/v1/versions/{version.pk}/artifact/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == skops_bytes
    assert download["X-Checksum-SHA256"] == body["artifact"]["sha256"]


def test_version_numbers_increase_and_parent_builds_lineage(api, clf, skops_bytes, forest_bytes):
    client = api("contributor")
    first = client.upload(clf.pk, skops_bytes, metadata()).json()
    second = client.upload(clf.pk, forest_bytes, metadata(parent=1)).json()
    assert (first["number"], second["number"]) == (1, 2)
    assert second["parent"] == {"id": first["id"], "number": 1}
    graph = client.get(f"/api/v1/versions/{second['id']}/lineage/").json()
    assert {n["id"] for n in graph["nodes"]} == {f"version:{first['id']}",
                                                 f"version:{second['id']}"}
    assert graph["edges"] == [{"source": f"version:{first['id']}",
                               "target": f"version:{second['id']}", "kind": "derived_from"}]


def _assert_nothing_written(artifact_root, clf):
    assert stored_files(artifact_root) == []
    assert not ModelVersion.objects.filter(model=clf).exists()


@pytest.mark.parametrize("meta, field", [
    ("{not json", "metadata"),
    (json.dumps([1, 2]), "metadata"),
    (json.dumps({"metrics": {"auc": 0.9}}), "input_schema"),
    (json.dumps(metadata(input_schema=[{"name": "x", "type": "complex"}])), "input_schema"),
    (json.dumps(metadata(metrics={"auc": "high"})), "metrics"),
    (json.dumps(metadata(code={"commit": "not-a-sha"})), "code"),
    (json.dumps(metadata(label="v1")), "label"),
    (json.dumps(metadata(parent=7)), "parent"),
    (json.dumps(metadata(dataset="no-such-dataset")), "dataset"),
    (json.dumps(metadata(colour="blue")), "metadata"),
])
def test_malformed_metadata_is_refused_and_leaves_nothing(api, clf, skops_bytes, artifact_root,
                                                          meta, field):
    response = api("contributor").upload(clf.pk, skops_bytes, meta)
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] and body["detail"]
    assert body.get("field") == field
    _assert_nothing_written(artifact_root, clf)


def test_missing_artifact_is_a_validation_error(api, clf):
    response = api("contributor").post(f"/api/v1/models/{clf.pk}/versions/",
                                       {"metadata": json.dumps(metadata())}, format="multipart")
    assert response.status_code == 400
    assert response.json()["field"] == "artifact"


def test_file_that_is_not_a_model_is_refused(api, clf, artifact_root):
    response = api("contributor").upload(clf.pk, b"hello, I am a text file", metadata())
    assert response.status_code == 400
    assert response.json()["code"] == "not_a_model"
    _assert_nothing_written(artifact_root, clf)


def test_pickle_is_refused_unless_operator_and_staff_allow_it(api, clf, pickle_bytes,
                                                              artifact_root, settings):
    response = api("contributor").upload(clf.pk, pickle_bytes, metadata(), name="m.joblib")
    assert response.status_code == 400
    assert response.json()["code"] == "unsafe_artifact"
    _assert_nothing_written(artifact_root, clf)

    settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS = True
    api("staff").patch(f"/api/v1/projects/{clf.project_id}/", {"allow_unsafe_artifacts": True},
                       format="json")
    response = api("contributor").upload(clf.pk, pickle_bytes, metadata(), name="m.joblib")
    assert response.status_code == 201
    assert response.json()["artifact"]["unsafe"] is True
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == "ready", version.status_reason
    # Loaded once in the sandbox and kept as skops: what everything else loads.
    assert version.converted_uri.endswith(".converted.skops") and version.converted_sha256


def test_pickle_that_raises_when_loaded_is_marked_invalid(api, clf, exploding_pickle, settings):
    settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS = True
    api("staff").patch(f"/api/v1/projects/{clf.project_id}/", {"allow_unsafe_artifacts": True},
                       format="json")
    response = api("contributor").upload(clf.pk, exploding_pickle, metadata())
    assert response.status_code == 201
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == "invalid"
    assert version.status_reason.startswith("corrupt_artifact:")
    assert "ValueError" in version.status_reason


@pytest.mark.parametrize("declared, reason", [
    (FEATURES[:4], "expects 5 features but the input schema declares 4"),
    (["a", "b", "c", "d", "e"], "feature names differ"),
    (list(reversed(FEATURES)), "different order"),
])
def test_schema_that_does_not_match_the_model_is_invalid(api, clf, skops_bytes, declared, reason):
    response = api("contributor").upload(clf.pk, skops_bytes,
                                         metadata(input_schema=schema(declared)))
    assert response.status_code == 201
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == "invalid"
    assert version.status_reason.startswith("schema_mismatch:")
    assert reason in version.status_reason


def test_regressor_without_predict_proba_cannot_be_a_classifier(api, project, users,
                                                                cancer_frame):
    from sklearn.linear_model import Ridge

    from ops.artifacts import dump_skops
    from portal.registry import services

    model = services.create_model(users["contributor"], project, name="wrong-task",
                                  task="classification")
    ridge = Ridge().fit(cancer_frame[FEATURES], cancer_frame["target"])
    response = api("contributor").upload(model.pk, dump_skops(ridge), metadata())
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == "invalid" and "predict_proba" in version.status_reason


def test_duplicate_artifact_is_a_conflict_and_leaves_no_second_file(api, clf, skops_bytes,
                                                                    artifact_root):
    client = api("contributor")
    assert client.upload(clf.pk, skops_bytes, metadata()).status_code == 201
    response = client.upload(clf.pk, skops_bytes, metadata())
    assert response.status_code == 409
    assert response.json()["code"] == "duplicate_version"
    assert len(stored_files(artifact_root)) == 1
    assert ModelVersion.objects.filter(model=clf).count() == 1


def test_duplicate_label_is_a_conflict(api, clf, skops_bytes, forest_bytes, artifact_root):
    client = api("contributor")
    assert client.upload(clf.pk, skops_bytes, metadata(label="1.0.0")).status_code == 201
    response = client.upload(clf.pk, forest_bytes, metadata(label="1.0.0"))
    assert response.status_code == 409 and response.json()["field"] == "label"
    assert len(stored_files(artifact_root)) == 1


def test_viewer_cannot_register_and_outsider_cannot_see(api, clf, skops_bytes, artifact_root):
    response = api("viewer").upload(clf.pk, skops_bytes, metadata())
    assert response.status_code == 403
    assert response.json()["code"] == "role_required"
    response = api("outsider").upload(clf.pk, skops_bytes, metadata())
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    _assert_nothing_written(artifact_root, clf)


def test_unknown_model_is_not_found(api, skops_bytes):
    response = api("contributor").upload(999999, skops_bytes, metadata())
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_anonymous_request_is_unauthenticated(api, clf):
    response = api(None).get("/api/v1/versions/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_oversized_upload_is_refused_before_storage(api, clf, skops_bytes, artifact_root,
                                                   settings):
    settings.MODELGATE_MAX_ARTIFACT_BYTES = len(skops_bytes) - 1
    response = api("contributor").upload(clf.pk, skops_bytes, metadata())
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    _assert_nothing_written(artifact_root, clf)


def test_oversized_upload_by_declared_length_is_refused_without_reading(api, clf, settings):
    settings.MODELGATE_MAX_ARTIFACT_BYTES = 1000
    client = api("contributor").client
    response = client.generic("POST", f"/api/v1/models/{clf.pk}/versions/", b"x" * 10,
                              content_type="multipart/form-data; boundary=zzz",
                              CONTENT_LENGTH=str(50 * 1024 * 1024))
    assert response.status_code == 413


def test_truncated_upload_is_refused(api, clf, skops_bytes, artifact_root):
    boundary = "----modelgate"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n"
        f"{json.dumps(metadata())}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; "
        f"filename=\"model.skops\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode() + skops_bytes[: len(skops_bytes) // 2]  # the connection died mid-file
    client = api("contributor").client
    response = client.generic("POST", f"/api/v1/models/{clf.pk}/versions/", body,
                              content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 400, response.content
    assert response.json()["code"] in ("parse_error", "truncated_upload", "corrupt_artifact",
                                       "validation_error")
    _assert_nothing_written(artifact_root, clf)


def test_json_body_is_the_wrong_media_type(api, clf):
    response = api("contributor").post(f"/api/v1/models/{clf.pk}/versions/",
                                       {"metadata": metadata()}, format="json")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_versions_are_immutable(api, clf, skops_bytes):
    from portal.registry.models import ImmutableVersionError

    api("contributor").upload(clf.pk, skops_bytes, metadata())
    version = ModelVersion.objects.get(model=clf)
    version.metrics = {"roc_auc": 1.0}
    with pytest.raises(ImmutableVersionError):
        version.save()
    response = api("contributor").patch(f"/api/v1/versions/{version.pk}/", {"metrics": {}},
                                        format="json")
    assert response.status_code == 405
    assert ModelVersion.objects.get(pk=version.pk).metrics["roc_auc"] == 0.97


def test_version_list_filters_and_paginates(api, clf, skops_bytes, forest_bytes, project, users):
    from portal.registry import services

    client = api("contributor")
    client.upload(clf.pk, skops_bytes, metadata(tags=["baseline"]))
    client.upload(clf.pk, forest_bytes, metadata(tags=["forest"]))
    other = services.create_model(users["contributor"], project, name="other",
                                  task="classification")
    client.upload(other.pk, skops_bytes, metadata())

    def numbers(query):
        response = client.get(f"/api/v1/versions/?{query}")
        assert response.status_code == 200, response.json()
        return sorted((r["model_name"], r["number"]) for r in response.json()["results"])

    assert numbers("tag=forest") == [("tumor-classifier", 2)]
    assert numbers("model_name=other") == [("other", 1)]
    assert numbers(f"model={clf.pk}&status=ready") == [("tumor-classifier", 1),
                                                       ("tumor-classifier", 2)]
    assert numbers("created_after=2999-01-01T00:00:00Z") == []
    assert numbers("search=other") == [("other", 1)]
    page = client.get("/api/v1/versions/?page_size=2").json()
    assert len(page["results"]) == 2 and page["next"]
    rest = client.get(page["next"]).json()
    assert len(rest["results"]) == 1 and rest["next"] is None
    assert api("outsider").get("/api/v1/versions/").json()["results"] == []


def test_version_list_costs_the_same_queries_whatever_the_page_size(api, clf):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api("contributor")
    for seed in range(6):
        client.upload(clf.pk, random_classifier_bytes(seed), metadata(parent=seed or None))
    counts = []
    for size in (1, 6):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(f"/api/v1/versions/?page_size={size}")
        assert len(response.json()["results"]) == size
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


def test_artifact_lost_from_the_store_makes_the_version_invalid(users, clf, skops_bytes,
                                                               django_capture_on_commit_callbacks):
    import io

    from portal.registry import services
    from portal.registry.storage import get_store

    with django_capture_on_commit_callbacks(execute=False):
        version = services.register_version(users["contributor"], clf, io.BytesIO(skops_bytes),
                                            metadata())
    get_store().delete(version.artifact_uri)
    version = services.validate_version(version.pk)
    assert version.status == "invalid"
    assert version.status_reason.startswith("artifact_missing:")


def test_stored_artifact_that_changed_fails_its_sha256_check(users, clf, skops_bytes,
                                                            forest_bytes,
                                                            django_capture_on_commit_callbacks):
    import io
    from pathlib import Path

    from portal.registry import services

    with django_capture_on_commit_callbacks(execute=False):
        version = services.register_version(users["contributor"], clf, io.BytesIO(skops_bytes),
                                            metadata())
    Path(version.artifact_uri.removeprefix("file://")).write_bytes(forest_bytes)
    version = services.validate_version(version.pk)
    assert version.status == "invalid"
    assert version.status_reason.startswith("sha256_mismatch:")


def test_explanations_load_no_artifact_that_changed_after_validation(
        users, clf, skops_bytes, forest_bytes, django_capture_on_commit_callbacks):
    """Every load re-hashes the file, not only validation's: a file swapped in the store
    after the version became ready is refused when a worker loads it to explain it."""
    import io
    from pathlib import Path

    from ops.exceptions import ArtifactError
    from portal.registry import services

    with django_capture_on_commit_callbacks(execute=False):
        version = services.register_version(users["contributor"], clf, io.BytesIO(skops_bytes),
                                            metadata())
    version = services.validate_version(version.pk)
    assert version.status == "ready"
    assert services.load_version_model(version) is not None
    Path(version.artifact_uri.removeprefix("file://")).write_bytes(forest_bytes)
    with pytest.raises(ArtifactError) as info:
        services.load_version_model(version)
    assert info.value.code == "sha256_mismatch"


def test_fast_version_document_matches_the_declared_serializer(api, clf, skops_bytes,
                                                               forest_bytes):
    """ModelVersionSerializer builds its document by hand for speed; it must say exactly
    what DRF's field machinery (the published schema) would."""
    from rest_framework import serializers as drf

    from portal.registry.api.serializers import ModelVersionSerializer
    from portal.registry.queries import versions_for

    client = api("contributor")
    client.upload(clf.pk, skops_bytes, metadata(label="1.0.0"))
    client.upload(clf.pk, forest_bytes, metadata(parent=1, tags=["b", "a"]))
    for version in versions_for(clf.created_by):
        fast = ModelVersionSerializer(version).data
        declared = drf.ModelSerializer.to_representation(ModelVersionSerializer(), version)
        assert fast == dict(declared)
