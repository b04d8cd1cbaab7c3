"""XGBoost, LightGBM and ONNX versions end to end: uploaded through the API, told apart by
their bytes, validated by the worker (eager tasks here), and served by a real model-server
process from the plan the portal writes for them."""

from __future__ import annotations

import io
import json
import pickle

import lightgbm
import numpy as np
import pytest
import requests
import xgboost
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from portal.registry import services
from portal.registry.models import ModelVersion
from portal.releases.specs import variant_of
from tests.integration.test_model_server import ServerProcess, free_port, scrape, total
from tests.portal_fixtures import FEATURES, metadata, stored_files
from tests.unit.test_native_models import CRAFTED_UBJSON, SHORT_LIGHTGBM_TREE

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


@pytest.fixture(scope="module")
def native_files(tmp_path_factory):
    """A tiny model of each format on the cancer data's five features, as saved by its
    framework: {key: (file name, bytes)}, and the models to compare answers with."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame, target = data.data[FEATURES], data.target
    folder = tmp_path_factory.mktemp("native")
    xgb = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(frame, target)
    xgb.save_model(folder / "m.json")
    xgb.get_booster().save_model(folder / "m.ubj")
    lgb = lightgbm.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1).fit(frame, target)
    lgb.booster_.save_model(folder / "m.txt")
    rows32 = frame.to_numpy(dtype=np.float32)
    linear = LogisticRegression(max_iter=1000).fit(rows32, target)
    (folder / "m.onnx").write_bytes(to_onnx(linear, rows32[:1]).SerializeToString())  # ZipMap
    files = {key: (name, (folder / name).read_bytes()) for key, name in
             (("xgboost", "m.json"), ("ubjson", "m.ubj"), ("lightgbm", "m.txt"),
              ("onnx", "m.onnx"))}
    return files, frame, {"xgboost": xgb, "ubjson": xgb, "lightgbm": lgb, "onnx": linear}


def test_each_format_is_uploaded_validated_and_served_by_a_model_server(
        api, clf, native_files, artifact_root, tmp_path):
    files, frame, models = native_files
    client = api("contributor")
    versions = {}
    for key, (name, content) in files.items():
        response = client.upload(clf.pk, content, metadata(), name=name)
        assert response.status_code == 201, response.json()
        assert response.json()["artifact"]["unsafe"] is False
        version = ModelVersion.objects.get(pk=response.json()["id"])
        assert version.status == "ready", (key, version.status_reason)
        assert version.classes == [0, 1]
        versions[key] = version
    assert [versions[k].artifact_format for k in files] == ["xgboost", "xgboost", "lightgbm",
                                                            "onnx"]
    assert versions["xgboost"].estimator == "xgboost.Booster (binary:logistic)"
    assert versions["lightgbm"].framework.startswith("lightgbm ")
    assert versions["onnx"].framework.startswith("onnxruntime ")
    suffixes = sorted(p.suffix for p in stored_files(artifact_root))
    assert suffixes == [".json", ".onnx", ".txt", ".ubj"]
    download = client.get(f"/api/v1/versions/{versions['ubjson'].pk}/artifact/")
    assert download["Content-Disposition"].endswith('.ubj"')

    # The plan a release writes for these versions, served by a real model server.
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps({"endpoint": "cancer", "generation": 1, "variants": [
        {**variant_of(version, key).to_dict(), "weight": 0.25}
        for key, version in versions.items()]}))
    server = ServerProcess("native", plan_path,
                           ["--plan", str(plan_path), "--port", str(free_port()),
                            "--log-level", "warning"], {}, tmp_path / "server.log")
    try:
        server.wait_generation(1, timeout=60)
        rows = frame.to_numpy()[:4]
        for key, model in models.items():
            answer = requests.post(f"{server.base}/v2/models/{key}/infer",
                                   json={"instances": rows.tolist()}, timeout=10)
            assert answer.status_code == 200, answer.text
            outputs = {o["name"]: o for o in answer.json()["outputs"]}
            proba = np.asarray(outputs["predict_proba"]["data"]).reshape(4, 2)
            expected = model.predict_proba(rows.astype(np.float32) if key == "onnx"
                                           else frame.iloc[:4])
            np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-6)
            assert outputs["predict"]["data"] == list(expected.argmax(axis=1))
            assert outputs["predict_proba"]["parameters"]["classes"] == [0, 1]
            assert len(answer.json()["parameters"]["prediction_ids"]) == 4  # A/B feedback ids
        # The predicted classes monitoring and rollout analysis read, per variant.
        samples = scrape(server.base)
        for key in models:
            assert total(samples, "modelgate_predictions_total", variant=key) == 4
    finally:
        server.stop()


def test_the_schema_is_read_from_a_model_that_names_its_features(users, clf, native_files):
    files, _, _ = native_files
    version = services.validate_version(services.register_version(
        users["contributor"], clf, io.BytesIO(files["xgboost"][1]), metadata(input_schema=[]),
        schema_from="auto").pk)
    assert version.status == "ready", version.status_reason
    assert [f["name"] for f in version.input_schema] == FEATURES
    assert version.schema_source == "artifact"


@pytest.mark.parametrize("key, schema, words", [
    ("xgboost", FEATURES[:4], "the model expects 5 features but the input schema declares 4"),
    ("lightgbm", ["x", *FEATURES[1:]], "feature names differ from the input schema"),
    ("onnx", FEATURES + ["extra"], "the model expects 5 features but the input schema declares 6"),
])
def test_a_schema_that_does_not_match_the_model_leaves_the_version_invalid_in_words(
        api, clf, native_files, key, schema, words):
    files, _, _ = native_files
    name, content = files[key]
    meta = metadata(input_schema=[{"name": n, "type": "double"} for n in schema])
    response = api("contributor").upload(clf.pk, content, meta, name=name)
    assert response.status_code == 201, response.json()
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == "invalid"
    assert version.status_reason.startswith("schema_mismatch: ") and words in \
        version.status_reason


def test_a_pickle_named_model_json_is_treated_as_a_pickle(api, clf, fitted_classifier,
                                                          artifact_root):
    response = api("contributor").upload(clf.pk, pickle.dumps(fitted_classifier, protocol=4),
                                         metadata(), name="model.json")
    assert response.status_code == 400
    assert response.json()["code"] == "unsafe_artifact"
    assert stored_files(artifact_root) == []



# XGBoost copies the crafted array's 64 MiB from a 74-byte buffer and checks the bounds
# after: the copy crashes where the bytes past the buffer are unmapped (a small process, as
# in tests/unit/test_native_models.py), and in a child forked from a large test process it
# can find 64 MiB mapped and reach the check instead. Either way the version is invalid in
# words and the worker lives; LightGBM's abort is certain.
XGBOOST_WORDS = ("the XGBoost file crashed its parser: stopped by signal SIGSEGV",
                 "the XGBoost model cannot be read: ")


@pytest.mark.parametrize("name, content, words", [
    ("model.ubj", CRAFTED_UBJSON, XGBOOST_WORDS),
    ("model.txt", SHORT_LIGHTGBM_TREE.encode(),
     ("the LightGBM file crashed its parser: stopped by signal SIGABRT",)),
])
def test_a_file_that_crashes_its_parser_leaves_the_version_invalid_not_the_worker_dead(
        api, clf, name, content, words):
    """Validation loads native files in a forked child: the crash ends the child, and the
    version (validated here, in the test's own process) is invalid in words."""
    meta = metadata(input_schema=[{"name": n, "type": "double"} for n in ("a", "b")])
    response = api("contributor").upload(clf.pk, content, meta, name=name)
    assert response.status_code == 201, response.json()
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == "invalid"
    assert version.status_reason.startswith("corrupt_artifact: ")
    reason = version.status_reason.removeprefix("corrupt_artifact: ")
    assert reason == words[0] or reason.startswith(words[1:]), version.status_reason
