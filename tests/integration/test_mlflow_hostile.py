"""What a crafted MLmodel, a typed path, a reload or a loop in the browser made MLflow's
imports and follows do (decision 66): an import left pending for ever, a path out of the
model's folder, a secret kept in the browser's cache, the uploads rate side-stepped."""

from __future__ import annotations

import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ops import mlflow as ops_mlflow
from portal.registry.choices import ImportStatus
from portal.registry.models import MlflowFollow, MlflowImport
from portal.registry.services import mlflow as mlflow_services

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

URI = "http://127.0.0.1:5999"
SOURCE = ops_mlflow.Source("model", name="m", version="1")
ALIASES = "\n".join(
    ["l0: &l0 [xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]"]
    + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 6)])


@pytest.fixture
def private_ok(settings):
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True


@pytest.fixture
def upload_rate(settings):
    """Set the ``uploads`` rate (the API's throttle reads it once, at import)."""
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    before = SimpleRateThrottle.THROTTLE_RATES

    def set_rate(rate: str) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "uploads": rate}}
        api_settings.reload()
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES

    yield set_rate
    SimpleRateThrottle.THROTTLE_RATES = before


def _fake_mlflow(monkeypatch, mlmodel: str):
    """A tracking server whose model's MLmodel file is ``mlmodel`` (no network)."""
    def resolve(self, source):
        return ops_mlflow.Resolved(source=source,
                                   artifact_uri="mlflow-artifacts:/1/abc/artifacts/model")

    def download(self, artifact_uri, relative, target, max_bytes):
        target.write_text(mlmodel)
        return len(mlmodel)

    monkeypatch.setattr(ops_mlflow.TrackingServer, "resolve", resolve)
    monkeypatch.setattr(ops_mlflow.TrackingServer, "download", download)


def _requested(users, clf, task_queue):
    task_queue.hold("workers.registry.import_mlflow_version")
    item, created = mlflow_services.request_import(users["contributor"], clf, SOURCE,
                                                   tracking_uri=URI)
    assert created
    return item


def _run(item) -> tuple[MlflowImport, str]:
    try:
        mlflow_services.run_import(item.pk)
    except Exception as e:  # noqa: BLE001 - what the worker's task would die of
        escaped = f"{type(e).__name__}: {e}"[:300]
    else:
        escaped = ""
    item.refresh_from_db()
    return item, escaped


@pytest.mark.parametrize("mlmodel", [
    "flavors:\n  xgboost: model.json\n",
    "flavors:\n  1: {}\n  pytorch: {}\n",
    "flavors:\n  " + "[" * 2000 + "]" * 2000 + ": {}\n",
    "flavors:\n  sklearn: {pickled_model: [model.pkl]}\n",
    ALIASES + "\nflavors:\n  xgboost: {data: *l5}\n",
    "flavors:\n  xgboost: {data: ../../../other-run/artifacts/model/model.json}\n",
])
def test_a_crafted_mlmodel_fails_the_import_instead_of_leaving_it_pending(
        users, clf, private_ok, task_queue, monkeypatch, mlmodel):
    """Whoever can write to the MLflow model (or move a followed alias) writes MLmodel. An
    exception other than MlflowError/ArtifactError/DomainError/TransientError escaped
    run_import: the import stayed pending and claimed, requeue_stuck_work sent it again
    every ~26 minutes for ever, and the live import blocked the source from being asked
    again."""
    item = _requested(users, clf, task_queue)
    _fake_mlflow(monkeypatch, mlmodel)
    item, escaped = _run(item)
    assert item.status == ImportStatus.FAILED, f"import left {item.status} (escaped: {escaped})"
    assert not escaped and item.reason.split(":")[0] in ("mlflow_error", "unsafe_path")
    assert len(item.reason) < 600, item.reason[:600]
    again, created = mlflow_services.request_import(users["contributor"], clf, SOURCE,
                                                    tracking_uri=URI)
    assert created, "the source stays blocked by the stuck import"


def test_an_error_nobody_foresaw_fails_the_import_naming_only_its_type(
        users, clf, private_ok, task_queue, monkeypatch, caplog):
    """The backstop: anything else a worker meets fails the import with its type (no
    message, no stack: they may hold paths or secrets), the traceback in the log."""
    item = _requested(users, clf, task_queue)

    def broken(self, resolved):
        raise KeyError("token=s3cret /srv/modelgate/private")

    _fake_mlflow(monkeypatch, "")
    monkeypatch.setattr(ops_mlflow.TrackingServer, "model_file", broken)
    with caplog.at_level(logging.ERROR, logger="portal.registry.services.mlflow"):
        item, escaped = _run(item)
    assert not escaped and item.status == ImportStatus.FAILED
    assert item.reason.startswith("internal_error: KeyError"), item.reason
    assert "s3cret" not in item.reason and "/srv" not in item.reason
    assert any(r.exc_info and "s3cret" in str(r.exc_info[1]) for r in caplog.records)
    assert mlflow_services.request_import(users["contributor"], clf, SOURCE,
                                          tracking_uri=URI)[1]


def test_the_tasks_time_limit_still_reaches_the_task(users, clf, private_ok, task_queue,
                                                     monkeypatch):
    """The soft time limit passes through (the task records it as timed_out)."""
    from celery.exceptions import SoftTimeLimitExceeded

    item = _requested(users, clf, task_queue)

    def slow(self, source):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(ops_mlflow.TrackingServer, "resolve", slow)
    with pytest.raises(SoftTimeLimitExceeded):
        mlflow_services.run_import(item.pk)
    item.refresh_from_db()
    assert item.status == ImportStatus.PENDING  # import_timed_out fails it, as before


