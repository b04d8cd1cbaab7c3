"""Reading MLflow without MLflow (ops/mlflow.py) and pickles without loading them
(ops/pickles.py): decision 66."""

from __future__ import annotations

import json
import os
import pickle
import time

import pytest
from sklearn.linear_model import LogisticRegression

from ops import mlflow, mlflow_webhooks, pickles

BODY = ('{"entity": "model_version_alias", "action": "created", '
        '"data": {"name": "tumor"}}')
# What MLflow 3.17's own mlflow.webhooks.delivery._generate_hmac_signature answers for
# ("s3cret", "delivery-1", "1764950000", BODY).
MLFLOW_SIGNATURE = "v1,ix51XgA8vPczs+7KbEYwWWwMusg0YjKuaaImAlBUrxQ="

MLMODEL = """
flavors:
  python_function: {loader_module: mlflow.sklearn, model_path: model.pkl}
  sklearn: {pickled_model: model.pkl, serialization_format: cloudpickle}
signature:
  inputs: '[{"type": "double", "name": "a", "required": true}, {"type": "long", "name": "b",
    "required": false}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
"""


def test_the_signature_matches_mlflows_own():
    assert mlflow_webhooks.webhook_signature("s3cret", "delivery-1", "1764950000",
                                    BODY.encode()) == MLFLOW_SIGNATURE


def test_a_delivery_is_accepted_only_signed_and_recent():
    headers = {"X-MLflow-Delivery-Id": "delivery-1", "X-MLflow-Timestamp": "1764950000",
               "X-MLflow-Signature": MLFLOW_SIGNATURE}
    payload = mlflow_webhooks.verify_webhook("s3cret", headers, BODY.encode(), now=1764950100)
    assert payload["data"]["name"] == "tumor"
    with pytest.raises(mlflow_webhooks.WebhookRefused, match="does not match"):
        mlflow_webhooks.verify_webhook("other", headers, BODY.encode(), now=1764950100)
    with pytest.raises(mlflow_webhooks.WebhookRefused, match="does not match"):
        mlflow_webhooks.verify_webhook("s3cret", headers, BODY.encode() + b" ", now=1764950100)
    with pytest.raises(mlflow_webhooks.WebhookRefused) as stale:
        mlflow_webhooks.verify_webhook("s3cret", headers, BODY.encode(), now=1764950000 + 3600)
    assert stale.value.code == "stale_webhook"
    with pytest.raises(mlflow_webhooks.WebhookRefused, match="carries"):
        mlflow_webhooks.verify_webhook("s3cret", {}, BODY.encode())


def test_the_mlmodel_file_names_the_flavour_file_and_schema():
    model = mlflow.read_mlmodel(MLMODEL)
    assert model.flavour == mlflow.Flavour("sklearn", "model.pkl", pickled=True)
    assert model.input_schema == [{"name": "a", "type": "double", "nullable": False},
                                  {"name": "b", "type": "integer", "nullable": True}]
    native = mlflow.read_mlmodel("flavors:\n  xgboost: {data: model.xgb}\n  python_function: {}\n")
    assert native.flavour == mlflow.Flavour("xgboost", "model.xgb", pickled=False)
    assert native.input_schema is None  # no signature: the model's own feature names


def test_a_flavour_the_portal_does_not_import_is_named():
    with pytest.raises(mlflow.UnsupportedFlavour) as refused:
        mlflow.read_mlmodel("flavors:\n  pytorch: {}\n  python_function: {}\n")
    assert refused.value.detail == ("the MLflow model's flavours are python_function, pytorch; "
                                    "the portal imports sklearn, xgboost, lightgbm, onnx models")


