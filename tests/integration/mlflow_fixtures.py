"""A real ``mlflow server`` for the tests of decision 66 (test_mlflow_import.py,
test_mlflow_native_flavours.py).

The server runs from its own virtualenv (built once with uv and cached under
~/.cache/modelgate, by benchmarks/baseline_venv.py; the frameworks pinned to
requirements/lock.txt), with a SQLite backend and its artifact proxy, on loopback; the
models are trained and logged by that virtualenv's python in a subprocess. The scikit-learn
models are logged while the server boots (``mlflow_server``); the XGBoost, LightGBM and ONNX
ones only when a test asks for them (``mlflow_native``), so the scikit-learn tests do not
wait for those frameworks to import."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.portal_fixtures import FEATURES

ROOT = Path(__file__).resolve().parents[2]
VENV = Path.home() / ".cache" / "modelgate" / "mlflow-venv"
# What the MLflow virtualenv installs besides MLflow (numpy and scikit-learn are pinned to
# the portal's by baseline_venv), at the lock's versions: a model saved there loads here.
FRAMEWORKS = ("xgboost-cpu", "lightgbm", "onnx", "skl2onnx", "onnxruntime")
IMPORTS = "mlflow, sklearn, xgboost, lightgbm, onnx, skl2onnx, onnxruntime"
ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
       "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_CACHE_TTL": "1"}

# Run by the MLflow virtualenv's python: three versions of registered model "tumor".
TRAIN = r'''
import json, sys, time, urllib.request
url = sys.argv[1]
import mlflow, mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
data = load_breast_cancer(as_frame=True)
X, y = data.data[json.loads(sys.argv[2])], data.target
for _ in range(600):
    try:
        urllib.request.urlopen(url + "/health", timeout=2); break
    except OSError:
        time.sleep(0.2)
mlflow.set_tracking_uri(url)
mlflow.set_experiment("modelgate")
out = {}
def log(key, model, signature_frame, **kwargs):
    with mlflow.start_run() as run:
        model.fit(X, y)
        mlflow.log_params({"model": type(model).__name__, "seed": 7})
        mlflow.log_metric("accuracy", float(model.score(X, y)))
        mlflow.set_tag("mlflow.source.git.commit", "0123456789abcdef0123456789abcdef01234567")
        mlflow.log_input(mlflow.data.from_pandas(X.assign(target=y), name="cancer",
                                                 targets="target"), context="training")
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name="tumor", pip_requirements=[],
            signature=infer_signature(signature_frame, model.predict(X)), **kwargs)
    out[key] = {"run_id": run.info.run_id, "version": str(info.registered_model_version),
                "experiment_id": run.info.experiment_id}
log("skops", LogisticRegression(max_iter=2000), X)
log("pickled", RandomForestClassifier(n_estimators=5, random_state=0), X,
    serialization_format="cloudpickle")
log("mismatch", LogisticRegression(max_iter=2000), X.rename(columns=lambda c: c.upper()))
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
log("lambda", make_pipeline(FunctionTransformer(lambda x: x * 1.0),
                            LogisticRegression(max_iter=2000)), X,
    serialization_format="cloudpickle")
print(json.dumps(out))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _empty_database(python: Path) -> Path:
    """An MLflow database with its tables made, cached per MLflow version beside the
    virtualenv: a copy spares every run the migrations (seconds of CPU)."""
    release = next((python.parents[1] / "lib").glob("python*/site-packages/mlflow-*.dist-info"))
    template = VENV.parent / f"{release.name.removesuffix('.dist-info')}-empty.sqlite"
    if not template.exists():
        partial = template.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        subprocess.run([str(python.parent / "mlflow"), "db", "upgrade", f"sqlite:///{partial}"],
                       check=True, capture_output=True, env={**os.environ, **ENV})
        partial.replace(template)
    return template


def _start_mlflow(folder: Path) -> dict:
    """Boot ``mlflow server`` in its own session and log the models; what the tests read,
    with the server's pid."""
    python = _python()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_empty_database(python), folder / "mlflow.sqlite")
    url = f"http://127.0.0.1:{_free_port()}"
    env = {**os.environ, **ENV}
    server = subprocess.Popen(
        [str(python.parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", url.rsplit(":", 1)[1], "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.sqlite'}",
         "--artifacts-destination", str(folder / "artifacts")],
        cwd=folder, env=env, stdout=open(folder / "server.log", "wb"),
        stderr=subprocess.STDOUT, start_new_session=True)
    # Trained while the server boots; the script waits for it.
    trained = subprocess.run([str(python), "-c", TRAIN, url, json.dumps(FEATURES)],
                             capture_output=True, env=env, timeout=600, cwd=folder)
    if trained.returncode != 0:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        pytest.fail(f"logging the models failed: {trained.stderr.decode()[-3000:]}\n"
                    f"{(folder / 'server.log').read_text()[-3000:]}")
    return {"url": url, "pid": server.pid,
            **json.loads(trained.stdout.decode().strip().splitlines()[-1])}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on loopback with four logged versions of ``tumor``:
    ``{"url", "skops", "pickled", "mismatch", "lambda"}`` (each: run_id, version,
    experiment_id).

    One per test run, shared by the xdist workers (booting costs ~20 s of CPU, and
    ``xdist_group`` does not keep these tests on one worker with this pytest-xdist): the
    first worker to need it starts it under a file lock and records it beside the workers'
    temporary folders; each user counts itself in and out, and the last one out stops it."""
    shared = _shared(tmp_path_factory)
    state = shared / "mlflow-server.json"
    with open(shared / "mlflow-server.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = json.loads(state.read_text()) if state.exists() else None
        if info is None:
            info = {**_start_mlflow(shared / "mlflow"), "users": 0}
        info["users"] += 1
        state.write_text(json.dumps(info))
    try:
        yield info
    finally:
        with open(shared / "mlflow-server.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            info = json.loads(state.read_text())
            info["users"] -= 1
            if info["users"] == 0:  # its database is this run's to throw away
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(info["pid"], signal.SIGKILL)
                state.unlink()
            else:
                state.write_text(json.dumps(info))


# Run by the MLflow virtualenv's python once the server is up: each model in its framework's
# own format, registered under a name of its own ("tumor-<key>", version 1), with what its
# framework predicts for the first row (the probability of class 1) to compare the portal's
# answer with.
NATIVE = r"""
import json, sys
url = sys.argv[1]
import lightgbm as lgb, mlflow, mlflow.lightgbm, mlflow.onnx, mlflow.xgboost
import numpy as np, xgboost as xgb
from mlflow.models import infer_signature
from onnx import numpy_helper
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
data = load_breast_cancer(as_frame=True)
X, y = data.data[json.loads(sys.argv[2])], data.target
X32 = X.to_numpy(np.float32)
mlflow.set_tracking_uri(url)
mlflow.set_experiment("modelgate-native")
out = {}
def log(key, flavour, model, proba, **kwargs):
    with mlflow.start_run() as run:
        mlflow.log_params({"model": key, "seed": 7})
        mlflow.log_metric("accuracy", float(((proba > 0.5) == y.to_numpy()).mean()))
        mlflow.set_tag("mlflow.source.git.commit", "0123456789abcdef0123456789abcdef01234567")
        info = flavour.log_model(model, name="model", registered_model_name=f"tumor-{key}",
                                 pip_requirements=[], signature=infer_signature(X, proba),
                                 **kwargs)
    out[key] = {"run_id": run.info.run_id, "version": str(info.registered_model_version),
                "name": f"tumor-{key}", "first_row": float(proba[0])}
# XGBoost's scikit-learn API, saved as XGBoost's JSON (its sklearn attributes inside).
classifier = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(X, y)
log("xgboost-json", mlflow.xgboost, classifier, classifier.predict_proba(X)[:, 1],
    model_format="json")
# A Booster with MLflow's default model_format ("xgb": UBJSON since XGBoost 2.1).
booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                    xgb.DMatrix(X, y), 20)
log("xgboost-ubj", mlflow.xgboost, booster, booster.predict(xgb.DMatrix(X)))
# A LightGBM Booster: its text model.
gbm = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1},
                lgb.Dataset(X, y), 20)
