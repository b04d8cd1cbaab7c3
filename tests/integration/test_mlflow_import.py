"""MLflow as the training side (decision 66), against a real ``mlflow server``
(tests/integration/mlflow_fixtures.py): scikit-learn models logged by MLflow's own client,
imported through the API and the CLI, validated in the (eager) worker and loaded with the
model server's own loader; follows, webhooks and the address rules."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import numpy as np
import pytest
import requests
from django.db import connection

from portal.registry.models import MlflowFollow, MlflowImport, ModelVersion
from portal.registry.services import mlflow as mlflow_services
from tests.integration.mlflow_fixtures import _free_port
from tests.portal_fixtures import FEATURES
from tests.rebinding import rebind_to_loopback

# The first test's setup boots MLflow and logs its models (about 20 s of CPU): on a machine
# shared with other work that can take minutes, so the module's tests get twice the default.
pytestmark = [pytest.mark.django_db, pytest.mark.integration,
              pytest.mark.xdist_group("mlflow"), pytest.mark.timeout(600)]


def _cli(capsys, monkeypatch, live_server, user, home, *argv):
    """``modelgate --json argv`` in this process, as a pipeline runs it: (exit code, stdout)."""
    from portal.accounts.services import create_token
    from tests.cli.support import main

    _, token = create_token(user, "pipeline")
    for name, value in (("MODELGATE_URL", live_server.url), ("MODELGATE_TOKEN", token),
                        ("MODELGATE_PROJECT", "clinical-ml"), ("HOME", str(home))):
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = main([argv[0], "--json", *argv[1:]])
    return code, capsys.readouterr().out


@pytest.fixture
def allowed(settings):
    """The operator allows MLflow servers on private addresses (the tests' is on loopback)."""
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True


def _import(client, model_id, **body):
    return client.post(f"/api/v1/models/{model_id}/versions/import-mlflow/", body,
                       format="json")


def test_a_registered_version_is_imported_validated_and_served(
        api, clf, mlflow_server, allowed, artifact_root):
    client = api("contributor")
    answer = _import(client, clf.pk, tracking_uri=mlflow_server["url"], name="tumor",
                     version=mlflow_server["skops"]["version"])
    assert answer.status_code == 202, answer.json()
    item = MlflowImport.objects.get(pk=answer.json()["id"])
    assert item.status == "done", item.reason
    version = item.version
    assert version.status == "ready", version.status_reason
    assert version.artifact_format == "skops"
    assert [f["name"] for f in version.input_schema] == FEATURES
    assert version.params == {"model": "LogisticRegression", "seed": "7"}
    assert 0.8 < version.metrics["accuracy"] <= 1.0
    assert version.code_commit == "0123456789abcdef0123456789abcdef01234567"
    assert item.run_id == mlflow_server["skops"]["run_id"]
    assert item.experiment_id == mlflow_server["skops"]["experiment_id"]
    assert item.flavour == "sklearn"
    assert [(d["name"], d["context"], d["profile"].get("num_rows")) for d in item.datasets] \
        == [("cancer", "training", 569)]
    assert item.run_url.endswith(f"/#/experiments/{item.experiment_id}/runs/{item.run_id}")

    shown = client.get(f"/api/v1/mlflow-imports/{item.pk}/").json()
    assert shown["version_number"] == version.number and shown["status"] == "done"

    # The same MLflow version again: the import already made, never a second version.
    again = _import(client, clf.pk, tracking_uri=mlflow_server["url"], name="tumor",
                    version=mlflow_server["skops"]["version"])
    assert again.status_code == 200 and again.json()["id"] == item.pk
    assert ModelVersion.objects.filter(model=clf).count() == 1

    # The version page links back to the run.
    page = client.client
    page.force_login(version.created_by)
    html = page.get(version.get_absolute_url()).content.decode()
    assert item.run_url in html

    # What a model server loads: the release path's plan entry, through its own loader.
    from ops.serving.variants import BatchingOptions, load_variant
    from portal.releases.specs import variant_of

    loaded = load_variant(variant_of(version, "imported"), base_dir=artifact_root,
                          executor=None, batching=BatchingOptions())
    rows = np.asarray([[17.99, 10.38, 122.8, 1001.0, 0.1184]])
    labels, proba = loaded.predict_rows(rows)
    assert proba.shape == (1, 2) and labels[0] in (0, 1)


def test_an_untrusted_pickle_follows_the_projects_policy(api, clf, mlflow_server, allowed):
    """A pickle that carries code (cloudpickle's lambda) is never loaded for a project that
    takes no pickles: it is read, not run, and refused naming what it would import."""
    answer = _import(api("contributor"), clf.pk, tracking_uri=mlflow_server["url"],
                     run_id=mlflow_server["lambda"]["run_id"])
    item = MlflowImport.objects.get(pk=answer.json()["id"])
    assert item.status == "failed"
    assert item.reason.startswith("unsafe_artifact: model.pkl is a pickle naming types the "
                                  "portal does not trust (cloudpickle.")
    assert ModelVersion.objects.filter(model=clf).count() == 0


def test_a_signature_that_does_not_match_the_model_leaves_the_version_invalid(
        api, clf, mlflow_server, allowed):
    answer = _import(api("contributor"), clf.pk, tracking_uri=mlflow_server["url"],
                     name="tumor", version=mlflow_server["mismatch"]["version"])
    item = MlflowImport.objects.get(pk=answer.json()["id"])
    assert item.status == "done"
    assert item.version.status == "invalid"
    assert item.version.status_reason.startswith("schema_mismatch: feature names differ")


@pytest.mark.parametrize("body, words", [
    ({"name": "tumor", "version": "99"}, "has no version 99 of registered model tumor"),
    ({"run_id": "0" * 32}, f"has no run {'0' * 32}"),
    ({"name": "no-such-model", "version": "1"}, "registered model no-such-model"),
])
def test_what_mlflow_does_not_have_fails_the_import_naming_it(
        api, clf, mlflow_server, allowed, body, words):
    answer = _import(api("contributor"), clf.pk, tracking_uri=mlflow_server["url"], **body)
    item = MlflowImport.objects.get(pk=answer.json()["id"])
    assert item.status == "failed"
    assert item.reason.startswith("mlflow_not_found: MLflow at ") and words in item.reason
    # A failed import frees its source for another try.
    retry = _import(api("contributor"), clf.pk, tracking_uri=mlflow_server["url"], **body)
    assert retry.status_code == 202 and retry.json()["id"] != item.pk


def test_an_unreachable_server_is_tried_again_then_fails_the_import_in_words(
        api, clf, allowed, task_queue):
    from ops.mlflow import MlflowUnavailable

    task_queue.hold("workers.registry.import_mlflow_version")  # the test plays the worker
    dead = f"http://127.0.0.1:{_free_port()}"
    answer = _import(api("contributor"), clf.pk, tracking_uri=dead, name="tumor", version="1")
    assert answer.status_code == 202
    item_id = answer.json()["id"]
    with pytest.raises(MlflowUnavailable):  # the task retries it, with backoff
        mlflow_services.run_import(item_id, final_attempt=False)
    item = MlflowImport.objects.get(pk=item_id)
    assert (item.status, item.claimed_at) == ("pending", None)  # free for the retry
    item = mlflow_services.run_import(item_id, final_attempt=True)
    assert item.status == "failed"
    assert item.reason.startswith(f"mlflow_unavailable: the MLflow server at {dead} cannot "
                                  "be reached")


def test_private_tracking_servers_are_refused_unless_the_operator_allows(
        api, clf, settings):
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = False
    settings.MLFLOW_TRACKING_URI = "http://127.0.0.1:5999"
    client = api("contributor")
    refused = _import(client, clf.pk, tracking_uri="http://10.1.2.3:5000", name="m",
                      version="1")
    assert refused.status_code == 400
    assert refused.json()["code"] == "tracking_uri_refused"
    assert "MODELGATE_MLFLOW_ALLOW_PRIVATE" in refused.json()["detail"]
    # The operator's own server is always allowed (and is the default).
    accepted = _import(client, clf.pk, name="m", version="1")
    assert accepted.status_code == 202
    assert accepted.json()["tracking_uri"] == "http://127.0.0.1:5999"
    assert _import(api("viewer"), clf.pk, name="m", version="2").status_code == 403


def test_the_operators_credentials_go_to_the_operators_server_only(settings):
    settings.MLFLOW_TRACKING_URI = "http://127.0.0.1:5999"
    settings.MLFLOW_TRACKING_TOKEN = "operator-token"
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    own = mlflow_services.tracking_server("http://127.0.0.1:5999/")
    other = mlflow_services.tracking_server("http://127.0.0.1:6000")
    assert own.session.headers["Authorization"] == "Bearer operator-token"
    assert "Authorization" not in other.session.headers and other.session.auth is None


def test_the_model_pages_form_queues_an_import(client, users, clf, settings, task_queue):
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    task_queue.hold("workers.registry.import_mlflow_version")
    client.force_login(users["contributor"])
    page = f"/p/{clf.project.slug}/m/{clf.name}/import-mlflow/"
    assert "Import from MLflow" in client.get(clf.get_absolute_url()).content.decode()
    refused = client.post(page, {"name": "tumor"})  # no version: said on the form
    assert refused.status_code == 200 and "version" in refused.content.decode()
    assert not MlflowImport.objects.exists()
    done = client.post(page, {"tracking_uri": "http://127.0.0.1:5999", "name": "tumor",
                              "version": "3"}, follow=True)
    assert "A worker is importing models:/tumor/3" in done.content.decode()
    assert MlflowImport.objects.get().source == "models:/tumor/3"


def test_follows_are_made_and_stopped_from_the_mlflow_page_by_contributors_only(
        client, users, clf, settings, task_queue):
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    task_queue.hold("workers.registry.sync_mlflow_follow")
    made = f"/p/{clf.project.slug}/m/{clf.name}/mlflow-follows/"
    body = {"follow-tracking_uri": "http://127.0.0.1:5999", "follow-registered_name": "tumor",
            "follow-alias": "champion"}
    client.force_login(users["viewer"])
    assert client.post(made, body).status_code == 403
    client.force_login(users["outsider"])
    assert client.post(made, body).status_code == 404
    assert not MlflowFollow.objects.exists()
    client.force_login(users["contributor"])
    answer = client.post(made, body)
    follow = MlflowFollow.objects.get()
    assert answer.status_code == 200 and follow.secret in answer.content.decode()
    page = client.get(f"/p/{clf.project.slug}/m/{clf.name}/import-mlflow/").content.decode()
    assert "tumor@champion" in page and follow.secret not in page
    client.force_login(users["viewer"])
    stop = f"{made}{follow.pk}/delete/"
    client.post(stop)
    assert MlflowFollow.objects.filter(pk=follow.pk).exists()  # refused: viewers
    client.force_login(users["owner"])
    assert client.post(stop).status_code == 302
    assert not MlflowFollow.objects.exists()


def test_the_webhook_code_the_follow_page_gives_creates_mlflows_webhook(
        client, users, clf, mlflow_server, allowed, task_queue, settings):
    """The snippet shown once a follow is made, run by MLflow's own client as given."""
    settings.MODELGATE_BASE_URL = "http://127.0.0.1:8000"
    import html
    import re
    import subprocess

    from tests.integration.mlflow_fixtures import ENV, _python

    task_queue.hold("workers.registry.sync_mlflow_follow")
    client.force_login(users["contributor"])
    answer = client.post(f"/p/{clf.project.slug}/m/{clf.name}/mlflow-follows/", {
        "follow-tracking_uri": mlflow_server["url"], "follow-registered_name": "tumor",
        "follow-tag_key": "stage", "follow-tag_value": "candidate"})
    follow = MlflowFollow.objects.get()
    code = html.unescape(re.search(r'<pre[^>]*id="follow-webhook-code">(.*?)</pre>',
                                   answer.content.decode(), re.S).group(1))
    ran = subprocess.run([str(_python()), "-c", code], capture_output=True, timeout=120,
                         env={**os.environ, **ENV, "MLFLOW_TRACKING_URI": mlflow_server["url"]})
    assert ran.returncode == 0, ran.stderr.decode()[-2000:]
    hooks = requests.get(f"{mlflow_server['url']}/api/2.0/mlflow/webhooks", timeout=10).json()
    [hook] = [h for h in hooks["webhooks"] if h["name"] == f"modelgate-{follow.pk}"]
    assert hook["url"].endswith(f"/api/v1/mlflow-follows/{follow.pk}/webhook/")
    assert hook["events"] == [{"entity": "MODEL_VERSION_TAG", "action": "SET"}]


@pytest.mark.django_db(transaction=True)
def test_two_requests_racing_for_one_mlflow_version_make_one_import(
        clf, users, settings, task_queue):
    """Both requests pass the check before either inserts; the constraint decides."""
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    task_queue.hold("workers.registry.import_mlflow_version")
    source = mlflow_services.ops_mlflow.Source("model", name="tumor", version="1")
    barrier = threading.Barrier(2)
    real_live = mlflow_services._live
    results, errors = [], []

    def slow_live(*args):
        found = real_live(*args)
        if found is None:
            barrier.wait(timeout=10)  # both have looked and seen nothing
        return found

    def request():
        try:
            results.append(mlflow_services.request_import(
                users["contributor"], clf, source, tracking_uri="http://127.0.0.1:5999"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            connection.close()

    mlflow_services._live = slow_live
    try:
        threads = [threading.Thread(target=request) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        mlflow_services._live = real_live
    assert not errors, errors
    assert sorted(created for _, created in results) == [False, True]
    assert len({item.pk for item, _ in results}) == 1
    assert MlflowImport.objects.filter(model=clf).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_followed_alias_is_imported_when_mlflow_moves_it(
        api, clf, users, mlflow_server, allowed, live_server, settings, capsys, monkeypatch,
        tmp_path):
    """MLflow's webhook (HMAC-signed by MLflow itself) reaches the portal, which looks at
    MLflow and imports the version the alias names; beat's poll finds nothing new after."""
    settings.MODELGATE_BASE_URL = live_server.url
    client = api("contributor")
    created = client.post("/api/v1/mlflow-follows/", {
        "model": clf.pk, "tracking_uri": mlflow_server["url"], "registered_name": "tumor",
        "alias": f"prod-{uuid.uuid4().hex[:6]}"}, format="json")
    assert created.status_code == 201, created.json()
    follow = MlflowFollow.objects.get(pk=created.json()["id"])
    assert follow.imports.count() == 0  # the alias is not set yet: nothing to import
    hooked = requests.post(f"{mlflow_server['url']}/api/2.0/mlflow/webhooks", json={
        "name": f"modelgate-{follow.pk}", "url": created.json()["webhook_url"],
        # MLflow's REST API spells the enums as its protobuf does.
        "events": [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}],
        "secret": created.json()["secret"]}, timeout=10)
    assert hooked.status_code == 200, hooked.text
    moved = requests.post(f"{mlflow_server['url']}/api/2.0/mlflow/registered-models/alias",
                          json={"name": "tumor", "alias": follow.alias,
                                "version": mlflow_server["skops"]["version"]}, timeout=10)
    assert moved.status_code == 200, moved.text
    # MLflow delivers from a thread; the portal's worker (eager, in the live server's
    # thread) imports, then validates once the import has committed.
    deadline = time.monotonic() + 60
    while (not follow.imports.filter(status="done", version__status="ready").exists()
           and time.monotonic() < deadline):
        time.sleep(0.2)
    item = follow.imports.get()
    assert item.source == f"models:/tumor/{mlflow_server['skops']['version']}"
    assert item.status == "done", item.reason
    assert item.version.status == "ready"
    # Polling (where MLflow's webhooks are not available) finds the same version: no second.
    assert mlflow_services.sync_follow(follow.pk)[0].pk == item.pk
    assert ModelVersion.objects.filter(model=clf).count() == 1

    # A pipeline imports a run's model with the CLI: MLflow pickled it (cloudpickle), every
    # type in it is trusted, so the worker converts it to skops; no pickle is registered.
    code, out = _cli(capsys, monkeypatch, live_server, users["contributor"], tmp_path,
                     "import-mlflow", "--model", clf.name, "--tracking-uri",
                     mlflow_server["url"], "--run-id", mlflow_server["pickled"]["run_id"])
    assert code == 0, out
    imported = json.loads(out)
    assert imported["import"]["source"] == f"runs:/{mlflow_server['pickled']['run_id']}/model"
    assert imported["version"]["status"] == "ready", imported["version"]["status_reason"]
    version = ModelVersion.objects.get(pk=imported["version"]["id"])
    assert version.artifact_format == "skops" and not version.converted_uri
    assert version.estimator.endswith("RandomForestClassifier")
    assert version.mlflow_import.source_sha256 != version.artifact_sha256  # MLflow's file


def test_webhook_deliveries_with_a_wrong_signature_are_refused(clf, users, settings, client):
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    follow = mlflow_services.follow(users["contributor"], clf, registered_name="tumor",
                                    alias="champion", tracking_uri="http://127.0.0.1:5999")
    from ops.mlflow_webhooks import webhook_signature

    body = json.dumps({"entity": "model_version_alias", "action": "created",
                       "data": {"name": "tumor", "alias": "champion", "version": "1"}})
    stamp = str(int(time.time()))
    url = f"/api/v1/mlflow-follows/{follow.pk}/webhook/"
    headers = {"HTTP_X_MLFLOW_DELIVERY_ID": "d1", "HTTP_X_MLFLOW_TIMESTAMP": stamp}
    wrong = client.post(url, body, content_type="application/json",
                        HTTP_X_MLFLOW_SIGNATURE=webhook_signature("other", "d1", stamp,
                                                                  body.encode()), **headers)
    assert wrong.status_code == 401 and wrong.json()["code"] == "bad_signature"
    old = str(int(time.time()) - 3600)
    stale = client.post(url, body, content_type="application/json",
                        HTTP_X_MLFLOW_DELIVERY_ID="d1", HTTP_X_MLFLOW_TIMESTAMP=old,
                        HTTP_X_MLFLOW_SIGNATURE=webhook_signature(follow.secret, "d1", old,
                                                                  body.encode()))
    # Every refusal answers alike (a stale delivery too): follow ids are not probed.
    assert (stale.status_code, stale.json()) == (wrong.status_code, wrong.json())
    unknown = client.post("/api/v1/mlflow-follows/999999/webhook/", body,
                          content_type="application/json", **headers)
    assert (unknown.status_code, unknown.json()) == (wrong.status_code, wrong.json())


def _webhook(client, follow_id, **headers):
    return client.post(f"/api/v1/mlflow-follows/{follow_id}/webhook/", b"{}",
                       content_type="application/json", **headers)


def test_an_existing_follow_answers_refused_deliveries_as_a_missing_one(
        clf, users, settings, client):
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    follow = mlflow_services.follow(users["contributor"], clf, registered_name="tumor",
                                    alias="champion", tracking_uri="http://127.0.0.1:5999")
    now = str(int(time.time()))
    for headers in ({}, {"HTTP_X_MLFLOW_DELIVERY_ID": "d", "HTTP_X_MLFLOW_TIMESTAMP": "1",
                         "HTTP_X_MLFLOW_SIGNATURE": "v1,x"},
                    {"HTTP_X_MLFLOW_DELIVERY_ID": "d", "HTTP_X_MLFLOW_TIMESTAMP": now,
                     "HTTP_X_MLFLOW_SIGNATURE": "v1,x"}):
        known, unknown = _webhook(client, follow.pk, **headers), _webhook(client, 999999,
                                                                           **headers)
        assert known.status_code == 401
        assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())


def test_a_non_ascii_signature_is_a_401_not_a_500(clf, users, settings, client):
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    follow = mlflow_services.follow(users["contributor"], clf, registered_name="tumor",
                                    alias="champion", tracking_uri="http://127.0.0.1:5999")
    client.raise_request_exception = False
    answer = _webhook(client, follow.pk, HTTP_X_MLFLOW_DELIVERY_ID="d",
                      HTTP_X_MLFLOW_TIMESTAMP=str(int(time.time())),
                      HTTP_X_MLFLOW_SIGNATURE="v1,\u00e9")
    assert answer.status_code == 401 and answer.json()["code"] == "bad_signature"


def test_a_name_rebound_to_loopback_is_not_connected_to(settings, monkeypatch):
    import http.server

    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = False
    settings.MLFLOW_TRACKING_URI = ""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    rebind_to_loopback(monkeypatch, port)  # public once, then loopback
    try:
        client = mlflow_services.tracking_server(f"http://rebind.attacker.example:{port}")
        with pytest.raises(mlflow_services.ops_mlflow.MlflowError) as refused:
            client.run("abc")
    finally:
        server.shutdown()
        server.server_close()
    assert not hits and refused.value.code == "tracking_uri_refused"


def _with_upload_rate(settings, rate):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "uploads": rate}}
    before = SimpleRateThrottle.THROTTLE_RATES
    api_settings.reload()
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    return before