# -- a run's model path, typed by whoever asks --------------------------------------------------

@pytest.mark.parametrize("path", ["../../other-run/artifacts/model", "model/../../x", "/model",
                                  "model/%2e%2e", "a\\b"])
def test_a_runs_model_path_outside_its_artifacts_is_refused_with_a_400(
        api, client, users, clf, private_ok, task_queue, path):
    """``runs:/<id>/<artifact_path>``: ``../`` in the typed path left the run's artifacts
    (urllib3 resolves it before the request is sent), reaching other runs or any endpoint
    of the tracking server with the operator's credentials."""
    task_queue.hold("workers.registry.import_mlflow_version")
    answer = api("contributor").post(
        f"/api/v1/models/{clf.pk}/versions/import-mlflow/",
        {"tracking_uri": URI, "run_id": "abc", "artifact_path": path}, format="json")
    assert answer.status_code == 400, answer.json()
    assert "artifact_path" in str(answer.json()) and "refused" in str(answer.json())
    client.force_login(users["contributor"])
    page = client.post(f"/p/{clf.project.slug}/m/{clf.name}/import-mlflow/", {
        "tracking_uri": URI, "run_id": "abc", "artifact_path": path})
    assert page.status_code == 200 and "model&#x27;s name in the run is refused" in \
        page.content.decode()
    with pytest.raises(mlflow_services.ValidationFailed) as refused:
        mlflow_services.request_import(users["contributor"], clf, ops_mlflow.Source(
            "run", run_id="abc", artifact_path=path), tracking_uri=URI)
    assert refused.value.field == "artifact_path"
    assert not MlflowImport.objects.exists()


# -- the page showing a follow's secret ---------------------------------------------------------

FOLLOW = {"follow-tracking_uri": URI, "follow-registered_name": "tumor",
          "follow-alias": "champion"}


def test_the_page_showing_a_follows_secret_is_not_stored(client, users, clf, private_ok,
                                                         task_queue):
    """The follow's page holds the webhook's secret, shown once, and said nothing: the
    browser's history and any cache could keep and show it again."""
    task_queue.hold("workers.registry.sync_mlflow_follow")
    client.force_login(users["contributor"])
    answer = client.post(f"/p/{clf.project.slug}/m/{clf.name}/mlflow-follows/", FOLLOW)
    follow = MlflowFollow.objects.get()
    assert answer.status_code == 200 and follow.secret in answer.content.decode()
    assert answer.headers.get("Cache-Control") == "no-store", dict(answer.headers)


# -- the uploads rate, from the browser as from the API -----------------------------------------

def test_follows_from_the_browser_count_against_the_upload_rate(client, users, clf,
                                                                 private_ok, task_queue,
                                                                 upload_rate):
    """Decision 66: new follows count against the uploads rate (the API's viewset throttles
    them). The page's form did not: a contributor could follow and stop following in a
    loop, each follow queuing a look at an address they typed."""
    task_queue.hold("workers.registry.sync_mlflow_follow")
    upload_rate("3/hour")
    client.force_login(users["contributor"])
    page = f"/p/{clf.project.slug}/m/{clf.name}/mlflow-follows/"
    answers = [client.post(page, {**FOLLOW, "follow-registered_name": f"m{i}"})
               for i in range(5)]
    assert MlflowFollow.objects.count() == 3
    assert "Too many requests" in answers[3].content.decode()
    assert "Too many requests" not in answers[2].content.decode()


def test_imports_from_the_browser_share_the_apis_upload_count(api, client, users, clf,
                                                                private_ok, task_queue,
                                                                upload_rate):
    task_queue.hold("workers.registry.import_mlflow_version")
    upload_rate("3/hour")
    for version in (1, 2):
        assert api("contributor").post(
            f"/api/v1/models/{clf.pk}/versions/import-mlflow/",
            {"tracking_uri": URI, "name": "m", "version": str(version)},
            format="json").status_code == 202
    client.force_login(users["contributor"])
    page = f"/p/{clf.project.slug}/m/{clf.name}/import-mlflow/"
    first = client.post(page, {"tracking_uri": URI, "name": "m", "version": "3"})
    assert first.status_code == 302
    refused = client.post(page, {"tracking_uri": URI, "name": "m", "version": "4"})
    assert refused.status_code == 200 and "Too many requests" in refused.content.decode()
    assert MlflowImport.objects.count() == 3


def test_uploads_from_the_browser_count_against_the_upload_rate(client, users, clf,
                                                                upload_rate, task_queue):
    """The version and dataset upload pages did not count either (the API's do)."""
    upload_rate("2/hour")
    client.force_login(users["contributor"])
    answers = [client.post(f"/p/{clf.project.slug}/m/{clf.name}/versions/new/", {
        "artifact": SimpleUploadedFile("model.skops", b"not a model"),
        "schema_from": "auto"}) for _ in range(2)]
    assert not any("Too many requests" in a.content.decode() for a in answers)
    third = client.post(f"/p/{clf.project.slug}/m/{clf.name}/versions/new/", {
        "artifact": SimpleUploadedFile("model.skops", b"not a model"), "schema_from": "auto"})
    assert "Too many requests" in third.content.decode()
    dataset = client.post(f"/p/{clf.project.slug}/datasets/new/", {
        "name": "d", "file": SimpleUploadedFile("d.csv", b"a,b\n1,2\n"), "purpose": "reference"})
    assert "Too many requests" in dataset.content.decode()