log("lightgbm", mlflow.lightgbm, gbm, gbm.predict(X))
# A scikit-learn pipeline converted by skl2onnx (one float matrix in, ZipMap out).
pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X32, y)
log("onnx", mlflow.onnx, to_onnx(pipeline, X32[:1]), pipeline.predict_proba(X32)[:, 1])
# What the portal refuses: LightGBM's scikit-learn API pickled, and an ONNX graph whose
# weights MLflow wrote to a file beside it (save_as_external_data defaults to True).
wrapper = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
log("lightgbm-pickle", mlflow.lightgbm, wrapper, wrapper.predict_proba(X)[:, 1],
    serialization_format="cloudpickle")
network = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0).fit(X32, y)
graph = to_onnx(network, X32[:1])
# As PyTorch's exporter writes them (raw bytes; skl2onnx's float lists are never moved out).
for tensor in graph.graph.initializer:
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
log("onnx-external", mlflow.onnx, graph, network.predict_proba(X32)[:, 1])
print(json.dumps(out))
"""


def _lock_pins() -> list[str]:
    """FRAMEWORKS at requirements/lock.txt's versions."""
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    pins = []
    for name in FRAMEWORKS:
        found = re.search(rf"^{re.escape(name)}==([^\s;\\]+)", lock, re.M)
        pins.append(f"{name}=={found.group(1)}" if found else name)
    return pins


def _python() -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from baseline_venv import ensure_baseline_venv

    python = ensure_baseline_venv(VENV, ["mlflow", *_lock_pins()], IMPORTS, quick=True)
    if python is None:
        pytest.skip("MLflow could not be installed in its throwaway virtualenv")
    return python


def _shared(tmp_path_factory) -> Path:
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    return shared


@pytest.fixture(scope="session")
def mlflow_native(mlflow_server, tmp_path_factory):
    """``mlflow_server`` with XGBoost, LightGBM and ONNX models logged and registered:
    ``{"url", "<key>": {run_id, version, name, first_row}}`` for the keys of ``NATIVE``."""
    shared = _shared(tmp_path_factory)
    state = shared / "mlflow-server.json"
    with open(shared / "mlflow-server.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = json.loads(state.read_text())
        if "native" not in info:
            env = {**os.environ, **ENV}
            logged = subprocess.run([str(_python()), "-c", NATIVE, info["url"],
                                     json.dumps(FEATURES)], capture_output=True, env=env,
                                    timeout=600, cwd=shared / "mlflow")
            if logged.returncode != 0:
                pytest.fail(f"logging the native models failed: "
                            f"{logged.stderr.decode()[-3000:]}")
            info["native"] = json.loads(logged.stdout.decode().strip().splitlines()[-1])
            state.write_text(json.dumps(info))
    return {"url": info["url"], **info["native"]}
