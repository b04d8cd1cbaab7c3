"""Issue 18, item 7 — no leaks. A viewer of the project and the hostile owner of another one
(oscar, who owns "elsewhere") read everything they can; what they must never learn:

- where the portal keeps files (datasets and artifacts are addressed by id; reader errors
  are scrubbed of paths),
- what exists in projects they cannot see (a made-up id and another project's id answer
  the same plain 404),
- the portal's metrics, in the production profile, without the token;

and no odd label or path makes a page or the API answer 500 (an alert's endpoint with "/",
NUL characters anywhere), with the web server's 414 documented in the schema.
(Membership invitations are not covered here.)
"""

from __future__ import annotations

import io
import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from portal.monitoring.checks import check_metrics_token
from portal.monitoring.models import Alert
from portal.registry import services as registry
from portal.registry.choices import VersionStatus
from portal.registry.models import Dataset, ModelVersion
from portal.registry.storage import get_store
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

PLAIN_404 = {"code": "not_found", "detail": "Not found."}
AM_TOKEN = "am-secret"


@pytest.fixture
def browser_for(users):
    def make(who):
        client = Client()
        client.force_login(users[who])
        return client
    return make


@pytest.fixture
def server_paths(settings, tmp_path) -> list[str]:
    """What must never appear in an answer: the folders the portal keeps files in."""
    return sorted({str(tmp_path), str(settings.DATA_DIR), str(settings.MODELGATE_ARTIFACT_ROOT),
                   str(settings.MODELGATE_ARTIFACT_ROOT.resolve()), "file://"})


def assert_no_server_path(text: str, server_paths: list[str], where: str) -> None:
    for path in server_paths:
        assert path not in text, f"{where} shows {path}"


def _csv(frame, name="train.csv") -> io.BytesIO:
    buffer = io.BytesIO(frame.to_csv(index=False).encode())
    buffer.name = name
    return buffer


def _upload_dataset(client, project, name, file) -> dict:
    response = client.post("/api/v1/datasets/", {"project": project.pk, "name": name,
                                                 "file": file}, format="multipart")
    assert response.status_code == 201, response.json()
    return response.json()


# 1. Server paths are never shown --------------------------------------------------------------


def test_viewers_never_see_where_datasets_and_artifacts_are_stored(
        api, browser_for, project, clf, cancer_frame, server_paths):
    contributor = api("contributor")
    good = _upload_dataset(contributor, project, "cancer-train", _csv(cancer_frame))
    junk = io.BytesIO(b"PAR1" + b"\x07" * 64)  # says Parquet, is not: pyarrow names the file
    junk.name = "broken.parquet"
    broken = _upload_dataset(contributor, project, "broken", junk)
    reason = Dataset.objects.get(pk=broken["id"]).profile_reason
    assert "cannot be read" in reason, reason  # the reader's error was recorded...
    version = contributor.upload(clf.pk, random_classifier_bytes(1),
                                 metadata(dataset="cancer-train")).json()
    # ...and a version whose stored file went missing says so in its status reason.
    lost = contributor.upload(clf.pk, random_classifier_bytes(2), metadata()).json()
    lost_row = ModelVersion.objects.get(pk=lost["id"])
    get_store().delete(lost_row.artifact_uri)
    ModelVersion.objects.filter(pk=lost_row.pk).update(status=VersionStatus.PENDING)
    lost_row = registry.validate_version(lost_row.pk)
    assert lost_row.status == VersionStatus.INVALID
    assert "not in the artifact store" in lost_row.status_reason

    viewer = api("viewer")
    for url in ("/api/v1/datasets/", f"/api/v1/datasets/{good['id']}/",
                f"/api/v1/datasets/{broken['id']}/", "/api/v1/versions/",
                f"/api/v1/versions/{version['id']}/", f"/api/v1/versions/{lost['id']}/",
                f"/api/v1/versions/{version['id']}/lineage/",
                f"/api/v1/models/{clf.pk}/versions/", f"/api/v1/models/{clf.pk}/",
                f"/api/v1/audit-events/?project={project.pk}"):
        answer = viewer.get(url)
        assert answer.status_code == 200, url
        assert_no_server_path(answer.content.decode(), server_paths, url)
    for dataset in viewer.get("/api/v1/datasets/").json()["results"]:
        assert "uri" not in dataset
    assert "uri" not in viewer.get(f"/api/v1/datasets/{good['id']}/").json()
    assert viewer.get(f"/api/v1/datasets/{broken['id']}/").json()["profile_reason"] == reason

    pages = browser_for("viewer")
    for url in ("/", "/p/clinical-ml/", f"/datasets/{good['id']}/", f"/datasets/{broken['id']}/",
                "/p/clinical-ml/m/tumor-classifier/",
                f"/p/clinical-ml/m/tumor-classifier/v/{version['number']}/",
                f"/p/clinical-ml/m/tumor-classifier/v/{lost['number']}/", "/models/"):
        answer = pages.get(url)
        assert answer.status_code == 200, url
        assert_no_server_path(answer.content.decode(), server_paths, url)


