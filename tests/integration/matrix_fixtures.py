"""The permission matrix's world: one project with a model, versions, a dataset, an
environment whose backend is away, open requests, A/B rollouts with their test, an alert, a
webhook, invitations; and a token of someone else.

A plugin of tests/conftest.py:

- ``matrix_world``: a fresh world for one test (the matrix's own tests change it, and run
  in transactions that commit);
- ``shared_matrix_world``: the world built once for a module whose tests each run in
  pytest-django's rolled-back transaction (``django_db`` without ``transaction=True``). It
  is built inside a transaction left open for the whole module, so each test's transaction
  is a savepoint in it: whatever a test writes is rolled back before the next, which sees
  the world exactly as built. Files live in the world's own folder and are put back as they
  were before each test (``restore_world_files``); the cache gets a key prefix of its own
  per test (``fresh_cache``), as rate-limit counts were per test when each test had new
  user ids. The world is rolled back after the module.

A module using ``shared_matrix_world`` must not hold ``transaction=True`` tests (they need
the connection out of any transaction).
"""

from __future__ import annotations

import io
import shutil
import time
import uuid

import pytest
from django.test.utils import override_settings

from tests.portal_fixtures import (
    make_clf,
    make_other_project,
    make_project,
    make_user,
    make_users,
    metadata,
    random_classifier_bytes,
    settings_for,
    use_folder,
)

WORLD_SETTINGS = {
    "MODELGATE_WEBHOOK_ALLOW_PRIVATE": True,
    "MODELGATE_MLFLOW_ALLOW_PRIVATE": True,  # its MLflow (port 9) is away: imports fail
    "MODELGATE_TARGETS": {
        "local": {"backend": "local", "ports": "9300-9399"},
        # The platform is away: commands are recorded and the change is retried.
        "cluster": {"backend": "kubernetes", "image": "server:1", "host": "http://127.0.0.1:9",
                    "retries": 0, "timeout": 1, "mode": "deployments"}},
}


def build_world(users, project, other_project, clf, cancer_frame) -> dict:
    """The world's rows (and stored files), with ``WORLD_SETTINGS`` in force."""
    from django.utils import timezone

    from ops import rollout
    from ops.serving.ids import new_prediction_ids
    from portal.accounts import services as accounts
    from portal.accounts.models import Invitation, Membership
    from portal.accounts.services import create_token
    from portal.audit.models import AuditEvent
    from portal.experiments import services as experiments
    from portal.experiments.signing import signer_for
    from portal.monitoring.models import Alert
    from portal.notifications.models import Webhook
    from portal.registry import services as registry
    from portal.registry.models import InstanceExplanation
    from portal.releases import deployments
    from portal.releases import services as releases
    from portal.releases.models import Deployment

    make_user("extra")  # whom owners invite
    owner = users["owner"]
    dataset = registry.upload_dataset(users["contributor"], project, name="train",
                                      file=io.BytesIO(cancer_frame.to_csv().encode()),
                                      filename="train.csv", target="target")
    versions = [registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(seed)),
        metadata()).pk) for seed in (1, 2, 3, 4)]
    v1, v2, spare, spare2 = versions
    registry.set_alias(users["approver"], clf, "challenger", v2)
    # The requests below are compared with the champion (nothing serves production): set
    # first, so moving it to the same version later keeps their comparison current.
    registry.set_alias(users["approver"], clf, "champion", v1)
    environment = releases.create_environment(owner, project, name="production",
                                              backend="kubernetes", required_approvals=2)
    request, request_b, request_c = (
        releases.request_approval(users["contributor"], version, environment,
                                  strategy="canary") for version in (v2, spare, v1))
    spec = deployments._spec("ab", {"split": 0.5, "duration_seconds": 3600}, clf.name, v2, v1)

    def ab_rollout(status):
        state = rollout.RolloutState(status=rollout.Status(status), generation=2,
                                     base_generation=1, step_started_at=time.time())
        return Deployment.objects.create(
            environment=environment, model=clf, candidate=v2, stable=v1, endpoint=clf.name,
            strategy="ab", spec=spec.to_dict(), state=state.to_dict(), status=status)

    deployment = ab_rollout("progressing")  # its A/B test: read, decided, fed back
    experiment = experiments.create_for(deployment, generation=2)
    rollouts = {"pause": ab_rollout("progressing"), "resume": ab_rollout("paused"),
                "promote": ab_rollout("progressing"), "rollback": ab_rollout("progressing"),
                "keep": ab_rollout("awaiting_decision")}
    prediction_id = new_prediction_ids("candidate", 2, 1,
                                       signer=signer_for(environment.pk, clf.pk))[0]
    now = timezone.now()
    alert = Alert.objects.create(
        fingerprint="f" * 64, name="ModelgateErrorRateHigh", severity="warning",
        state="firing", source="prometheus", project=project, model=clf, environment=environment,
        endpoint=clf.name, starts_at=now, last_seen_at=now)
    webhook = Webhook.objects.create(project=project, name="ops", secret="s" * 32,
                                     url="http://127.0.0.1:9/hook",
                                     events=["release.approved"])
    instance = InstanceExplanation.objects.create(version=v1, input_hash="0" * 64,
                                                  rows=[[1.0] * 5], status="pending")
    token, _ = create_token(users["staff"], "someone else's")
    # Open invitations: of "extra" to the project (read and revoked by its owner), of the
    # outsider to it (declined) and to another project of the owner's (accepted).
    side = registry.create_project(owner, name="Side", slug="side")
    accounts.invite(owner, project, "extra", "viewer")
    accounts.invite(owner, project, users["outsider"].username, "contributor")
    owner.__dict__.pop("_modelgate_roles", None)  # the roles cached before "side" existed
    accounts.invite(owner, side, users["outsider"].username, "viewer")
    invitations = Invitation.objects.filter(status="open")
    # Archived and restored by the matrix (decision 58); nothing else reads them.
    retired_model = registry.create_model(users["contributor"], project, name="retired",
                                          task="classification")
    retired_dataset = registry.upload_dataset(users["contributor"], project, name="old",
                                              file=io.BytesIO(b"a,b\n1,2\n"),
                                              filename="old.csv")
    retired_env = releases.create_environment(owner, project, name="retired", backend="local")
    # Multi-model endpoints (decision 68): one to add a model to, one to remove it from.
    from portal.releases import multimodel

    multimodel.create_endpoint(owner, environment, name="shops", memory_budget_mb=64)
    fleet = multimodel.create_endpoint(owner, environment, name="fleet", memory_budget_mb=64)
    fleet_member = multimodel.add_member(owner, fleet, clf, alias="champion")
    # Retraining (decision 67): a webhook rule of the model, and a trigger it fired.
    from portal.retraining import services as retraining
    from portal.retraining.models import RetrainingTrigger

    retraining_rule, _ = retraining.create_rule(
        users["contributor"], clf, name="drift", condition="drift", target="webhook",
        params={"url": "http://127.0.0.1:9/hook"})
    retraining_trigger = RetrainingTrigger.objects.create(
        rule=retraining_rule, model=clf, rule_name="drift", condition="drift",
        target="webhook", kind="webhook", reason="critical drift for 40 min", state="sent")
    # MLflow (decision 66): an import that failed, and a follow (rows only: no MLflow here).
    from portal.registry.models import MlflowFollow, MlflowImport

    mlflow_import = MlflowImport.objects.create(
        model=clf, tracking_uri="http://127.0.0.1:9", source="models:/tumor/1",
        status="failed", reason="mlflow_unavailable: away", requested_by=users["contributor"])
    mlflow_follow = MlflowFollow.objects.create(
        model=clf, tracking_uri="http://127.0.0.1:9", registered_name="tumor",
        alias="production", secret="matrix-secret", created_by=users["contributor"])
    return {"project": project, "model": clf, "version": v1, "spare": spare, "spare2": spare2,
            "mlflow_import": mlflow_import, "mlflow_follow": mlflow_follow,
            "env": environment, "dataset": dataset, "request": request,
            "request_b": request_b, "request_c": request_c, "rollouts": rollouts,
            "deployment": deployment, "experiment": experiment, "alert": alert,
            "webhook": webhook, "token": token, "prediction_id": prediction_id,
            "instance_explanation": instance, "retired_model": retired_model,
            "retired_dataset": retired_dataset, "retired_env": retired_env,
            "multimodel": fleet, "multimodel_member": fleet_member,
            "retraining_rule": retraining_rule, "retraining_trigger": retraining_trigger,
            "membership": Membership.objects.get(project=project, user=users["viewer"]),
            "invitation": invitations.get(project=project, username="extra"),
            "invitation_to_decline": invitations.get(project=project, user=users["outsider"]),
            "invitation_to_accept": invitations.get(project=side),
            "audit_event": AuditEvent.objects.filter(project_id=project.pk).first()}