def test_mlflow_imports_and_follows_count_against_the_upload_rate(
        api, clf, settings, task_queue):
    from rest_framework.throttling import SimpleRateThrottle

    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    settings.MLFLOW_TRACKING_URI = "http://127.0.0.1:5999"
    task_queue.hold("workers.registry.import_mlflow_version")
    task_queue.hold("workers.registry.sync_mlflow_follow")
    before = _with_upload_rate(settings, "3/hour")
    try:
        client = api("contributor")
        codes = [_import(client, clf.pk, name="m", version=str(i)).status_code
                 for i in range(1, 5)]
        assert codes == [202, 202, 202, 429]
        other = api("owner")
        answers = [other.post("/api/v1/mlflow-follows/", {
            "model": clf.pk, "registered_name": f"m{i}", "alias": "champion",
            "tracking_uri": "http://127.0.0.1:5999"},
            format="json") for i in range(4)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429], answers[0].json()
    finally:
        SimpleRateThrottle.THROTTLE_RATES = before


def test_follows_of_one_model_are_bounded(users, clf, settings, task_queue):
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    settings.MODELGATE_MLFLOW_MAX_FOLLOWS = 3
    task_queue.hold("workers.registry.sync_mlflow_follow")
    for i in range(3):
        mlflow_services.follow(users["contributor"], clf, registered_name=f"m{i}",
                               alias="champion", tracking_uri="http://127.0.0.1:5999")
    with pytest.raises(mlflow_services.ValidationFailed) as refused:
        mlflow_services.follow(users["contributor"], clf, registered_name="m3",
                               alias="champion", tracking_uri="http://127.0.0.1:5999")
    assert refused.value.code == "too_many_follows" and "3" in refused.value.detail
    assert mlflow_services.poll_follows() == 3


