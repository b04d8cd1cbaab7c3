"""SHAP explanations of registered versions: computed by the worker task when a version
becomes ready, stored only when additive, shown on the version page and through the API."""

import io
import re

import pytest
from django.test import Client

from portal.registry import services
from portal.registry.models import Explanation
from tests.portal_fixtures import metadata

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(users, project, cancer_frame, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = services.upload_dataset(
            users["contributor"], project, name="cancer",
            file=io.BytesIO(cancer_frame.to_csv(index=False).encode()), filename="cancer.csv",
            target="target")
    created.refresh_from_db()
    return created


def register(users, model, artifact, capture, **meta):
    with capture(execute=True):  # validation, then the explanation, run as the worker would
        version = services.register_version(users["contributor"], model, io.BytesIO(artifact),
                                            metadata(**meta))
    version.refresh_from_db()
    return version


def test_a_ready_version_is_explained_by_the_worker(users, clf, dataset, forest_bytes, settings,
                                                    django_capture_on_commit_callbacks):
    settings.MODELGATE_EXPLAIN_VERSIONS = True
    version = register(users, clf, forest_bytes, django_capture_on_commit_callbacks,
                       dataset=dataset.pk)
    assert version.status == "ready"
    explanation = Explanation.objects.get(version=version)
    assert explanation.status == "ready", explanation.reason
    assert explanation.method == "tree" and explanation.output == "probability of class 1"
    assert explanation.sample_size == 500 and len(explanation.values) == 500
    assert explanation.max_additivity_error < 1e-6
    assert [i["feature"] for i in explanation.importance][0] in explanation.feature_names


def test_the_api_and_the_page_show_it_to_viewers(api, users, clf, dataset, skops_bytes,
                                                 settings, django_capture_on_commit_callbacks):
    settings.MODELGATE_EXPLAIN_VERSIONS = True
    version = register(users, clf, skops_bytes, django_capture_on_commit_callbacks,
                       dataset=dataset.pk)
    body = api("viewer").get(f"/api/v1/versions/{version.pk}/explanation/").json()
    assert body["status"] == "ready" and body["method"] == "linear"
    assert body["output"] == "log-odds of class 1" and body["target_class"] == "1"
    assert body["summary"].startswith("The 3 inputs that move this model most are")
    assert "values" not in body
    full = api("viewer").get(f"/api/v1/versions/{version.pk}/explanation/?values=1").json()
    assert len(full["values"]) == len(full["rows"]) == full["sample_size"]
    assert api("outsider").get(
        f"/api/v1/versions/{version.pk}/explanation/").status_code == 404

    client = Client()
    client.force_login(users["viewer"])
    url = f"/p/clinical-ml/m/tumor-classifier/v/{version.number}/"
    page = client.get(url + "?feature=mean+area&row=3").content.decode()
    for chart in ("shap-importance", "shap-beeswarm", "shap-dependence", "shap-waterfall"):
        assert f'data-chart="{chart}"' in page
    assert 'id="explain-summary"' in page and "Effect of mean area by its value" in page
    assert client.get(url + "?row=nonsense&feature=nope").status_code == 200

    # "Show" answers with a fragment for htmx, a page without it; "Explain your rows" is a
    # form posting to the portal, permission-checked as the API's explain is.
    fragment = client.get(url + "explanation/?row=2", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and b"<html" not in fragment.content
    assert b'data-chart="shap-waterfall"' in fragment.content
    assert b"<html" in client.get(url + "explanation/?row=2").content
    rows = ",".join(str(v) for v in full["rows"][0])
    pending = client.post(url + "explain/", {"rows": rows}, headers={"HX-Request": "true"})
    assert "A worker is explaining 1 row" in pending.content.decode()  # then it asks again
    item = version.instance_explanations.get()
    services.explain_instances(item.pk)  # as the worker does
    answer = client.get(url + f"explain/{item.pk}/", headers={"HX-Request": "true"})
    assert b"probability" in answer.content and b'id="explained-rows"' in answer.content
    refused = client.post(url + "explain/", {"rows": "1,2"}, headers={"HX-Request": "true"})
    assert b"the model takes 5" in refused.content
    outsider = Client()
    outsider.force_login(users["outsider"])
    assert outsider.post(url + "explain/", {"rows": rows}).status_code == 404
    assert outsider.get(url + "explanation/").status_code == 404


def test_without_a_reference_dataset_the_reason_is_shown(api, users, clf, skops_bytes, settings,
                                                         django_capture_on_commit_callbacks):
    settings.MODELGATE_EXPLAIN_VERSIONS = True
    version = register(users, clf, skops_bytes, django_capture_on_commit_callbacks)
    explanation = Explanation.objects.get(version=version)
    assert explanation.status == "failed" and "no reference dataset" in explanation.reason
    body = api("viewer").get(f"/api/v1/versions/{version.pk}/explanation/").json()
    assert body["status"] == "failed" and body["importance"] == []
    client = Client()
    client.force_login(users["viewer"])
    page = client.get(f"/p/clinical-ml/m/tumor-classifier/v/{version.number}/").content.decode()
    assert "No explanation:" in page and "no reference dataset" in page


def test_explaining_twice_computes_once_and_invalid_versions_are_skipped(
        users, clf, dataset, skops_bytes, django_capture_on_commit_callbacks):
    version = register(users, clf, skops_bytes, django_capture_on_commit_callbacks,
                       dataset=dataset.pk)
    assert not Explanation.objects.exists()  # explaining is off in the tests by default
    first = services.explain_version(version.pk)
    second = services.explain_version(version.pk)
    assert first.pk == second.pk and second.updated_at == first.updated_at
    assert services.explain_version(999999) is None


def test_a_release_request_gets_the_diff_against_the_champion(
        api, users, clf, dataset, skops_bytes, forest_bytes, settings,
        django_capture_on_commit_callbacks):
    from portal.registry.services import set_alias
    from portal.releases import services as releases

    settings.MODELGATE_EXPLAIN_VERSIONS = True
    champion = register(users, clf, skops_bytes, django_capture_on_commit_callbacks,
                        dataset=dataset.pk, metrics={"roc_auc": 0.97, "accuracy": 0.93})
    candidate = register(users, clf, forest_bytes, django_capture_on_commit_callbacks,
                         dataset=dataset.pk, metrics={"roc_auc": 0.95, "accuracy": 0.94},
                         classes={"0": "malignant", "1": "benign"})
    set_alias(users["approver"], clf, "champion", champion)
    production = releases.create_environment(users["owner"], clf.project, name="production")
    with django_capture_on_commit_callbacks(execute=True):
        request = releases.request_approval(users["contributor"], candidate, production)
    request.refresh_from_db()
    diff = request.release_diff
    assert diff["status"] == "ready", diff
    assert diff["champion_version"] == champion.number and diff["rows"] == 569
    assert {m["metric"]: m["verdict"] for m in diff["metrics"]} == {
        "accuracy": "better", "roc_auc": "worse"}
    assert 0 < diff["disagreement_rate"] < 0.5
    assert diff["importance"]["attribution_drift"] is not None
    body = api("viewer").get(f"/api/v1/approval-requests/{request.pk}/").json()
    assert body["release_diff"]["status"] == "ready"
    client = Client()
    client.force_login(users["approver"])
    page = client.get(request.get_absolute_url()).content.decode()
    for part in ('id="release-diff"', 'id="deltas"', 'id="diff-importance"',
                 'id="diff-rows"', "Attribution drift"):
        assert part in page
    assert diff["score"] == "probability of “benign”"  # the classes by their names
    assert re.search(r"→ (benign|malignant)", page) and "class 1" not in page


# -- on demand ---------------------------------------------------------------------------------


@pytest.fixture
def forest_version(users, clf, dataset, forest_bytes, django_capture_on_commit_callbacks):
    return register(users, clf, forest_bytes, django_capture_on_commit_callbacks,
                    dataset=dataset.pk)


def test_explain_rows_on_demand_and_the_same_rows_are_answered_from_the_store(
        api, forest_version, cancer_frame):
    from tests.portal_fixtures import FEATURES

    rows = cancer_frame[FEATURES].head(3).to_numpy().tolist()
    url = f"/api/v1/versions/{forest_version.pk}/explain/"
    first = api("viewer").post(url, {"instances": rows}, format="json")
    # The worker takes it after the request commits: 202 and where to look.
    assert first.status_code == 202 and first.json()["status"] == "pending", first.json()
    assert first["Location"] == f"{url}{first.json()['id']}/"
    body = api("viewer").get(first["Location"]).json()
    assert body["status"] == "ready", body
    result = body["result"]
    assert len(result["predictions"]) == 3 and len(result["values"]) == 3
    for values, output in zip(result["values"], result["outputs"], strict=True):
        assert abs(result["base_value"] + sum(values) - output) < 1e-6
    assert result["background"].startswith("569 rows of cancer")
    as_objects = [dict(zip(FEATURES, row, strict=True)) for row in rows]
    again = api("viewer").post(url, {"instances": as_objects}, format="json")
    assert again.status_code == 200  # the same question, answered once, from the store
    assert again.json()["id"] == body["id"] and again.json()["result"] == result
    fetched = api("viewer").get(f"{url}{body['id']}/").json()
    assert fetched["status"] == "ready"
    assert api("viewer").get(f"{url}999999/").status_code == 404


@pytest.mark.parametrize("instances, field", [
    ([], "instances"),
    ([[1.0, 2.0]], "instances[0]"),
    ([{"mean radius": 1.0}], "instances[0]"),
    ([[1.0, 2.0, 3.0, 4.0, "x"]], "instances[0]"),
    ([[1.0] * 5] * 101, "instances"),
])
def test_bad_explain_requests_are_refused(api, forest_version, instances, field):
    response = api("viewer").post(f"/api/v1/versions/{forest_version.pk}/explain/",
                                  {"instances": instances}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["field"] == field


def test_non_finite_values_are_refused(api, forest_version):
    response = api("viewer").post(f"/api/v1/versions/{forest_version.pk}/explain/",
                                  '{"instances": [[1, 2, 3, 4, 1e999]]}',
                                  content_type="application/json")
    assert response.status_code == 400 and "finite" in response.json()["detail"]


def test_invalid_versions_and_outsiders_cannot_ask(api, users, clf, forest_version):
    from tests.portal_fixtures import random_classifier_bytes, schema

    assert api("outsider").post(f"/api/v1/versions/{forest_version.pk}/explain/",
                                {"instances": [[1.0] * 5]}, format="json").status_code == 404
    bad = api("contributor").upload(clf.pk, random_classifier_bytes(9),
                                    metadata(input_schema=schema(["a"]))).json()
    refused = api("viewer").post(f"/api/v1/versions/{bad['id']}/explain/",
                                 {"instances": [[1.0]]}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "version_not_ready"


def test_a_slow_explanation_is_stopped_with_a_clear_answer(api, forest_version):
    item = services.request_instance_explanation(
        forest_version.model.project.memberships.first().user, forest_version, [[1.0] * 5])
    done = services.explain_instances(item.pk, timed_out=True)
    assert done.status == "failed" and "longer than the time allowed" in done.reason


# -- rows people send, through the pages ("Explain your rows", "Try it") -----------------------


@pytest.fixture
def ready(users, clf):
    from tests.portal_fixtures import random_classifier_bytes

    version = services.register_version(users["contributor"], clf,
                                        io.BytesIO(random_classifier_bytes(1)),
                                        metadata(classes={"0": "malignant", "1": "benign"}))
    return services.validate_version(version.pk)


def _poll_url(body: str) -> str:
    import html

    return html.unescape(re.search(r'hx-get="([^"]+)"', body).group(1))


def _age(item, seconds: float = 600) -> None:
    """As if the rows were sent (and queued) ``seconds`` ago."""
    from datetime import timedelta

    from django.utils import timezone

    from portal.registry.models import InstanceExplanation

    then = timezone.now() - timedelta(seconds=seconds)
    InstanceExplanation.objects.filter(pk=item.pk).update(created_at=then, queued_at=then)


def _try(client, project, ready, capture, answer, htmx: bool = True):
    """"Try it" on an endpoint serving ``ready``, which answers ``answer``."""
    from types import SimpleNamespace
    from unittest import mock

    from portal.releases.models import Environment
    from tests.portal_fixtures import FEATURES

    env = Environment.objects.get_or_create(project=project, name="production")[0]
    served = SimpleNamespace(endpoint=ready.model.name, variants={"stable": ready},
                             address="127.0.0.1:1", environment=env)
    with mock.patch("portal.monitoring.try_it._served", return_value=(env, served)), \
            mock.patch("portal.monitoring.try_it.send", return_value=answer), \
            capture(execute=True):
        return client.post(
            f"/p/{project.slug}/environments/production/try/{ready.model.name}/",
            {f"f{i}": "1" for i in range(len(FEATURES))},
            **({"HTTP_HX_REQUEST": "true"} if htmx else {}))


ANSWER = {"prediction": 1, "probability": 0.97, "variant": "stable", "seconds": 0.01}


def test_try_it_shows_the_endpoints_answer_while_the_explanation_is_computed(
        users, project, ready, task_queue, django_capture_on_commit_callbacks):
    """With a real worker the explanation is pending when the POST answers: what the
    endpoint answered shows at once, and still after each poll, signed so a poll cannot
    make the page show an answer the endpoint never gave."""
    from portal.registry.models import InstanceExplanation

    task_queue.hold("workers.registry.explain_instances")
    client = Client()
    client.force_login(users["viewer"])
    body = _try(client, project, ready, django_capture_on_commit_callbacks, ANSWER).content.decode()
    shown = "The endpoint answered <strong>benign</strong> (probability 97.0%)"
    assert "A worker is explaining 1 row" in body and shown in body, body
    url = _poll_url(body)
    polled = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "A worker is explaining" in polled and shown in polled, polled
    forged = re.sub(r"served=[^&]+", "served=" + "x" * 20, url)
    assert "The endpoint answered" not in client.get(forged, HTTP_HX_REQUEST="true").content.decode()
    services.explain_instances(InstanceExplanation.objects.get().pk)  # as the worker does
    done = client.get(_poll_url(polled), HTTP_HX_REQUEST="true").content.decode()
    assert 'id="explained-rows"' in done and shown in done, done

    InstanceExplanation.objects.all().delete()  # the page without htmx: the same answer
    page = _try(client, project, ready, django_capture_on_commit_callbacks, ANSWER,
                htmx=False).content.decode()
    assert "<html" in page and shown in page and "A worker is explaining" in page
    assert "served=" in _poll_url(page)


def test_try_it_keeps_the_endpoints_answer_when_explaining_it_fails(
        users, project, ready, django_capture_on_commit_callbacks):
    from unittest import mock

    from portal.errors import Conflict

    client = Client()
    client.force_login(users["viewer"])
    with mock.patch("portal.registry.services.request_instance_explanation",
                    side_effect=Conflict("the explanation could not be queued")):
        body = _try(client, project, ready, django_capture_on_commit_callbacks,
                    ANSWER).content.decode()
    assert "the explanation could not be queued" in body
    assert "The endpoint answered <strong>benign</strong>" in body, body


@pytest.mark.parametrize("text, says", [
    ("[" * 100000, "nested too deeply"),
    ("a,b\n" + "1" * 200000 + ",2", "not CSV the portal can read"),
    ("1," * 600_000, "At most 1,000,000 characters"),
])
def test_explain_your_rows_answers_bad_input_with_a_message_not_a_500(users, ready, text, says):
    client = Client(raise_request_exception=False)
    client.force_login(users["viewer"])
    response = client.post(f"{ready.get_absolute_url()}explain/", {"rows": text},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.status_code
    assert says in response.content.decode()


def test_rows_whose_task_was_lost_are_queued_again_once_a_worker_would_have_answered(
        users, ready, task_queue, django_capture_on_commit_callbacks):
    """The broker away (or a worker killed) when the rows were sent: asking again soon
    after waits for the worker; asking again later, or the periodic requeue, queues them
    again."""
    from portal.registry.models import InstanceExplanation
    from tests.portal_fixtures import FEATURES

    client = Client()
    client.force_login(users["viewer"])
    url = f"{ready.get_absolute_url()}explain/"
    task_queue.hold("workers.registry.explain_instances")  # the task is lost

    def ask(values: str) -> str:
        rows = ",".join(FEATURES) + "\n" + values
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, {"rows": rows}, HTTP_HX_REQUEST="true").content.decode()

    assert "A worker is explaining" in ask("1,1,1,1,1")
    task_queue.reset()  # the broker is back
    ask("1,1,1,1,1")  # a worker may still be on it: not sent twice
    first = InstanceExplanation.objects.get()
    assert first.status == "pending" and task_queue.sent == []
    _age(first)
    answer = ask("1,1,1,1,1")  # queued again: polled again (not "no worker has explained")
    assert "A worker is explaining" in answer and "hx-get" in answer, answer
    first.refresh_from_db()
    assert first.status == "ready"

    task_queue.hold("workers.registry.explain_instances")
    ask("2,2,2,2,2")
    second = InstanceExplanation.objects.get(status="pending")
    task_queue.reset()
    assert services.requeue_stuck_work(older_than_seconds=0) == 0  # too soon to tell
    _age(second)
    assert services.requeue_stuck_work(older_than_seconds=0) == 1
    second.refresh_from_db()
    assert second.status == "ready"


def test_a_pending_answer_is_polled_less_and_less_often_then_says_how_to_retry(
        users, ready, task_queue):
    task_queue.hold("workers.registry.explain_instances")
    item = services.request_instance_explanation(users["viewer"], ready, [[1.0] * 5])
    client = Client()
    client.force_login(users["viewer"])
    url = f"{ready.get_absolute_url()}explain/{item.pk}/"

    def delay(polls: int) -> int:
        body = client.get(f"{url}?n={polls}", HTTP_HX_REQUEST="true").content.decode()
        return int(re.search(r'hx-trigger="load delay:(\d+)s"', body).group(1))

    assert [delay(n) for n in (0, 3, 6, 9, 30)] == [1, 2, 4, 8, 10]
    stopped = client.get(f"{url}?n=40", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-get" not in stopped and "Send it again" in stopped, stopped
    _age(item)
    stalled = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-get" not in stalled and "No worker has explained 1 row in 2 minutes" in stalled


def test_the_version_page_draws_an_explanation_once_and_as_drawing_it_again_would(
        users, clf, dataset, skops_bytes, settings, django_capture_on_commit_callbacks,
        monkeypatch):
    """The charts of a ready explanation are drawn once per process (decision 65): the page
    is the same drawn or kept, and what the drawing reads of the version (its class names)
    is part of what is kept, so renaming a class is shown at once."""
    from explainability import shap_charts
    from portal.registry import explain_views
    from portal.registry.models import ModelVersion

    settings.MODELGATE_EXPLAIN_VERSIONS = True
    version = register(users, clf, skops_bytes, django_capture_on_commit_callbacks,
                       dataset=dataset.pk)
    drawn = []
    beeswarm = shap_charts.shap_beeswarm
    monkeypatch.setattr(shap_charts, "shap_beeswarm",
                        lambda *a, **k: drawn.append(1) or beeswarm(*a, **k))
    explain_views._drawings.clear()
    client = Client()
    client.force_login(users["viewer"])
    url = f"/p/clinical-ml/m/tumor-classifier/v/{version.number}/?row=2"

    def page():  # without what differs from one request to the next: token, "… ago"
        text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "",
                      client.get(url).content.decode())
        return re.sub(r"(<time [^>]*>)[^<]*</time>", r"\1</time>", text)

    first, kept = page(), page()
    assert len(drawn) == 1 and first == kept
    explain_views._drawings.clear()
    assert page() == first and len(drawn) == 2
    assert "benign" not in first
    ModelVersion.objects.filter(pk=version.pk).update(
        output_schema={"classes": {"0": "malignant", "1": "benign"}})
    assert "benign" in page() and len(drawn) == 3