def test_lightgbms_scikit_learn_api_is_refused_naming_what_to_log_instead():
    """MLflow saves an LGBMClassifier as skops (its default) or a pickle of the wrapper,
    never as LightGBM's text model; a Booster's text model is imported."""
    def mlmodel(data, **conf):
        extra = "".join(f"    {key}: {value}\n" for key, value in conf.items())
        return f"flavors:\n  lightgbm:\n    data: {data}\n{extra}"

    with pytest.raises(mlflow.UnsupportedFlavour) as skops:
        mlflow.read_mlmodel(mlmodel("model.skops", model_class="lightgbm.sklearn.LGBMClassifier",
                                    serialization_format="skops"))
    assert skops.value.detail.startswith(
        "MLflow's lightgbm flavour holds model.skops, a skops file of "
        "lightgbm.sklearn.LGBMClassifier (LightGBM's scikit-learn API)")
    assert "mlflow.lightgbm.log_model(model.booster_, ...)" in skops.value.detail
    with pytest.raises(mlflow.MlflowError) as pickled:
        mlflow.read_mlmodel(mlmodel("model.pkl", model_class="lightgbm.sklearn.LGBMRegressor",
                                    serialization_format="pickle"))
    assert pickled.value.code == "unsafe_artifact"
    assert "model.pkl, a pickle of lightgbm.sklearn.LGBMRegressor" in pickled.value.detail
    booster = mlflow.read_mlmodel(mlmodel("model.lgb", model_class="lightgbm.basic.Booster"))
    assert booster.flavour == mlflow.Flavour("lightgbm", "model.lgb", pickled=False)


def test_a_native_flavour_file_in_another_format_is_refused_in_words():
    xgboost = mlflow.Flavour("xgboost", "model.json", pickled=False)
    mlflow.check_flavour_file(xgboost, b'{"learner": {"attributes": {}}}')
    with pytest.raises(mlflow.MlflowError) as pickled:
        mlflow.check_flavour_file(xgboost, pickle.dumps({"learner": 1}))
    assert pickled.value.code == "unsafe_artifact"
    assert pickled.value.detail.startswith("MLflow's xgboost flavour file model.json is a "
                                           "pickle, not XGBoost's own format")
    legacy = mlflow.Flavour("xgboost", "model.xgb", pickled=False)
    with pytest.raises(mlflow.MlflowError) as binary:
        mlflow.check_flavour_file(legacy, b"\x00\x00\x00?binf\x00\x00\x00\x00")
    assert binary.value.code == "not_a_model"
    assert "model_format='json' or 'ubj'" in binary.value.detail
    with pytest.raises(mlflow.MlflowError, match="is not LightGBM's text model"):
        mlflow.check_flavour_file(mlflow.Flavour("lightgbm", "model.lgb", pickled=False),
                                  b'{"learner": {}}')


