"""Approvers see measured evidence: every version is measured by a worker on the project's
evaluation datasets (held out, with the label), the gates judge the measured figures, and
the release diff compares the two versions on those rows with the true answers.

The incident: gates judged the metrics the uploader typed in (pasting any number passed),
and "where they disagree most" showed both models' outputs on their training data, without
the true label."""

import io

import pytest
from django.test import Client

from ops.artifacts import dump_skops
from portal.audit.models import AuditEvent
from portal.errors import ValidationFailed
from portal.registry import services as registry
from portal.registry.models import Evaluation
from portal.releases import services as releases
from portal.releases.models import ApprovalRequest
from tests.integration.test_release_interfaces import serves
from tests.portal_fixtures import FEATURES, metadata

pytestmark = pytest.mark.django_db
LYING = {"roc_auc": 0.99, "accuracy": 0.97}  # what the uploader of the bad model typed in


@pytest.fixture(autouse=True)
def rollouts_held(task_queue):
    return task_queue.hold("workers.releases.start_deployment")


@pytest.fixture(autouse=True)
def committed(django_capture_on_commit_callbacks):
    """Work queued "after commit" (measurements, re-judging) runs as a worker would."""
    global _capture
    _capture = django_capture_on_commit_callbacks
    yield
    _capture = None


_capture = None


def run_queued(work):
    with _capture(execute=True):
        result = work()
    return result


@pytest.fixture(scope="module")
def halves(cancer_frame):
    shuffled = cancer_frame.sample(frac=1.0, random_state=0)
    return shuffled.iloc[:350], shuffled.iloc[350:]


def fitted(train, *, inverted: bool = False, seed: int = 0) -> bytes:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = train["target"].to_numpy()
    if inverted:  # trained on wrong labels: clearly worse, whatever its uploader says
        labels = 1 - labels
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=1.0 + seed))
    return dump_skops(model.fit(train[FEATURES], labels))


def version(users, model, artifact: bytes, **meta):
    created = registry.register_version(users["contributor"], model, io.BytesIO(artifact),
                                        metadata(**meta))
    ready = run_queued(lambda: registry.validate_version(created.pk))
    assert ready.status == "ready", ready.status_reason
    return ready


def holdout(users, project, frame, name="holdout", model=None, **extra):
    """An evaluation dataset of the classifier (approvers choose the evidence)."""
    from portal.registry.models import RegisteredModel

    model = model or RegisteredModel.objects.get(project=project, name="tumor-classifier")
    dataset = registry.upload_dataset(
        users["approver"], project, name=name, filename=f"{name}.csv",
        file=io.BytesIO(frame.to_csv(index=False).encode()),
        **{"target": "target", "purpose": "evaluation", "model": model, **extra})
    return run_queued(lambda: registry.profile_dataset(dataset.pk))


@pytest.fixture
def world(users, project, clf, halves):
    train, held_out = halves
    good = version(users, clf, fitted(train), metrics={"roc_auc": 0.95})
    bad = version(users, clf, fitted(train, inverted=True), metrics=LYING)
    production = releases.create_environment(
        users["owner"], project, name="production",
        gates=[{"metric": "roc_auc", "min": 0.9}, {"metric": "roc_auc", "max_drop": 0.02}])
    return {"good": good, "bad": bad, "env": production, "held_out": held_out}


def test_every_version_is_measured_on_a_new_evaluation_dataset(users, project, world):
    dataset = holdout(users, project, world["held_out"])
    assert dataset.profile_status == "ready"
    found = {e.version_id: e for e in Evaluation.objects.filter(dataset=dataset)}
    assert set(found) == {world["good"].pk, world["bad"].pk}
    good, bad = found[world["good"].pk], found[world["bad"].pk]
    assert good.status == bad.status == "ready" and good.rows == len(world["held_out"])
    assert good.metrics["roc_auc"] > 0.95 and bad.metrics["roc_auc"] < 0.8
    assert bad.metrics["roc_auc"] < LYING["roc_auc"] - 0.15  # what was typed in is not used


def test_a_version_registered_later_is_measured_when_it_becomes_ready(users, project, clf,
                                                                      world, halves):
    dataset = holdout(users, project, world["held_out"])
    later = version(users, clf, fitted(halves[0], seed=3))
    assert Evaluation.objects.get(version=later, dataset=dataset).status == "ready"


