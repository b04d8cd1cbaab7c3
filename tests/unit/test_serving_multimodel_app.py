"""The multi-model server as SageMaker's multi-model container drives it (``POST /models``,
``/models/{name}/invoke``, ``DELETE``), in-process; and the command line choosing it."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import orjson
from sklearn.linear_model import LogisticRegression

from ops.artifacts import dump_skops
from ops.serving.metrics import ServerMetrics
from ops.serving.multimodel_app import MultiModelServer, sagemaker_catalog
from ops.serving.server import _multimodel_app, parse_args
from ops.serving.variants import BatchingOptions
from tests.asyncio_thread import run_async

FEATURES = ["a", "b", "c"]


async def call(app, method: str, path: str, body=None, headers=()) -> tuple[int, dict]:
    sent = []

    async def receive():
        raw = orjson.dumps(body) if body is not None else b""
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": method, "path": path,
               "headers": [(b"content-type", b"application/json"), *headers]}, receive, send)
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def sagemaker_download(root, name: str) -> str:
    """What SageMaker leaves under /opt/ml/models for ``<name>.tar.gz``, unpacked."""
    folder = root / "abc123" / "model"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    data = dump_skops(LogisticRegression().fit(rng.normal(size=(40, 3)), [0, 1] * 20))
    (folder / "artifact.skops").write_bytes(data)
    (folder / "model.json").write_text(json.dumps({
        "name": name, "version_id": 9, "version_number": 4, "artifact_uri": "artifact.skops",
        "sha256": hashlib.sha256(data).hexdigest(), "weight": 1.0, "task": "classification",
        "input_schema": [{"name": f, "type": "double"} for f in FEATURES],
        "memory_bytes": 1 << 20}))
    return str(folder)


def test_sagemaker_loads_invokes_lists_and_unloads_a_model(tmp_path):
    root = tmp_path / "models"
    app = MultiModelServer(None, ServerMetrics(), None, BatchingOptions(timeout=0),
                           sagemaker_catalog=sagemaker_catalog(
                               {"MODELGATE_MEMORY_BUDGET": str(8 << 20)}),
                           models_root=root)
    url = sagemaker_download(root, "shop-1")

    async def scenario():
        loaded = await call(app, "POST", "/models", {"model_name": "shop-1", "url": url})
        again = await call(app, "POST", "/models", {"model_name": "shop-1", "url": url})
        outside = await call(app, "POST", "/models", {"model_name": "x", "url": "/etc"})
        listed = await call(app, "GET", "/models")
        invoked = await call(app, "POST", "/models/shop-1/invoke",
                             {"instances": [[0.1, 0.2, 0.3]]})
        targeted = await call(app, "POST", "/invocations", {"instances": [[0.1, 0.2, 0.3]]},
                              headers=[(b"x-amzn-sagemaker-target-model", b"shop-1")])
        unloaded = await call(app, "DELETE", "/models/shop-1")
        gone = await call(app, "POST", "/models/shop-1/invoke", {"instances": [[0, 0, 0]]})
        return loaded, again, outside, listed, invoked, targeted, unloaded, gone

    loaded, again, outside, listed, invoked, targeted, unloaded, gone = run_async(scenario())
    assert loaded[0] == 200 and app.cache.is_loaded("shop-1") is False  # unloaded last
    assert again[0] == 409
    assert outside[0] == 400 and "only from under" in outside[1]["error"]
    assert [m["modelName"] for m in listed[1]["models"]] == ["shop-1"]
    assert invoked[0] == 200 and invoked[1]["model_version"] == "4"
    assert targeted[0] == 200 and targeted[1]["variant"] == "shop-1"
    assert unloaded[0] == 200
    assert gone[0] == 404 and gone[1]["code"] == "model_not_found"


def test_the_command_line_serves_a_catalog_or_sagemaker_models(tmp_path, monkeypatch):
    def built(argv):  # what build_app returns for these arguments, without its globals
        return _multimodel_app(parse_args(argv), ServerMetrics(), None, BatchingOptions(),
                               None)

    assert built(["--plan", "plan.json", "--port", "1"]) is None
    catalog = built(["--catalog", str(tmp_path / "catalog.json"), "--port", "1"])
    assert isinstance(catalog, MultiModelServer) and not catalog.sagemaker_api
    monkeypatch.setenv("MODELGATE_MULTI_MODEL", "sagemaker")
    monkeypatch.setenv("MODELGATE_MEMORY_BUDGET", str(64 << 20))
    sagemaker = built(["serve"])
    assert sagemaker.sagemaker_api and sagemaker.cache.catalog.memory_budget == 64 << 20