def test_a_follow_whose_looks_keep_failing_is_polled_less_and_less_often(
        users, clf, settings, task_queue):
    from datetime import timedelta

    from django.utils import timezone

    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    settings.MODELGATE_MLFLOW_POLL_SECONDS = 300
    task_queue.hold("workers.registry.sync_mlflow_follow")
    dead = f"http://127.0.0.1:{_free_port()}"
    follow = mlflow_services.follow(users["contributor"], clf, registered_name="tumor",
                                    alias="champion", tracking_uri=dead)
    assert mlflow_services.poll_follows() == 1  # never looked at
    for failures in (1, 2, 3):
        mlflow_services.sync_follow(follow.pk)
        follow.refresh_from_db()
        assert mlflow_services.failures_in_a_row(follow.last_error) == failures
        assert "mlflow_unavailable" in follow.last_error
        wait = min(300 * 2 ** failures, 86400)
        MlflowFollow.objects.filter(pk=follow.pk).update(
            last_checked_at=timezone.now() - timedelta(seconds=wait - 200))
        assert mlflow_services.poll_follows() == 0  # still backing off
        MlflowFollow.objects.filter(pk=follow.pk).update(
            last_checked_at=timezone.now() - timedelta(seconds=wait))
        assert mlflow_services.poll_follows() == 1
    assert mlflow_services.backoff_seconds(20) == 86400  # at most a day
    # A look that succeeds clears the count: polled every interval again.
    MlflowFollow.objects.filter(pk=follow.pk).update(last_error="",
                                                     last_checked_at=timezone.now())
    assert mlflow_services.poll_follows() == 1
