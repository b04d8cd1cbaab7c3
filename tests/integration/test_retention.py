"""Retention (portal/retention.py): drift windows and ended A/B tests' outcome rows are
deleted past their age; what readouts and pages read stays; the purge is audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal import retention
from portal.audit.models import AuditEvent
from portal.audit.services import verify_chain
from portal.experiments import services as experiments
from portal.experiments.models import Outcome, VariantTotal
from portal.monitoring.models import DriftWindow
from portal.releases.models import Deployment
from tests.integration.test_feedback import ids, make_experiment

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_outcomes_of_a_test_ended_long_ago_go_and_its_readout_stays(users, project, clf,
                                                                   settings):
    settings.MODELGATE_OUTCOME_RETENTION_DAYS = 30
    experiment = make_experiment(users, project, clf)
    items = [{"prediction_id": p, "outcome": 1} for p in ids(experiment, "stable", 40)] + \
            [{"prediction_id": p, "outcome": 0} for p in ids(experiment, "candidate", 40)]
    assert experiments.record_feedback(users["contributor"], items).accepted == 80
    before = experiments.look(experiment).to_dict()

    assert retention.purge() == {"drift_windows": 0, "outcomes": 0}  # the test still runs
    assert Outcome.objects.count() == 80 and not AuditEvent.objects.filter(
        action="retention.purge").exists()

    Deployment.objects.filter(pk=experiment.deployment_id).update(
        status="succeeded", finished_at=timezone.now() - timedelta(days=10))
    assert retention.purge()["outcomes"] == 0  # ended, but not 30 days ago
    assert retention.purge(now=timezone.now() + timedelta(days=21))["outcomes"] == 80
    assert Outcome.objects.count() == 0
    assert sum(t.n for t in VariantTotal.objects.all()) == 80
    after = experiments.look(experiment).to_dict()
    assert (after["control"], after["treatment"]) == (before["control"], before["treatment"])
    event = AuditEvent.objects.get(action="retention.purge")
    assert event.changes["deleted"] == {"drift_windows": 0, "outcomes": 80}
    assert event.actor is None and event.object_type == "retention"
    assert verify_chain()[1] == []


def test_old_drift_windows_go_recent_ones_stay_and_zero_days_keeps_all(users, project, clf,
                                                                       settings):
    from portal.releases import services as releases

    environment = releases.create_environment(users["owner"], project, name="staging")
    now = timezone.now()
    for variant, age in (("stable", 100), ("candidate", 2)):
        DriftWindow.objects.create(environment=environment, model=clf, endpoint=clf.name,
                                   variant=variant, window_seconds=600, report={},
                                   computed_at=now - timedelta(days=age))
    settings.MODELGATE_DRIFT_RETENTION_DAYS = 0
    assert retention.purge()["drift_windows"] == 0
    settings.MODELGATE_DRIFT_RETENTION_DAYS = 90
    assert retention.purge()["drift_windows"] == 1
    assert list(DriftWindow.objects.values_list("variant", flat=True)) == ["candidate"]


def test_retention_is_on_beat_s_schedule(settings):
    from workers.monitoring import apply_retention

    assert settings.CELERY_BEAT_SCHEDULE["apply-retention"]["task"] == apply_retention.name
