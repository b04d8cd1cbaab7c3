"""The demo's data (``make demo`` seeds it): versions measured on held-out data, and the
requests waiting for an approver judged on those measured figures."""

import pytest

from portal import demo
from portal.registry.models import Dataset, Evaluation
from portal.releases.models import ApprovalRequest

pytestmark = pytest.mark.django_db


def test_the_demo_measures_every_version_on_held_out_data(task_queue, settings,
                                                          django_capture_on_commit_callbacks):
    settings.MODELGATE_EXPLAIN_VERSIONS = False  # SHAP is not what this test is about
    task_queue.hold("workers.releases.start_deployment", "workers.registry.evaluate_version")
    with django_capture_on_commit_callbacks(execute=True):
        assert demo.seed(log=lambda *_: None)
    holdouts = Dataset.objects.filter(purpose="evaluation")
    assert sorted(holdouts.values_list("name", flat=True)) == [
        "breast-cancer-holdout", "diabetes-holdout"]
    measured = Evaluation.objects.select_related("version")
    assert measured.count() == 6 and {e.status for e in measured} == {"ready"}
    for evaluation in measured:  # the figures the demo declared were computed on the same rows
        declared = evaluation.version.metrics
        for name in set(declared) & set(evaluation.metrics):
            assert evaluation.metrics[name] == pytest.approx(declared[name], abs=1e-3)
    waiting = ApprovalRequest.objects.filter(status="open")
    assert waiting.count() == 2
    for request in waiting:
        assert request.gate_results and {g["source"] for g in request.gate_results} == {
            "measured"}
    # The tumor classifier names its classes: every page says benign or malignant.
    from portal.registry.models import ModelVersion

    tumors = ModelVersion.objects.filter(model__name="tumor-classifier")
    assert tumors.count() == 3
    assert all(v.class_labels == {"0": "malignant", "1": "benign"} for v in tumors)