@pytest.fixture
def matrix_world(users, project, other_project, clf, cancer_frame, settings):
    """A fresh world for one test (the module doc)."""
    for name, value in WORLD_SETTINGS.items():
        setattr(settings, name, value)
    return build_world(users, project, other_project, clf, cancer_frame)


@pytest.fixture(scope="module")
def shared_matrix_world(django_db_setup, django_db_blocker, tmp_path_factory, cancer_frame):
    """The world built once for the module, rolled back after it (the module doc). Its
    ``users`` are the ``users`` fixture's; ``folder`` is where its files are."""
    from django.db import transaction

    from portal.registry.storage import get_store

    folder = tmp_path_factory.mktemp("matrix-world")
    with override_settings(**{**settings_for(folder), **WORLD_SETTINGS}):
        get_store.cache_clear()
        with django_db_blocker.unblock():
            outer = transaction.atomic()
            outer.__enter__()
        try:
            with django_db_blocker.unblock():
                users = make_users()
                project = make_project(users)
                world = build_world(users, project, make_other_project(users),
                                    make_clf(project, users), cancer_frame)
            # What each test gets back: the files as the world left them.
            shutil.copytree(folder / "artifacts", folder / "artifacts-as-built", symlinks=True)
            yield {**world, "users": users, "folder": folder}
        finally:
            with django_db_blocker.unblock():
                transaction.set_rollback(True)
                outer.__exit__(None, None, None)
            get_store.cache_clear()


@pytest.fixture
def restore_world_files(shared_matrix_world, settings):
    """The world's folder as the world left it, and the settings pointing there (in place
    of ``artifact_root``'s folder per test: stored files are named by their full path)."""
    folder = shared_matrix_world["folder"]
    shutil.rmtree(folder / "artifacts", ignore_errors=True)
    shutil.copytree(folder / "artifacts-as-built", folder / "artifacts", symlinks=True)
    for name, value in WORLD_SETTINGS.items():
        setattr(settings, name, value)
    yield from use_folder(settings, folder)


@pytest.fixture
def fresh_cache(settings):
    """The cache (rate-limit counts, shared readouts) under a key prefix of this test's own."""
    default = settings.CACHES["default"]
    settings.CACHES = {**settings.CACHES, "default": {
        **default, "KEY_PREFIX": f"{default.get('KEY_PREFIX', '')}-{uuid.uuid4().hex[:12]}"}}
