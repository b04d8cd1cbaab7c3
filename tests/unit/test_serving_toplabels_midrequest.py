"""A model that loses its metric label while a request is answered gets no series back
when the request ends (review finding)."""


import orjson

from ops.serving.metrics import ServerMetrics
from ops.serving.multimodel_app import MultiModelServer, sagemaker_catalog
from ops.serving.toplabels import TopLabels
from ops.serving.variants import BatchingOptions
from tests.asyncio_thread import run_async
from tests.unit.test_serving_multimodel_app import call, sagemaker_download


def series_of(metric, name):
    return [k for k in metric._metrics if len(k) > 1 and k[1] == name]


def test_a_model_that_lost_its_label_mid_request_keeps_no_series(tmp_path):
    root = tmp_path / "models"
    app = MultiModelServer(None, ServerMetrics(), None, BatchingOptions(timeout=0),
                           sagemaker_catalog=sagemaker_catalog(
                               {"MODELGATE_MEMORY_BUDGET": str(8 << 20)}),
                           models_root=root)
    url = sagemaker_download(root, "shop-1")
    now = [0.0]

    async def scenario():
        await call(app, "POST", "/models", {"model_name": "shop-1", "url": url})
        app.top = TopLabels(1, window=10, clock=lambda: now[0], on_drop=app._drop_labels)
        await call(app, "POST", "/models/shop-1/invoke", {"instances": [[0.1, 0.2, 0.3]]})
        sent = []

        async def receive():  # while this request's body arrives, another model gets busy
            for _ in range(5):
                app.top.label("shop-2")
            now[0] = 25.0
            app.top.label("shop-2")  # the window ends: shop-2 takes the only place
            assert "shop-1" not in app.top.top
            return {"type": "http.request", "body": orjson.dumps(
                {"instances": [[0.1, 0.2, 0.3]]}), "more_body": False}

        async def send(message):
            sent.append(message)

        now[0] = 12.0
        await app({"type": "http", "method": "POST", "path": "/models/shop-1/invoke",
                   "headers": [(b"content-type", b"application/json")]}, receive, send)
        return sent[0]["status"]

    assert run_async(scenario()) == 200
    assert "shop-1" not in app.top.top
    leaked = series_of(app.metrics.requests, "shop-1") + series_of(app.metrics.latency, "shop-1")
    assert not leaked, f"series of a model without its own label: {leaked}"
