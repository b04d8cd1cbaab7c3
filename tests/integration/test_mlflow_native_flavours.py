"""MLflow's xgboost, lightgbm and onnx flavours imported from a real ``mlflow server``
(decisions 62 and 66; the server and the models: tests/integration/mlflow_fixtures.py).

Each model is logged with a signature and registered by MLflow's own client, imported
through the API (the worker runs eagerly), validated, and loaded by the model server's
loader, whose answer for one row must be what the framework itself answered in MLflow's
virtualenv. What the portal refuses (LightGBM's scikit-learn API pickled, an ONNX graph
whose weights live in a file beside it) is refused naming the form and the way out."""

from __future__ import annotations

import numpy as np
import pytest

from portal.registry.models import MlflowImport, ModelVersion
from tests.portal_fixtures import FEATURES

pytestmark = [pytest.mark.django_db, pytest.mark.integration,
              pytest.mark.xdist_group("mlflow"), pytest.mark.timeout(600)]

# The first row of scikit-learn's breast cancer data, FEATURES' columns.
FIRST_ROW = [17.99, 10.38, 122.8, 1001.0, 0.1184]


@pytest.fixture
def allowed(settings):
    """The operator allows MLflow servers on private addresses (the tests' is on loopback)."""
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True


def _import(client, model_id, mlflow_native, key) -> MlflowImport:
    logged = mlflow_native[key]
    answer = client.post(f"/api/v1/models/{model_id}/versions/import-mlflow/", {
        "tracking_uri": mlflow_native["url"], "name": logged["name"],
        "version": logged["version"]}, format="json")
    assert answer.status_code == 202, answer.json()
    return MlflowImport.objects.get(pk=answer.json()["id"])


@pytest.mark.parametrize("key, flavour, suffix", [
    ("xgboost-json", "xgboost", ".json"),  # XGBClassifier, model_format="json"
    ("xgboost-ubj", "xgboost", ".ubj"),  # a Booster, MLflow's default model_format
    ("lightgbm", "lightgbm", ".txt"),  # a Booster's text model
    ("onnx", "onnx", ".onnx"),  # a skl2onnx pipeline, ZipMap probabilities
])
def test_a_native_flavour_is_imported_validated_and_served(
        api, clf, mlflow_native, allowed, artifact_root, key, flavour, suffix):
    item = _import(api("contributor"), clf.pk, mlflow_native, key)
    assert item.status == "done", item.reason
    assert item.flavour == flavour
    assert item.run_id == mlflow_native[key]["run_id"]
    version = item.version
    assert version.status == "ready", version.status_reason
    assert version.artifact_format == flavour and version.artifact_uri.endswith(suffix)
    assert not version.is_unsafe
    # The input schema is the signature's (declared, in its order), not guessed.
    assert version.schema_source == "declared"
    assert [(f["name"], f["type"]) for f in version.input_schema] == \
        [(name, "double") for name in FEATURES]
    # Lineage: the run's parameters, metrics and commit.
    assert version.params == {"model": key, "seed": "7"}
    assert 0.8 < version.metrics["accuracy"] <= 1.0
    assert version.code_commit == "0123456789abcdef0123456789abcdef01234567"

    # Served: the release path's plan entry through the model server's own loader answers
    # what the framework answered in MLflow's virtualenv.
    from ops.serving.variants import BatchingOptions, load_variant
    from portal.releases.specs import variant_of

    loaded = load_variant(variant_of(version, "imported"), base_dir=artifact_root,
                          executor=None, batching=BatchingOptions())
    labels, proba = loaded.predict_rows(np.asarray([FIRST_ROW]))
    assert proba.shape == (1, 2)
    assert proba[0, 1] == pytest.approx(mlflow_native[key]["first_row"], rel=1e-4, abs=1e-6)
    assert labels[0] == int(proba[0, 1] > 0.5)


def test_lightgbms_scikit_learn_api_pickled_by_mlflow_is_refused_naming_it(
        api, clf, mlflow_native, allowed):
    """MLflow saves an LGBMClassifier as a (cloud)pickle of the wrapper, not as LightGBM's
    text model: refused before anything is downloaded, saying what to log instead."""
    item = _import(api("contributor"), clf.pk, mlflow_native, "lightgbm-pickle")
    assert item.status == "failed"
    assert item.reason.startswith(
        "unsafe_artifact: MLflow's lightgbm flavour holds model.pkl, a pickle (cloudpickle) of "
        "lightgbm.sklearn.LGBMClassifier (LightGBM's scikit-learn API)")
    assert "mlflow.lightgbm.log_model(model.booster_, ...)" in item.reason
    assert ModelVersion.objects.filter(model=clf).count() == 0


def test_an_onnx_graph_whose_weights_mlflow_wrote_beside_it_is_left_invalid_naming_why(
        api, clf, mlflow_native, allowed):
    """mlflow.onnx saves tensors over 1 KiB to a file beside model.onnx by default; the
    portal reads no file a graph names, so the version fails validation saying how to log
    it instead."""
    item = _import(api("contributor"), clf.pk, mlflow_native, "onnx-external")
    assert item.status == "done", item.reason
    assert item.version.status == "invalid"
    reason = item.version.status_reason
    assert reason.startswith("unsafe_artifact: the ONNX graph reads 1 tensor(s) from "
                             "external files"), reason
    assert "mlflow.onnx.log_model(..., save_as_external_data=False)" in reason