def test_gates_judge_the_measured_figures_not_the_declared_ones(users, project, world):
    holdout(users, project, world["held_out"])
    request = releases.request_approval(users["contributor"], world["bad"], world["env"],
                                        strategy="direct")
    assert not request.gates_passed
    first = request.gate_results[0]
    assert first["source"] == "measured" and first["dataset"] == "holdout"
    assert first["value"] < 0.8 and "< 0.9" in first["detail"]


def test_a_good_version_passes_on_its_measured_figures(users, project, world):
    holdout(users, project, world["held_out"])
    serves(world["env"], world["good"])
    request = releases.request_approval(users["contributor"], world["good"], world["env"],
                                        strategy="direct")
    assert request.gates_passed and request.gate_results[0]["source"] == "measured"


def test_gates_wait_for_a_measurement_under_way_and_are_judged_when_it_lands(
        users, project, world, task_queue):
    task_queue.hold("workers.registry.evaluate_version")
    holdout(users, project, world["held_out"])
    request = releases.request_approval(users["contributor"], world["good"], world["env"],
                                        strategy="direct")
    assert not request.gates_passed
    assert "being measured on holdout" in request.gate_results[0]["detail"]

    evaluation = Evaluation.objects.get(version=world["good"])
    run_queued(lambda: registry.evaluate(evaluation.pk))  # the worker's turn (it queues the re-judging)
    request = ApprovalRequest.objects.get(pk=request.pk)
    assert request.gates_passed and request.gate_results[0]["source"] == "measured"
    assert AuditEvent.objects.filter(action="approval_request.judge_measured",
                                     object_id=str(request.pk)).exists()


def test_a_model_that_breaks_on_the_evaluation_rows_fails_its_gates(users, project, world):
    held_out = world["held_out"].copy()
    held_out["target"] = 7  # a label the model never learned
    holdout(users, project, held_out, name="relabelled")
    request = releases.request_approval(users["contributor"], world["good"], world["env"],
                                        strategy="direct")
    assert not request.gates_passed
    assert "could not be measured on relabelled" in request.gate_results[0]["detail"]
    assert "classes the model does not know: 7" in request.gate_results[0]["detail"]


def test_an_approval_after_a_measurement_changed_the_gates_is_refused(users, project, world,
                                                                       api, task_queue):
    task_queue.hold("workers.releases.judge_measured")  # lost, or not run yet
    request = releases.request_approval(users["contributor"], world["bad"], world["env"],
                                        strategy="direct")
    assert request.gates_passed  # judged on what its uploader typed in: 0.99
    assert request.gate_results[0]["source"] == "declared"
    holdout(users, project, world["held_out"])  # then measured: its figures are not that

    url = f"/api/v1/approval-requests/{request.pk}/approve/"
    refused = api("approver").post(url, {"comment": "ship it"}, format="json")
    assert refused.status_code == 409, refused.content
    assert refused.json()["code"] == "stale_gates"
    assert "they fail" in refused.json()["detail"]
    request = ApprovalRequest.objects.get(pk=request.pk)
    assert request.status == "open" and not request.gates_passed
    assert api("approver").post(url, {"comment": "ship it"},
                                format="json").json()["code"] == "gates_failed"


def test_an_evaluation_dataset_needs_its_label(users, project, world):
    with pytest.raises(ValidationFailed, match="needs its label column"):
        holdout(users, project, world["held_out"], target="")
    missing = holdout(users, project, world["held_out"].drop(columns=["target"]),
                      name="unlabelled")
    assert missing.profile_status == "failed"
    assert "the target column 'target' is not in the file" in missing.profile_reason
    assert not Evaluation.objects.exists()


