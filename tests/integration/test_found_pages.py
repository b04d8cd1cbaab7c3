"""The pages people looked for: versions compared side by side, every rollout on one page,
a project's audit log for its owners, and a dataset's file downloaded from its page."""

import io

import pytest
from django.test import Client

from portal.registry import services
from portal.registry.models import Evaluation
from portal.registry.storage import get_store
from portal.releases.models import Deployment, Environment
from tests.portal_fixtures import FEATURES, metadata, random_classifier_bytes

pytestmark = pytest.mark.django_db

CSV = b"a,b,target\n1,2,0\n3,4,1\n"


@pytest.fixture
def browser_for(users):
    def make(who):
        client = Client()
        client.force_login(users[who])
        return client
    return make


@pytest.fixture
def world(users, project, clf, other_project):
    dataset = services.upload_dataset(users["contributor"], project, name="train",
                                      file=io.BytesIO(CSV), filename="train.csv",
                                      target="target")
    first = services.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(1)),
        metadata(dataset=dataset.pk, metrics={"roc_auc": 0.91, "log_loss": 0.30, "lift": 2},
                 params={"C": 1.0, "penalty": "l2"}))
    # v2: a feature dropped, one retyped, one added; better on one metric, worse on another.
    schema = [{"name": n, "type": "double"} for n in FEATURES[1:]]
    schema[0]["type"] = "integer"
    schema.append({"name": "age", "type": "integer"})
    second = services.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(2)),
        metadata(input_schema=schema, parent=first.number,
                 metrics={"roc_auc": 0.95, "log_loss": 0.35, "lift": 3},
                 params={"C": 0.5, "penalty": "l2"},
                 code={"repository": "https://git.example.com/x", "commit": "feedbeef" * 5}))
    production = Environment.objects.create(project=project, name="production")
    staging = Environment.objects.create(project=project, name="staging")
    elsewhere = Environment.objects.create(project=other_project, name="production")
    rollouts = [Deployment.objects.create(environment=env, model=clf, candidate=second,
                                          stable=first, endpoint=clf.name, strategy="canary",
                                          spec={}, state={}, status=status)
                for env, status in ((staging, "succeeded"), (production, "progressing"),
                                    (production, "rolled_back"))]
    outside = services.create_model(users["outsider"], other_project, name="secret-model",
                                    task="classification")
    outside_version = services.register_version(
        users["outsider"], outside, io.BytesIO(random_classifier_bytes(3)), metadata())
    Deployment.objects.create(environment=elsewhere, model=outside, candidate=outside_version,
                              endpoint="secret", strategy="canary", spec={}, state={},
                              status="succeeded")
    return {"dataset": dataset, "first": first, "second": second, "rollouts": rollouts,
            "production": production}


def test_compare_marks_the_best_metric_and_the_schema_changes(browser_for, world, users, clf):
    holdout = services.upload_dataset(users["approver"], clf.project, name="holdout",
                                      file=io.BytesIO(CSV + b"5,6,1\n"), filename="h.csv",
                                      target="target", purpose="evaluation", model=clf)
    for version, auc in ((world["first"], 0.9), (world["second"], 0.8)):
        Evaluation.objects.update_or_create(version=version, dataset=holdout, defaults={
            "status": "ready", "metrics": {"roc_auc": auc}})
    page = browser_for("viewer").get("/p/clinical-ml/m/tumor-classifier/compare/?v=2&v=1")
    assert page.status_code == 200
    rows = {row.name: row for row in page.context["metric_rows"] if row.source == "declared"}
    assert rows["roc_auc"].direction == "higher" and rows["roc_auc"].best == {1}
    assert rows["log_loss"].direction == "lower" and rows["log_loss"].best == {0}
    assert rows["lift"].direction == "" and rows["lift"].best == set()  # direction unknown
    measured = [row for row in page.context["metric_rows"] if row.source == "holdout"]
    assert [(row.name, row.values, row.best) for row in measured] == [
        ("roc_auc", [0.9, 0.8], {0})]  # measured on the held-out rows: v1 is better there
    params = {row["name"]: row for row in page.context["param_rows"]}
    assert params["C"]["differs"] and not params["penalty"]["differs"]
    changes = {row["name"]: row["change"] for row in page.context["schema_rows"]}
    assert changes == {FEATURES[0]: "removed", FEATURES[1]: "changed type",
                       **{name: "" for name in FEATURES[2:]}, "age": "added"}
    html = page.content.decode()
    assert html.count('class="num best"') == 3 and "measured on holdout" in html and "↓ lower" in html and "↑ higher" in html
    assert "missing feature mean radius (position 1)" in html  # v2 read against v1
    assert "feedbeef" in html and world["dataset"].get_absolute_url() in html  # lineage
    assert 'href="/p/clinical-ml/m/tumor-classifier/v/1/"' in html  # v2's parent


def test_compare_needs_two_versions_and_names_those_it_cannot_show(browser_for, world):
    client = browser_for("viewer")
    one = client.get("/p/clinical-ml/m/tumor-classifier/compare/?v=1").content.decode()
    assert 'id="compare-empty"' in one
    some = client.get("/p/clinical-ml/m/tumor-classifier/compare/?v=1,2&v=9&v=x&v="
                      + "9" * 30).content.decode()
    assert "Not shown: v9" in some and 'id="compare-metrics"' in some
    model_page = client.get("/p/clinical-ml/m/tumor-classifier/").content.decode()
    assert 'id="compare-form"' in model_page and 'name="v" value="2" form="compare-form"' \
        in model_page


