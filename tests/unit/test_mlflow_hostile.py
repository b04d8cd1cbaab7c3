"""What a hostile MLflow (whoever logs a model or moves a followed alias writes its MLmodel
file) or a hostile form can give ops/mlflow.py (decision 66): refused in words, never a
crash, a multi-gigabyte string or a request outside the model's folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ops import mlflow
from tests.unit.test_mlflow import _serve

# -- the MLmodel file: YAML that is not the shape the code assumes ---------------------------------


@pytest.mark.parametrize("document", [
    "flavors:\n  xgboost: model.json\n",  # a flavour that is a string, not a mapping
    "flavors:\n  lightgbm: [model.lgb]\n",  # ...or a list
    "flavors:\n  1: {}\n  pytorch: {}\n",  # keys that do not sort together
    "flavors:\n  " + "[" * 2000 + "]" * 2000 + ": {}\n",  # nesting past the recursion limit
    "flavors:\n  xgboost: {data: {file: model.json}}\n",  # a file name that is a mapping
    "flavors:\n  xgboost: {data: [model.json]}\n",
    "flavors:\n  sklearn: {pickled_model: 12}\n",
    "flavors:\n  sklearn: {serialization_format: [skops]}\n",
    "flavors:\n  xgboost: {data: '" + "m" * 600 + "'}\n",  # longer than a file name is
    "created: 2001-02-30\nflavors:\n  xgboost: {data: model.json}\n",  # YAML's ValueError
    "flavors:\n  xgboost: {data: model.json}\nsignature: {inputs: "
    + "[" * 5000 + "]" * 5000 + "}\n",  # a signature that is not JSON text
    "flavors:\n  xgboost: {data: model.json}\nsignature: {inputs: '"
    + "[" * 100000 + "]" * 100000 + "'}\n",  # JSON nested past the recursion limit
    "flavors:\n  xgboost: {data: model.json}\nsignature: {inputs: '[{\"name\": [1], "
    "\"type\": \"double\"}]'}\n",  # a column named by a list
])
def test_a_malformed_mlmodel_is_refused_in_words_not_raised(document):
    """Anything but MlflowError escaped run_import's handlers: the import stayed pending,
    its source blocked by mlflow_import_unique_live, re-queued and crashing forever."""
    with pytest.raises(mlflow.MlflowError):
        mlflow.read_mlmodel(document)


def test_yaml_aliases_do_not_blow_up_the_flavour_file_name():
    """A ~400-byte MLmodel whose ``data`` is a YAML alias of aliases: ``str(conf["data"])``
    expanded it. Five levels here (a 7.4 MB name); each level more is ten times that: nine
    is 74 GB, built in one C call of the import's worker."""
    levels = ["l0: &l0 [xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]"]
    for i in range(1, 6):
        levels.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    for flavour in ("xgboost: {data: *l5}", "sklearn: {pickled_model: *l5}",
                    "sklearn: {serialization_format: *l5}",
                    "lightgbm: {data: model.lgb, model_class: *l5}"):
        document = "\n".join(levels) + f"\nflavors:\n  {flavour}\n"
        assert len(document) < 500
        started = time.monotonic()
        with pytest.raises(mlflow.MlflowError) as refused:
            mlflow.read_mlmodel(document)
        assert time.monotonic() - started < 1
        assert len(refused.value.detail) < 500 and "string" in refused.value.detail


def test_the_flavours_mlflow_writes_are_still_read():
    model = mlflow.read_mlmodel("flavors:\n  lightgbm: {data: model.lgb, model_class: "
                                "lightgbm.basic.Booster}\n  python_function: {}\n")
    assert model.flavour == mlflow.Flavour("lightgbm", "model.lgb", pickled=False)
    assert mlflow.read_mlmodel("flavors:\n  sklearn:\n").flavour == mlflow.Flavour(
        "sklearn", "model.pkl", pickled=True)
    assert mlflow.read_mlmodel("flavors:\n  onnx: {data: sub/model.onnx}\n").flavour.file \
        == "sub/model.onnx"