def test_the_release_diff_compares_on_held_out_rows_with_the_true_answer(
        users, project, world, settings):
    settings.MODELGATE_EXPLAIN_VERSIONS = True
    holdout(users, project, world["held_out"])
    serves(world["env"], world["good"])
    request = releases.request_approval(users["contributor"], world["bad"], world["env"],
                                        strategy="direct")
    diff = releases.compute_release_diff(request.pk).release_diff
    assert diff["status"] == "ready", diff
    assert diff["data"] == "evaluation" and diff["dataset"] == "holdout"
    assert diff["rows"] == len(world["held_out"])
    rows = diff["top_disagreements"]
    assert rows and all(r["label"] in (0, 1) for r in rows)
    assert all({"candidate_label", "champion_label"} <= set(r) for r in rows)
    metrics = {m["metric"]: m for m in diff["metrics"]}
    assert metrics["roc_auc"]["candidate"] < 0.8  # measured, not the 0.99 typed in

    page = Client()
    page.force_login(users["approver"])
    html = page.get(request.get_absolute_url()).content.decode()
    assert "held-out rows of holdout (evaluation data, with the true labels)" in html
    assert "True answer" in html and 'class="source source-measured"' in html


def test_the_api_lists_a_versions_measurements_and_takes_the_purpose(users, project, world,
                                                                      api):
    body = {"project": project.pk, "name": "api-holdout", "target": "target",
            "purpose": "evaluation", "model": world["bad"].model_id}
    refused = api("contributor").post("/api/v1/datasets/", {
        **body, "file": io.BytesIO(world["held_out"].to_csv(index=False).encode())},
        format="multipart")
    assert refused.status_code == 403, refused.content  # the evidence is the approvers' choice
    client = api("approver")
    created = client.post("/api/v1/datasets/", {
        **body,
        "file": io.BytesIO(world["held_out"].to_csv(index=False).encode())},
        format="multipart")
    assert created.status_code == 201, created.content
    assert created.json()["purpose"] == "evaluation"
    assert created.json()["model"] == world["bad"].model_id
    run_queued(lambda: registry.profile_dataset(created.json()["id"]))
    listed = client.get(f"/api/v1/versions/{world['bad'].pk}/evaluations/").json()
    assert [e["dataset"]["name"] for e in listed] == ["api-holdout"]
    assert listed[0]["status"] == "ready" and listed[0]["metrics"]["roc_auc"] < 0.8

    page = Client()
    page.force_login(users["viewer"])
    html = page.get(world["bad"].get_absolute_url()).content.decode()
    assert "On api-holdout" in html and "declared" in html and "measured" in html


# -- what a review attacked ---------------------------------------------------------------

def test_a_metric_the_labels_cannot_give_fails_rather_than_passing_on_the_declared_one(
        users, project, world):
    """Only one class in the held-out labels: no ROC AUC can be measured, and the 0.99 the
    uploader typed in is not judged in its place."""
    one_class = world["held_out"][world["held_out"]["target"] == 1]
    holdout(users, project, one_class, name="positives")
    request = releases.request_approval(users["contributor"], world["bad"], world["env"],
                                        strategy="direct")
    assert not request.gates_passed
    assert "roc_auc of the candidate could not be measured" in request.gate_results[0]["detail"]


def test_a_version_the_dataset_cannot_measure_fails_its_gates_with_the_reason(
        users, project, clf, world, halves):
    holdout(users, project, world["held_out"].drop(columns=["mean area"]), name="narrow")
    request = releases.request_approval(users["contributor"], world["bad"], world["env"],
                                        strategy="direct")
    assert not request.gates_passed
    assert "narrow does not hold its inputs (mean area)" in request.gate_results[0]["detail"]


def test_an_evaluation_dataset_measures_only_its_own_models_versions(users, project, world):
    from portal.registry.services import create_model

    other = create_model(users["contributor"], project, name="tumor-regressor",
                         task="regression")
    from sklearn.linear_model import LinearRegression
    train = world["held_out"]
    regressor = version(users, other, dump_skops(LinearRegression().fit(train[FEATURES],
                                                                       train["target"])))
    holdout(users, project, world["held_out"])  # the classifier's
    assert not Evaluation.objects.filter(version=regressor).exists()
    with pytest.raises(ValidationFailed, match="names the model it measures"):
        registry.upload_dataset(users["approver"], project, name="whose", filename="w.csv",
                                file=io.BytesIO(world["held_out"].to_csv().encode()),
                                target="target", purpose="evaluation")