def test_the_api_schema_has_no_path_fields():
    schema = Client().get("/api/schema/?format=json").json()
    for name in ("Dataset", "DatasetDetail", "ModelVersion"):
        fields = schema["components"]["schemas"][name]["properties"]
        assert not {"uri", "path", "artifact_uri", "converted_uri"} & set(fields), name


# 2. Errors about other projects are plain 404s ------------------------------------------------


def _refusals(client, payloads) -> list[tuple]:
    answers = []
    for url, body, kind in payloads:
        response = client.post(url, body, format=kind)
        answers.append((url, response.status_code, response.json()))
    return answers


def test_ids_of_other_projects_answer_exactly_like_ids_that_do_not_exist(
        api, project, other_project, cancer_frame):
    hostile = api("outsider")  # owner of "elsewhere", not a member of clinical-ml
    missing = 10 ** 6

    def payloads(project_id):
        return [
            ("/api/v1/models/", {"project": project_id, "name": "probe",
                                 "task": "classification"}, "json"),
            ("/api/v1/datasets/", {"project": project_id, "name": "probe",
                                   "file": _csv(cancer_frame.head(5))}, "multipart"),
            ("/api/v1/environments/", {"project": project_id, "name": "probe"}, "json"),
            ("/api/v1/webhooks/", {"project": project_id, "name": "probe",
                                   "url": "https://hooks.example.com/x"}, "json"),
        ]
    hidden = _refusals(hostile, payloads(project.pk))
    made_up = _refusals(hostile, payloads(missing))
    for (url, status, body), (_, status2, body2) in zip(hidden, made_up, strict=True):
        assert (status, body) == (404, PLAIN_404), url
        assert (status2, body2) == (404, PLAIN_404), url
    assert not Dataset.objects.filter(name="probe").exists()


def test_a_release_to_another_projects_environment_says_nothing_about_it(
        api, users, project, other_project, clf):
    hostile_env = api("outsider").post("/api/v1/environments/", {
        "project": other_project.pk, "name": "secret-prod"}, format="json")
    assert hostile_env.status_code == 201, hostile_env.json()
    hostile_env = hostile_env.json()
    version = api("contributor").upload(clf.pk, random_classifier_bytes(3), metadata()).json()
    assert ModelVersion.objects.get(pk=version["id"]).status == VersionStatus.READY

    contributor = api("contributor")
    for environment in (hostile_env["id"], 10 ** 6):
        answer = contributor.post("/api/v1/approval-requests/", {
            "version": version["id"], "environment": environment}, format="json")
        assert (answer.status_code, answer.json()) == (404, PLAIN_404), environment
    # The other way round: oscar names clinical-ml's version (or one that does not exist).
    for version_id in (version["id"], 10 ** 6):
        answer = api("outsider").post("/api/v1/approval-requests/", {
            "version": version_id, "environment": hostile_env["id"]}, format="json")
        assert (answer.status_code, answer.json()) == (404, PLAIN_404), version_id

    # A member of both projects may be told the environment is in the other one.
    from portal.accounts.models import Membership
    Membership.objects.create(project=other_project, user=users["contributor"], role="viewer")
    answer = api("contributor").post("/api/v1/approval-requests/", {
        "version": version["id"], "environment": hostile_env["id"]}, format="json")
    assert answer.status_code == 400 and answer.json()["field"] == "environment"


def test_pages_of_another_project_are_plain_404s(browser_for, project, clf, other_project):
    hostile = browser_for("outsider")
    for url in ("/p/clinical-ml/", "/p/clinical-ml/m/tumor-classifier/",
                "/p/clinical-ml/environments/", "/p/clinical-ml/webhooks/",
                "/p/clinical-ml/settings/", "/p/no-such-project/"):
        answer = hostile.get(url)
        assert answer.status_code == 404, url
        assert "Clinical ML" not in answer.content.decode()