def test_rollouts_page_lists_every_environment_newest_first_with_filters(browser_for, world):
    client = browser_for("viewer")
    page = client.get("/rollouts/")
    listed = list(page.context["page"].object_list)
    assert [d.pk for d in listed] == [d.pk for d in reversed(world["rollouts"])]
    assert b"secret-model" not in page.content  # another project's
    production = world["production"].pk
    assert page.context["page"].paginator.count == 3
    for query, count in ((f"environment={production}", 2), ("status=succeeded", 1),
                         ("model=tumor", 3), ("model=nothing", 0), ("project=clinical-ml", 3),
                         (f"environment={production}&status=rolled_back", 1),
                         ("environment=" + "9" * 30, 3), ("status=nonsense", 3)):
        found = client.get(f"/rollouts/?{query}")
        assert found.context["page"].paginator.count == count, query
    assert b"No rollouts match these filters" in client.get("/rollouts/?model=zz").content
    environment = client.get("/p/clinical-ml/environments/production/").content.decode()
    assert f"/rollouts/?environment={production}" in environment


def test_audit_log_is_the_owners_and_filters(browser_for, world):
    client = browser_for("owner")
    page = client.get("/p/clinical-ml/audit/")
    assert page.status_code == 200
    actions = {event.action for event in page.context["page"].object_list}
    assert {"project.create", "model.create", "version.create", "dataset.create"} <= actions
    assert "carlos" in page.context["actors"] and "model.create" in page.context["actions"]
    by_carlos = client.get("/p/clinical-ml/audit/?actor=carlos").context["page"].object_list
    assert by_carlos and {e.actor_name for e in by_carlos} == {"carlos"}
    created = client.get("/p/clinical-ml/audit/?action=model.create").context["page"]
    assert [e.object_repr for e in created.object_list] == ["clinical-ml/tumor-classifier"]
    on_dataset = client.get("/p/clinical-ml/audit/?object=dataset").context["page"]
    assert {e.object_type for e in on_dataset.object_list} == {"registry.dataset"}
    html = client.get("/p/clinical-ml/audit/?object=dataset").content.decode()
    assert world["dataset"].get_absolute_url() in html and "<time datetime=" in html
    assert b"secret-model" not in page.content
    html = page.content.decode()  # the objects' pages, where they have one
    assert 'href="/p/clinical-ml/m/tumor-classifier/">clinical-ml/tumor-classifier</a>' in html
    assert 'href="/p/clinical-ml/m/tumor-classifier/v/2/">tumor-classifier v2</a>' in html
    assert b"/p/clinical-ml/audit/" in client.get("/p/clinical-ml/").content
    assert b"/p/clinical-ml/audit/" not in browser_for("approver").get("/p/clinical-ml/").content
    assert browser_for("staff").get("/p/clinical-ml/audit/").status_code == 200


@pytest.mark.parametrize("who", ["viewer", "approver"])
def test_below_owner_the_audit_log_is_refused(browser_for, world, who):
    answer = browser_for(who).get("/p/clinical-ml/audit/")
    assert answer.status_code == 403 and b"you need the owner role" in answer.content


def test_outsiders_find_none_of_these_pages(browser_for, world):
    client = browser_for("outsider")
    for url in ("/p/clinical-ml/audit/", "/p/clinical-ml/m/tumor-classifier/compare/?v=1&v=2",
                f"/datasets/{world['dataset'].pk}/download/"):
        assert client.get(url).status_code == 404, url
    assert b"tumor-classifier" not in client.get("/rollouts/").content


def test_a_member_downloads_the_dataset_file_as_uploaded(browser_for, world):
    dataset = world["dataset"]
    client = browser_for("viewer")
    assert f"/datasets/{dataset.pk}/download/" in client.get(
        dataset.get_absolute_url()).content.decode()
    answer = client.get(f"/datasets/{dataset.pk}/download/")
    assert answer.status_code == 200 and b"".join(answer.streaming_content) == CSV
    assert answer["Content-Type"] == "text/csv"
    assert answer["Content-Disposition"] == 'attachment; filename="train.csv"'
    assert answer["X-Checksum-SHA256"] == dataset.sha256
    get_store().delete(dataset.uri)  # gone from the store: said, not a server error
    missing = client.get(f"/datasets/{dataset.pk}/download/")
    assert missing.status_code == 404 and b"no longer in the store" in missing.content


def test_compare_shows_parameters_as_recorded(browser_for, users, clf):
    """Parameters are shown as recorded: 0.1001 and 0.1002 differ on the page as in the row's
    mark, and a string stays a string ("007", not 7)."""
    versions = [services.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(seed)),
        metadata(params={"learning_rate": rate, "zip": "007"}))
        for seed, rate in ((1, 0.1001), (2, 0.1002))]
    body = browser_for("viewer").get(
        f"{clf.get_absolute_url()}compare/?v={versions[0].number}&v={versions[1].number}"
    ).content.decode()
    assert "0.1001" in body and "0.1002" in body
    assert "007" in body
