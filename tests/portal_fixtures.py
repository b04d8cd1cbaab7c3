"""Shared fixtures for the Django tests (integration, security and e2e): users in every role,
a project, API clients, real trained artifacts. A plugin of tests/conftest.py; the suites'
conftests make ``artifact_root`` autouse, so the unit tests stay free of Django."""

from __future__ import annotations

import io
import json
import pickle

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from ops.artifacts import dump_skops
from portal.accounts.choices import Role
from portal.accounts.models import Membership
from portal.accounts.services import create_token
from portal.registry import services
from portal.registry.models import Project
from portal.registry.storage import get_store

FEATURES = ["mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness"]


def settings_for(folder) -> dict:
    """The settings every Django test runs with, storing under ``folder``."""
    return {
        "MODELGATE_ARTIFACT_ROOT": folder / "artifacts",
        "MODELGATE_SERVING_DIR": folder / "serving",
        "MODELGATE_ARTIFACT_BUCKET": "",
        "MODELGATE_WEBHOOK_ALLOW_PRIVATE": True,  # receivers in tests are on loopback
        "MODELGATE_EXPLAIN_VERSIONS": False,  # SHAP only where a test asks for it
        # Rollout tests check every second (5 s at least in production): they would take
        # minutes.
        "MODELGATE_ROLLOUT_MIN_CHECK_SECONDS": 1,
        # ...and bake steps of a few seconds (30 s at least in production), accepting that an
        # analysis then also reads the step before's traffic.
        "MODELGATE_ROLLOUT_MIN_BAKE_SECONDS": 1,
        # Hashing six users' passwords with PBKDF2 costs a second per test.
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
    }


def use_folder(settings, folder):
    """Point ``settings`` (pytest-django's fixture) at ``folder`` as ``artifact_root`` does;
    yields the artifact root, then stops the model servers started there."""
    for name, value in settings_for(folder).items():
        setattr(settings, name, value)
    get_store.cache_clear()
    yield settings.MODELGATE_ARTIFACT_ROOT
    get_store.cache_clear()
    stop_model_servers(settings.MODELGATE_SERVING_DIR)


@pytest.fixture
def artifact_root(settings, tmp_path):
    """Every test stores artifacts (and runs model servers) in its own directory, so
    leftovers are visible and no server outlives its test. Autouse in the e2e, integration
    and security suites (their conftest.py)."""
    yield from use_folder(settings, tmp_path)


def stop_model_servers(folder) -> None:
    import os
    import signal

    for pidfile in folder.glob("*/*/server.pid") if folder.exists() else []:
        try:
            os.killpg(int(pidfile.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError, PermissionError):
            pass


def stored_files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# Data and artifacts ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def cancer_frame():
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    return frame[FEATURES + ["target"]]


@pytest.fixture(scope="session")
def fitted_classifier(cancer_frame):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return model.fit(cancer_frame[FEATURES], cancer_frame["target"])


@pytest.fixture(scope="session")
def fitted_forest(cancer_frame):
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0)
    return model.fit(cancer_frame[FEATURES], cancer_frame["target"])


@pytest.fixture(scope="session")
def skops_bytes(fitted_classifier) -> bytes:
    return dump_skops(fitted_classifier)


@pytest.fixture(scope="session")
def forest_bytes(fitted_forest) -> bytes:
    return dump_skops(fitted_forest)


@pytest.fixture(scope="session")
def pickle_bytes(fitted_classifier) -> bytes:
    return pickle.dumps(fitted_classifier, protocol=4)


def random_classifier_bytes(seed: int) -> bytes:
    """A small classifier over FEATURES fitted on random data: a distinct artifact per seed."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(40, len(FEATURES))), columns=FEATURES)
    return dump_skops(LogisticRegression().fit(frame, [0, 1] * 20))


class Exploding:
    def __reduce__(self):
        return (int, ("not a number",))  # raises ValueError while unpickling


@pytest.fixture(scope="session")
def exploding_pickle() -> bytes:
    return pickle.dumps(Exploding(), protocol=4)


def schema(names=FEATURES):
    return [{"name": n, "type": "double"} for n in names]


def metadata(**overrides) -> dict:
    doc = {"input_schema": schema(), "metrics": {"roc_auc": 0.97, "accuracy": 0.93},
           "params": {"C": 1.0}, "tags": ["test"],
           "code": {"repository": "https://git.example.com/ml/cancer", "commit": "a1b2c3d4e5f6"}}
    doc.update(overrides)
    return doc


def local_target(settings, port: int) -> dict:
    """An operator's local target whose only port is ``port`` (so a test knows where its
    endpoint's model server listens); returns the variable a worker process needs too."""
    targets = {"local": {"backend": "local", "ports": f"{port}-{port}"}}
    settings.MODELGATE_TARGETS = targets
    return {"MODELGATE_TARGETS": json.dumps(targets)}