# 3. /metrics in the production profile -----------------------------------------------------


def test_metrics_are_open_in_development_only(settings):
    settings.MODELGATE_METRICS_TOKEN = ""
    settings.MODELGATE_PRODUCTION = False
    assert Client().get("/metrics").status_code == 200  # the demo and the tests scrape it
    assert check_metrics_token(None) == []

    settings.MODELGATE_PRODUCTION = True
    closed = Client().get("/metrics")
    assert closed.status_code == 403 and b"modelgate_" not in closed.content
    assert [w.id for w in check_metrics_token(None)] == ["modelgate.W101"]

    settings.MODELGATE_METRICS_TOKEN = "scrape-me"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
    assert check_metrics_token(None) == []


# 4. Alerts with odd labels --------------------------------------------------------------------

ODD_ENDPOINTS = ["a/b", "..", "a/../b", "./x", "x?y#z", "%2F", "a b", "é/ü", "//evil.example",
                 "a\\b", "-" * 120]


@pytest.fixture
def receiver(settings):
    settings.MODELGATE_ALERTMANAGER_TOKEN = AM_TOKEN

    def post(*labels_list):
        alerts = [{"status": "firing", "labels": {"alertname": "ModelgateHighErrorRate",
                                                  "project": "clinical-ml",
                                                  "environment": "production", **labels},
                   "annotations": {"summary": "odd"}, "startsAt": "2026-11-22T02:30:00Z"}
                  for labels in labels_list]
        return Client().post("/api/v1/alerts/alertmanager/", {"alerts": alerts},
                             content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {AM_TOKEN}")
    return post


def test_an_alert_with_an_odd_endpoint_label_has_a_working_page(api, browser_for, project,
                                                                 receiver):
    assert api("owner").post("/api/v1/environments/", {"project": project.pk,
                                                       "name": "production"},
                             format="json").status_code == 201
    assert receiver(*[{"endpoint": e} for e in ODD_ENDPOINTS]).status_code == 200
    viewer = browser_for("viewer")
    for alert in Alert.objects.all():
        page = viewer.get(alert.get_absolute_url())
        assert page.status_code == 200, alert.endpoint
        link = re.search(r'id="endpoint-link" href="([^"]+)"', page.content.decode())
        assert link, alert.endpoint
        href = link.group(1).replace("&amp;", "&")
        assert href.startswith("/p/clinical-ml/environments/production/monitoring/"), href
        followed = viewer.get(href)
        assert followed.status_code in (200, 404), (alert.endpoint, href, followed.status_code)
    for url in ("/alerts/", "/alerts/?state=firing", "/", "/api/v1/alerts/"):
        assert viewer.get(url).status_code == 200, url


def test_alert_labels_holding_nul_are_refused_and_nothing_is_kept(receiver, project):
    answer = receiver({"endpoint": "a\x00b"})
    assert answer.status_code == 400 and answer.json()["code"] in ("parse_error",
                                                                   "validation_error")
    assert not Alert.objects.exists()


# 5. NUL characters in paths, queries, forms and bodies -------------------------------------------

SAMPLE = {"slug": "clinical-ml", "name": "tumor-classifier", "number": "1", "pk": "1",
          "action": "acknowledge", "endpoint": "tumor-classifier", "object_id": "1",
          "content_type_id": "1", "id": "1", "alias": "champion", "explanation_id": "1",
          "format": "json", "app_label": "registry", "url": "x"}
GROUP = re.compile(r"<(?:(?P<conv>\w+):)?(?P<name>\w+)>|\(\?P<(?P<rname>\w+)>[^)]*\)")


def _routes(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry, pattern)
        elif isinstance(entry, URLPattern):
            yield pattern


def _concrete(pattern: str, poisoned: str | None) -> str:
    """A path for a route pattern: sample values, NUL in the parameter ``poisoned``."""
    def value(match):
        name = match.group("name") or match.group("rname")
        return "x%00y" if name == poisoned else SAMPLE.get(name, "1")
    path = GROUP.sub(value, pattern)
    path = path.replace("^", "").replace("$", "").replace("\\.", ".").replace("/?", "/")
    return "/" + path


def _nul_paths() -> list[str]:
    paths = set()
    for pattern in _routes():
        names = [m.group("name") or m.group("rname") for m in GROUP.finditer(pattern)]
        for name in names:
            paths.add(_concrete(pattern, name))
        base = _concrete(pattern, None)
        paths.add(base.rstrip("/") + "/%00/" if base.endswith("/") else base + "%00")
        paths.add(base + "%00")
    return sorted(paths)


def test_nul_in_any_page_or_api_path_is_a_404(browser_for, api, clf, project):
    paths = _nul_paths()
    assert len(paths) > 100 and "/p/clinical-ml/m/x%00y/" in paths
    for client in (browser_for("viewer"), browser_for("staff"), Client()):
        for path in paths + ["/p/%00/", "/p/clinical-ml/m/%00/", "/%00"]:
            answer = client.get(path, follow=True)  # a missing slash is added first (301)
            assert answer.status_code == 404, (path, answer.status_code)
            assert all(status == 301 for _, status in answer.redirect_chain), path
    answer = api("viewer").get("/api/v1/models/%00/")
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"


@pytest.mark.parametrize("url", ["/", "/projects/", "/models/", "/alerts/", "/releases/",
                                 "/experiments/", "/tokens/", "/p/clinical-ml/",
                                 "/p/clinical-ml/m/tumor-classifier/", "/api/v1/models/",
                                 "/api/v1/versions/", "/api/v1/alerts/", "/api/v1/datasets/"])
def test_nul_in_a_query_string_is_a_400(browser_for, clf, url):
    client = browser_for("viewer")
    for query in ("q=%00", "search=%00", "x=a%00b", "%00=1"):
        answer = client.get(f"{url}?{query}")
        assert answer.status_code == 400, (url, query, answer.status_code)


def test_nul_in_a_form_or_a_json_body_is_a_400_and_nothing_is_kept(
        browser_for, api, project, clf, skops_bytes, receiver, users):
    owner = browser_for("owner")
    assert owner.post("/projects/new/", {"name": "X\x00", "slug": "nul-project"}).status_code \
        == 400
    assert owner.post("/p/clinical-ml/models/new/", {
        "name": "nul-model", "task": "classification",
        "description": "a\x00b"}).status_code == 400
    assert owner.post("/p/clinical-ml/environments/new/", {
        "name": "nul-env", "backend": "local", "settings": '{"a": "\\u0000"}',
        "required_approvals": 1, "approval_ttl_hours": 72}).status_code in (200, 400)
    assert receiver({"endpoint": "ok"}).status_code == 200
    alert = Alert.objects.get()
    contributor = browser_for("contributor")
    assert contributor.post(f"/alerts/{alert.pk}/acknowledge/",
                            {"comment": "on\x00it"}).status_code == 400
    alert.refresh_from_db()
    assert alert.acknowledged_by is None

    rest = api("owner")
    for url, body in (
            ("/api/v1/environments/", {"project": project.pk, "name": "nul",
                                       "settings": {"a\u0000": "b"}}),
            ("/api/v1/environments/", {"project": project.pk, "name": "nul",
                                       "gates": [{"metric": "\u0000", "min": 1}]}),
            ("/api/v1/models/", {"project": project.pk, "name": "nul",
                                 "task": "classification", "description": "\u0000"}),
            ("/api/v1/feedback/", [{"prediction_id": "\u0000", "outcome": 1}]),
            ("/api/v1/tokens/", {"name": "t\u0000"})):
        answer = rest.post(url, body, format="json")
        assert answer.status_code == 400, (url, answer.status_code, answer.content[:200])
        assert {"code", "detail"} <= set(answer.json())
    upload = api("contributor").upload(clf.pk, skops_bytes, metadata(params={"C": "\u0000"}))
    assert upload.status_code == 400 and upload.json()["field"] == "metadata"
    assert not ModelVersion.objects.exists()
    assert not project.environments.filter(name__startswith="nul").exists()


# 6. The web server's 414 is in the schema -------------------------------------------------------


def test_every_operation_documents_the_web_servers_414():
    schema = Client().get("/api/schema/?format=json").json()
    operations = [(path, method, operation)
                  for path, item in schema["paths"].items()
                  for method, operation in item.items()
                  if method in ("get", "post", "put", "patch", "delete")]
    assert len(operations) > 40
    for path, method, operation in operations:
        assert "414" in operation["responses"], (method, path)
        assert "text/html" in operation["responses"]["414"]["content"], (method, path)