# -- the flavour's file and the run's model path: relative to the model's folder ------------------

@pytest.mark.parametrize("path", [
    "../model.json", "./model.json", "a/../../b", "a/./b", "a//b", "/etc/passwd",
    "..\\model.json", "%2e%2e/model.json", "model.json/..", "model\n.json", "", "m" * 501,
])
def test_paths_outside_the_models_folder_are_refused(path):
    assert mlflow.path_refusal(path)
    assert mlflow.path_refusal("model.json") is None
    assert mlflow.path_refusal("data/model.onnx") is None


def _mlflow_serving(mlmodel: str):
    hits: list[str] = []

    def answer(handler):
        hits.append(handler.path)
        body = mlmodel.encode() if handler.path.endswith("/MLmodel") else b'{"learner": {}}'
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return _serve(answer), hits


FOLDER = "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/"


@pytest.mark.parametrize("data", [
    "../../../../../../../../api/2.0/mlflow/registered-models/search",
    "../../../other-run/artifacts/model/model.json",
    "./../model.json",
    "sub/../../model.json",
    "/api/2.0/mlflow/registered-models/search",
])
def test_a_flavour_file_cannot_leave_the_models_folder(tmp_path: Path, data):
    """An MLmodel names its flavour's file. ``../`` in it was resolved by urllib3 before the
    request was sent, so the portal GOT another run's artifacts, or any endpoint of the
    tracking server, with the operator's credentials, and registered what came back."""
    server, hits = _mlflow_serving(f"flavors:\n  xgboost: {{data: '{data}'}}\n")
    client = mlflow.TrackingServer(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
    resolved = mlflow.Resolved(source=mlflow.Source("run", run_id="abc"),
                               artifact_uri="mlflow-artifacts:/1/abc/artifacts/model")
    try:
        with pytest.raises(mlflow.MlflowError) as refused:
            flavour = client.model_file(resolved).flavour
            client.download(resolved.artifact_uri, flavour.file, tmp_path / "model", 1 << 20)
        assert refused.value.code == "unsafe_path"
        with pytest.raises(mlflow.MlflowError):  # download refuses it too, given directly
            client.download(resolved.artifact_uri, data, tmp_path / "model", 1 << 20)
    finally:
        server.shutdown()
        server.server_close()
    outside = [path for path in hits if not path.startswith(FOLDER)]
    assert not outside, f"requested outside {FOLDER}: {outside}"


@pytest.mark.parametrize("artifact_path", ["../../other-run/artifacts/model",
                                           "model/../../../x", "/model"])
def test_a_runs_model_path_cannot_leave_the_runs_artifacts(artifact_path):
    """``runs:/<id>/<artifact_path>``: the path is typed by whoever asks for the import."""
    hits: list[str] = []

    def answer(handler):
        hits.append(handler.path)
        body = (b'{"run": {"info": {"artifact_uri": "mlflow-artifacts:/1/abc/artifacts"}, '
                b'"data": {}}}')
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server = _serve(answer)
    client = mlflow.TrackingServer(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
    try:
        with pytest.raises(mlflow.MlflowError) as refused:
            resolved = client.resolve(mlflow.Source("run", run_id="abc",
                                                    artifact_path=artifact_path))
            client.model_file(resolved)
    finally:
        server.shutdown()
        server.server_close()
    assert refused.value.code == "unsafe_path"
    assert not [path for path in hits if "mlflow-artifacts" in path], hits


def test_an_artifact_uri_with_dot_segments_is_not_followed():
    with pytest.raises(mlflow.MlflowError) as refused:
        mlflow.TrackingServer("http://127.0.0.1:9").download(
            "mlflow-artifacts:/1/abc/../../other/artifacts", "model.json", Path("/nonexistent"),
            1)
    assert refused.value.code == "unsafe_path"