def test_the_version_compared_with_must_be_measured_too(users, project, world, task_queue):
    """A champion declared low must not let a worse candidate through max_drop: the
    comparison waits for its measurement, and fails if it cannot be made."""
    serves(world["env"], world["good"])
    task_queue.hold("workers.registry.evaluate_version")
    holdout(users, project, world["held_out"])
    mine = Evaluation.objects.get(version=world["bad"])
    run_queued(lambda: registry.evaluate(mine.pk))  # the candidate measured, not v1
    request = releases.request_approval(users["contributor"], world["bad"], world["env"],
                                        strategy="direct")
    drop = request.gate_results[1]
    assert not drop["passed"] and f"v{world['good'].number} is being measured" in drop["detail"]


def test_a_model_that_raises_anything_is_recorded_as_failed_not_left_pending(
        users, project, world, monkeypatch):
    from portal.registry.services import evaluations

    class Exploding:
        classes_ = [0, 1]

        def predict(self, X):
            raise RuntimeError("the GPU fell off")

    monkeypatch.setattr("portal.registry.services.explanations.load_version_model",
                        lambda v: Exploding())
    dataset = holdout(users, project, world["held_out"])
    found = Evaluation.objects.get(version=world["good"], dataset=dataset)
    assert found.status == "failed" and "RuntimeError: the GPU fell off" in found.reason
    assert evaluations.evaluate(found.pk).status == "failed"  # and never measured again


def test_two_workers_never_measure_the_same_pair_at_once(users, project, world, task_queue):
    from django.utils import timezone

    task_queue.hold("workers.registry.evaluate_version")
    dataset = holdout(users, project, world["held_out"])
    found = Evaluation.objects.get(version=world["good"], dataset=dataset)
    Evaluation.objects.filter(pk=found.pk).update(claimed_at=timezone.now())  # one is on it
    assert registry.evaluate(found.pk).status == "pending"  # the second leaves it alone
    sent = len(task_queue.args_of("workers.registry.evaluate_version"))
    registry.requeue_stuck_work(older_than_seconds=0)  # a fresh claim is not sent again
    assert (found.pk,) not in task_queue.args_of("workers.registry.evaluate_version")[sent:]


def test_a_pair_never_queued_is_created_by_the_periodic_requeue(users, project, world,
                                                                task_queue):
    task_queue.hold("workers.registry.evaluate_version")
    dataset = holdout(users, project, world["held_out"])
    Evaluation.objects.filter(version=world["good"]).delete()  # the race: never created
    registry.requeue_stuck_work(older_than_seconds=0)
    assert Evaluation.objects.filter(version=world["good"], dataset=dataset).exists()


def test_an_approval_given_on_older_evidence_no_longer_counts(users, project, world,
                                                               task_queue):
    """Two approvals needed: the first approver saw declared figures; a measurement then
    changed the gates, so only approvals given after it count, and the first approver may
    approve again."""
    from portal.accounts.models import Membership
    from portal.errors import Conflict
    from tests.portal_fixtures import make_user

    second = make_user("bob")
    Membership.objects.create(project=project, user=second, role="approver")
    world["env"].required_approvals = 2
    world["env"].gates = [{"metric": "roc_auc", "min": 0.5}]
    world["env"].save(update_fields=["required_approvals", "gates"])
    task_queue.hold("workers.releases.judge_measured")  # not re-judged before the approval
    request = releases.request_approval(users["contributor"], world["good"], world["env"],
                                        strategy="direct")
    releases.review(users["approver"], request, "approve", "declared 0.95 looks fine")
    holdout(users, project, world["held_out"])  # measured since: the evidence changed

    def fresh():
        return ApprovalRequest.objects.get(pk=request.pk)

    with pytest.raises(Conflict, match="look at them again"):
        releases.review(second, fresh(), "approve", "ok")
    releases.review(second, fresh(), "approve", "measured figures hold")
    assert fresh().status == "open"  # alice's approval was of the declared figures
    releases.review(users["approver"], fresh(), "approve", "measured 0.98 holds")
    assert fresh().status == "approved"


def test_only_an_approver_may_archive_the_evidence(users, project, world):
    """Archiving the model's evaluation dataset would put the gates back on declared
    figures: it is the approvers' choice, like uploading it."""
    from portal.errors import NotAllowed
    from portal.registry.services import archive

    dataset = holdout(users, project, world["held_out"])
    with pytest.raises(NotAllowed, match="evaluation datasets"):
        archive.archive_dataset(users["contributor"], dataset)
    archive.archive_dataset(users["approver"], dataset)
