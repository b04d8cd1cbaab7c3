"""Bounded metric labels on a multi-model endpoint: the top models by traffic keep theirs,
chosen stably; the rest are one ``__other__``; unknown names never become labels."""

from __future__ import annotations

import hashlib

import numpy as np
import orjson
from prometheus_client.parser import text_string_to_metric_families

from ops.artifacts import dump_skops
from ops.plan import Variant
from ops.serving.metrics import ServerMetrics
from ops.serving.multimodel import Catalog, CatalogModel
from ops.serving.multimodel_app import MultiModelServer
from ops.serving.toplabels import OTHER, TopLabels
from ops.serving.variants import BatchingOptions
from tests.asyncio_thread import run_async

FEATURES = ["a", "b", "c"]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_first_names_take_the_places_until_the_first_window_ends():
    top = TopLabels(2, window=60, clock=Clock())
    assert [top.label(n) for n in ("x", "y", "z", "x")] == ["x", "y", OTHER, "x"]


def test_the_busiest_models_take_the_places_at_the_window_end():
    clock = Clock()
    top = TopLabels(2, window=60, clock=clock)
    for name, count in (("x", 1), ("y", 1), ("z", 10), ("w", 5)):
        for _ in range(count):
            top.label(name)
    clock.now = 61
    top.label("z")
    assert top.top == {"z", "w"}


def test_a_member_keeps_its_label_unless_beaten_twice_over():
    clock = Clock()
    top = TopLabels(1, window=60, clock=clock)
    for _ in range(10):
        top.label("x")
    for _ in range(15):  # 1.5x the member: not enough
        top.label("y")
    clock.now = 60
    top.label("x")
    assert top.top == {"x"}
    for _ in range(30):
        top.label("y")
    clock.now = 120
    top.label("y")
    assert top.top == {"y"}  # 30 > 2 x 1


def test_a_name_that_loses_its_place_is_told_so_its_series_go():
    clock = Clock()
    dropped = []
    top = TopLabels(1, window=60, clock=clock, on_drop=dropped.append)
    top.label("x")
    for _ in range(5):
        top.label("y")
    clock.now = 60
    top.label("y")
    assert top.top == {"y"} and dropped == [{"x"}]
    top.forget("y")
    assert dropped == [{"x"}, {"y"}]


def test_ties_are_broken_by_name_so_restarts_choose_the_same():
    choices = []
    for order in (("b", "a", "c"), ("c", "b", "a")):
        clock = Clock()
        top = TopLabels(2, window=60, clock=clock)
        top.limit = 0  # nobody takes a place during the first window
        for name in order:
            top.label(name)
        top.limit = 2
        clock.now = 60
        top.label("zz")
        choices.append(top.top)
    assert choices == [{"a", "b"}, {"a", "b"}]


def _artifact(folder, seed: int) -> Variant:
    rng = np.random.default_rng(seed)
    from sklearn.linear_model import LogisticRegression

    data = dump_skops(LogisticRegression().fit(rng.normal(size=(40, 3)), [0, 1] * 20))
    path = folder / f"m{seed}.skops"
    path.write_bytes(data)
    return Variant(name=f"m{seed}", version_id=seed, version_number=1,
                   artifact_uri=f"file://{path}", sha256=hashlib.sha256(data).hexdigest(),
                   weight=1.0, task="classification",
                   input_schema=[{"name": n, "type": "double"} for n in FEATURES],
                   baseline={"features": {n: {"edges": [-1.0, 0.0, 1.0]} for n in FEATURES}})


async def _call(app, path: str, body) -> int:
    sent = []

    async def receive():
        return {"type": "http.request", "body": orjson.dumps(body), "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": "POST" if body is not None else "GET", "path": path,
               "headers": [(b"content-type", b"application/json")]}, receive, send)
    return sent[0]["status"], sent[1]["body"]


def test_metrics_keep_at_most_n_model_labels_and_fold_the_rest(tmp_path):
    models = {v.name: CatalogModel(v, 1 << 20) for v in (_artifact(tmp_path, s)
                                                           for s in range(5))}
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(Catalog("tenants", models, memory_budget=10 << 20,
                                    top_models=2).to_json())
    app = MultiModelServer(catalog_path, ServerMetrics(), None, BatchingOptions(timeout=0))
    assert app.reload("test")

    async def traffic():
        answers = []
        for seed in (0, 0, 1, 2, 3, 4):
            answers.append(await _call(app, f"/v2/models/m{seed}/infer",
                                       {"instances": [[0.1, 0.2, 0.3]]}))
        for i in range(30):  # names not in the catalog: 404s that never become labels
            answers.append(await _call(app, f"/v2/models/ghost{i}/infer", {"instances": []}))
        return answers, (await _call(app, "/metrics", None))[1].decode()

    answers, exposition = run_async(traffic())
    assert [a[0] for a in answers[:6]] == [200] * 6
    assert {a[0] for a in answers[6:]} == {404}
    assert b"ghost0" in answers[6][1]  # the 404 names the model
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    labels = {s.labels["variant"] for s in families["modelgate_requests"].samples}
    assert labels == {"m0", "m1", OTHER, "none"}
    other = [s for s in families["modelgate_requests"].samples
             if s.labels["variant"] == OTHER and s.labels["status"] == "2xx"]
    assert other[0].value == 3
    binned = {s.labels["variant"] for s in families["modelgate_feature_bin"].samples}
    assert binned == {"m0", "m1"}  # drift bins only for models with their own label
    loaded = [s for s in families["modelgate_multimodel_loaded_models"].samples]
    assert loaded[0].value == 5
    app._drop_labels({"m1"})  # what a window's end does to a model that lost its place
    exposition = run_async(_call(app, "/metrics", None))[1].decode()
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    labels = {s.labels["variant"] for s in families["modelgate_requests"].samples}
    assert labels == {"m0", OTHER, "none"}