def test_signatures_the_portal_cannot_feed_are_refused_and_tensors_left_to_the_model():
    tensor = {"inputs": json.dumps([{"type": "tensor",
                                     "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}])}
    assert mlflow.signature_schema(tensor) is None
    images = {"inputs": json.dumps([{"type": "binary", "name": "image"}])}
    with pytest.raises(mlflow.MlflowError, match="'image' is of type 'binary'"):
        mlflow.signature_schema(images)


def test_tracking_uris_follow_the_webhooks_address_rule():
    assert "non-public" in mlflow.tracking_uri_refusal("http://127.0.0.1:5000",
                                                       allow_private=False)
    assert "non-public" in mlflow.tracking_uri_refusal("http://[::ffff:10.0.0.1]/",
                                                       allow_private=False)
    assert mlflow.tracking_uri_refusal("http://127.0.0.1:5000", allow_private=True) is None
    assert "user name" in mlflow.tracking_uri_refusal("http://a@127.0.0.1/",
                                                      allow_private=True)
    assert "http://" in mlflow.tracking_uri_refusal("file:///etc", allow_private=True)


def test_artifacts_outside_the_servers_proxy_are_refused_in_words():
    with pytest.raises(mlflow.MlflowError) as refused:
        mlflow._proxied_path("s3://bucket/1/models/m-1/artifacts")
    assert refused.value.code == "unsupported_artifact_store"
    assert mlflow._proxied_path("mlflow-artifacts:/1/models/m-1/artifacts") == \
        "1/models/m-1/artifacts"


def test_a_scikit_learn_pickle_names_only_trusted_types():
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    assert pickles.untrusted_globals(pickle.dumps(model, protocol=5)) == []
    assert pickles.untrusted_globals(pickle.dumps(model, protocol=2)) == []


def test_a_pickle_that_runs_code_is_named_without_being_run():
    class Boom:
        def __reduce__(self):
            return os.system, ("echo never",)

    assert pickles.untrusted_globals(pickle.dumps(Boom())) == [f"{os.system.__module__}.system"]


def test_a_global_whose_name_is_built_on_the_stack_is_not_trusted():
    # STACK_GLOBAL on names that were not the last two strings pushed (a trusted pair is
    # pushed, popped, and the real pair sits below): the reading refuses to guess.
    def text(word: bytes) -> bytes:  # SHORT_BINUNICODE
        return b"\x8c" + bytes([len(word)]) + word

    data = (b"\x80\x04" + text(b"os") + text(b"system") + text(b"numpy") + text(b"dtype")
            + b"0" + b"0" + b"\x93" + b".")  # POP, POP, STACK_GLOBAL, STOP
    assert pickles.pickle_globals(data) == {pickles.UNKNOWN}
    assert pickles.UNKNOWN in pickles.untrusted_globals(data)


# -- answers the portal does not trust (review: DNS rebinding, unbounded JSON) --------------------

def _serve(handler_get):
    """A loopback HTTP server whose GET and POST run ``handler_get(handler)``."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            handler_get(self)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _rebinding(monkeypatch, name: str, port: int, first: str = "93.184.215.14"):
    """``name`` resolves to the public ``first`` once, then to loopback (TTL 0)."""
    import socket

    real, answers = socket.getaddrinfo, iter([first])

    def rebinding(host, *args, **kwargs):
        if host == name:
            address = next(answers, "127.0.0.1")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)


def test_a_name_rebound_to_loopback_after_the_check_is_not_connected_to(monkeypatch):
    hits = []

    def answer(handler):
        hits.append(handler.path)
        handler.send_response(404)
        handler.end_headers()

    server = _serve(answer)
    port = server.server_address[1]
    _rebinding(monkeypatch, "rebind.attacker.example", port)
    uri = f"http://rebind.attacker.example:{port}"
    try:
        assert mlflow.tracking_uri_refusal(uri, allow_private=False) is None  # "public"
        client = mlflow.TrackingServer(uri, public_only=True, timeout=5)
        started = time.monotonic()
        with pytest.raises(mlflow.MlflowError) as refused:
            client.run("abc")
        # Refused on connecting, before a byte is sent: no timeout is waited for.
        assert time.monotonic() - started < 2
        assert not hits
        # Without public_only (the operator's server, or private servers allowed) the same
        # name reaches the same server: the refusal above is the check's, not the network's.
        with pytest.raises(mlflow.MlflowNotFound):
            mlflow.TrackingServer(uri, timeout=5).run("abc")
    finally:
        server.shutdown()
        server.server_close()
    assert refused.value.code == "tracking_uri_refused"
    assert "127.0.0.1 is not a public address" in refused.value.detail
    assert hits == ["/api/2.0/mlflow/runs/get?run_id=abc"]


def test_a_huge_json_answer_is_refused_before_it_is_all_read():
    sent = []

    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        try:
            for _ in range(48):
                handler.wfile.write(b" " * (1 << 20))
                sent.append(1 << 20)
            handler.wfile.write(b'{"run": {"info": {}, "data": {}}}')
        except OSError:
            pass

    server = _serve(answer)
    client = mlflow.TrackingServer(f"http://127.0.0.1:{server.server_address[1]}",
                                   timeout=10)
    try:
        with pytest.raises(mlflow.MlflowError, match="more than 8 MiB") as refused:
            client.run("abc")
    finally:
        server.shutdown()
    assert refused.value.code == "mlflow_error"
    assert sum(sent) < 16 << 20, f"{sum(sent) >> 20} MiB sent"  # the socket's buffers aside


def test_a_huge_error_answer_is_not_read_for_its_message():
    def answer(handler):
        handler.send_response(400)
        handler.end_headers()
        try:
            handler.wfile.write(b'{"message": "' + b"x" * (4 << 20) + b'"}')
        except OSError:
            pass

    server = _serve(answer)
    client = mlflow.TrackingServer(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        with pytest.raises(mlflow.MlflowError) as refused:
            client.run("abc")
    finally:
        server.shutdown()
    assert refused.value.detail.endswith("HTTP 400 for run abc")


def test_a_non_ascii_signature_is_refused_not_raised():
    headers = {"X-MLflow-Delivery-Id": "delivery-1", "X-MLflow-Timestamp": "1764950000",
               "X-MLflow-Signature": "v1,\u00e9 v1,\udce9"}
    with pytest.raises(mlflow_webhooks.WebhookRefused, match="does not match"):
        mlflow_webhooks.verify_webhook("s3cret", headers, BODY.encode(), now=1764950100)