def allow_unsafe(settings, staff, project, trusted=()):
    """What an operator and staff do to accept pickles for a project: the instance allows
    them, staff allow the project, and the operator trusts any extra skops types."""
    settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS = True
    settings.MODELGATE_SKOPS_TRUSTED_TYPES = [*settings.MODELGATE_SKOPS_TRUSTED_TYPES, *trusted]
    services.update_project(staff, project, allow_unsafe_artifacts=True)


# Users, project, clients ----------------------------------------------------------------

def make_user(username, **extra):
    return get_user_model().objects.create_user(username=username, password="pw-" + username,
                                                **extra)


def make_users() -> dict:
    return {
        "owner": make_user("olivia"),
        "approver": make_user("alice"),
        "contributor": make_user("carlos"),
        "viewer": make_user("vera"),
        "outsider": make_user("oscar"),
        "staff": make_user("sam", is_staff=True),
    }


def make_project(users) -> Project:
    project = services.create_project(users["owner"], name="Clinical ML", slug="clinical-ml")
    for key, role in (("approver", Role.APPROVER), ("contributor", Role.CONTRIBUTOR),
                      ("viewer", Role.VIEWER)):
        Membership.objects.create(project=project, user=users[key], role=role)
    return project


def make_other_project(users) -> Project:
    return services.create_project(users["outsider"], name="Elsewhere", slug="elsewhere")


def make_clf(project, users):
    return services.create_model(users["contributor"], project, name="tumor-classifier",
                                 task="classification")


@pytest.fixture
def users(db):
    return make_users()


@pytest.fixture
def project(users) -> Project:
    return make_project(users)


@pytest.fixture
def other_project(users) -> Project:
    return make_other_project(users)


@pytest.fixture
def clf(project, users):
    return make_clf(project, users)


class Api:
    """An API client authenticated with a real token, whose requests run on-commit hooks
    (so queued tasks run, eagerly, as they would after a real commit)."""

    def __init__(self, user, capture):
        self.client = APIClient()
        self.capture = capture
        if user is not None:
            _, key = create_token(user, "tests", scopes=["read", "write", "approve"])
            self.client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    def __getattr__(self, method):
        call = getattr(self.client, method)

        def wrapped(*args, **kwargs):
            with self.capture(execute=True):
                return call(*args, **kwargs)
        return wrapped

    def upload(self, model_id, artifact: bytes, meta, name="model.skops"):
        body = {"artifact": io.BytesIO(artifact),
                "metadata": meta if isinstance(meta, str) else json.dumps(meta)}
        body["artifact"].name = name
        return self.post(f"/api/v1/models/{model_id}/versions/", body, format="multipart")


@pytest.fixture
def task_queue(settings):
    """The queue portal code sends its tasks to (``portal.queue.RecordingQueue``): what was
    queued is in ``.sent``; tasks run in this process, as the test settings run them, except
    those ``.hold(name)`` names."""
    from portal.queue import get_queue

    settings.MODELGATE_TASK_QUEUE = "portal.queue.RecordingQueue"
    return get_queue().reset()


@pytest.fixture
def api(users, django_capture_on_commit_callbacks):
    def make(who: str | None):
        return Api(users[who] if who else None, django_capture_on_commit_callbacks)
    return make


def settled(deployment, timeout: float = 60.0):
    """What the rollout worker's next decisions wait out: the backend serving the plan the
    deployment's state calls for (plans are applied without waiting), and a ``promoting``
    release succeeding once it does. The tests' in-process queue runs no follow-up with a
    countdown, so tests call this where a worker would look again."""
    import time

    from ops import rollout
    from portal.releases import deployments

    deadline = time.monotonic() + timeout
    deployment.refresh_from_db()
    while deployment.status == "promoting" and time.monotonic() < deadline:
        deployments.advance(deployment.pk)
        deployment.refresh_from_db()
        if deployment.status == "promoting":
            time.sleep(0.1)
    spec = rollout.RolloutSpec.from_dict(deployment.spec) if deployment.spec else None
    plan = rollout.current_plan(spec, rollout.RolloutState.from_dict(deployment.state)) \
        if spec else None
    backend = deployments.backend_for(deployment) if plan else None
    while plan and time.monotonic() < deadline:
        if backend.observe(deployment.endpoint).generation == plan.generation:
            break
        time.sleep(0.1)
    return deployment
