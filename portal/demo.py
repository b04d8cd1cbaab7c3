"""Demo data: real scikit-learn models trained on datasets that ship with scikit-learn.

Everything goes through the same service functions as the API, so the demo exercises the
real registration path (hashing, storage, validation, profiling, audit).
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction

from ops.artifacts import dump_skops
from portal.accounts.choices import Role
from portal.accounts.models import Membership
from portal.registry import services
from portal.registry.models import Project

DEMO_PASSWORD = "modelgate-demo"
DEMO_USERS = [
    # username, role in the demo project (None: staff admin), description
    ("admin", None, "staff: manages every project, opens /admin/"),
    ("olivia", Role.OWNER, "owner of clinical-ml: members and settings"),
    ("alice", Role.APPROVER, "approver: moves the champion alias, approves releases"),
    ("carlos", Role.CONTRIBUTOR, "contributor: registers models, versions, datasets"),
    ("vera", Role.VIEWER, "viewer: reads everything in clinical-ml"),
]
PROJECT_SLUG = "clinical-ml"
REPO_DIR = Path(__file__).resolve().parent.parent


@dataclass
class Candidate:
    estimator: object
    params: dict
    description: str
    label: str
    # The file registered: skops for scikit-learn; a framework's own format otherwise.
    artifact: Callable[[object], bytes] = dump_skops


def xgboost_json(model) -> bytes:
    """An XGBClassifier as XGBoost's own JSON model (what ``save_model("m.json")`` writes)."""
    return bytes(model.get_booster().save_raw(raw_format="json"))


def git_reference() -> dict:
    """The repository and commit the demo models were 'trained' from (this checkout)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True,
                              timeout=5).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        remote = git("config", "--get", "remote.origin.url") or f"file://{REPO_DIR}"
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"repository": remote, "commit": commit} if commit else {}


def ensure_users(stdout=None) -> dict:
    User = get_user_model()
    users = {}
    for username, role, _ in DEMO_USERS:
        user, created = User.objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"})
        if created:
            user.set_password(DEMO_PASSWORD)
            user.is_staff = user.is_superuser = role is None
            user.save()
        users[username] = user
    return users


def _classifier_candidates():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    return [
        Candidate(make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000)),
                  {"model": "logistic_regression", "C": 0.1, "scaler": "standard"},
                  "Baseline: scaled logistic regression.", "1.0.0"),
        Candidate(RandomForestClassifier(n_estimators=200, max_depth=6, random_state=7),
                  {"model": "random_forest", "n_estimators": 200, "max_depth": 6},
                  "Random forest; captures interactions the baseline misses.", "1.1.0"),
        # Trained with XGBoost and registered in its own JSON format (no pickle, no skops).
        Candidate(XGBClassifier(n_estimators=150, learning_rate=0.05, max_depth=3,
                                random_state=7, n_jobs=1),
                  {"model": "xgboost", "n_estimators": 150, "learning_rate": 0.05,
                   "max_depth": 3},
                  "XGBoost gradient boosting, tuned learning rate (XGBoost JSON).", "2.0.0",
                  artifact=xgboost_json),
    ]


def _regressor_candidates():
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge

    return [
        Candidate(Ridge(alpha=1.0), {"model": "ridge", "alpha": 1.0},
                  "Baseline: ridge regression.", "1.0.0"),
        Candidate(RandomForestRegressor(n_estimators=200, min_samples_leaf=5, random_state=7),
                  {"model": "random_forest", "n_estimators": 200, "min_samples_leaf": 5},
                  "Random forest regressor.", "1.1.0"),
        Candidate(GradientBoostingRegressor(n_estimators=200, learning_rate=0.03, max_depth=2,
                                            random_state=7),
                  {"model": "gradient_boosting", "n_estimators": 200, "learning_rate": 0.03,
                   "max_depth": 2},
                  "Shallow gradient boosting.", "2.0.0"),
    ]


def classification_metrics(model, X, y) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    proba = model.predict_proba(X)[:, 1]
    predicted = model.predict(X)
    return {"accuracy": round(float(accuracy_score(y, predicted)), 4),
            "roc_auc": round(float(roc_auc_score(y, proba)), 4),
            "f1": round(float(f1_score(y, predicted)), 4),
            "log_loss": round(float(log_loss(y, proba)), 4)}


def regression_metrics(model, X, y) -> dict:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    predicted = model.predict(X)
    return {"r2": round(float(r2_score(y, predicted)), 4),
            "rmse": round(float(np.sqrt(mean_squared_error(y, predicted))), 3),
            "mae": round(float(mean_absolute_error(y, predicted)), 3)}


# The scikit-learn loader of each demo model's bundled dataset.
_DEMO_DATA = {"tumor-classifier": "load_breast_cancer", "progression-regressor": "load_diabetes"}


def traffic_rows(model_name: str):
    """The rows the demo's traffic sends to a demo model (None for other models): the whole
    bundled dataset, the quarter the model never saw among the rows it trained on. Training
    rows alone made both A/B variants score 100 % (the forest is right on nearly every row
    it was trained on); the held-out quarter alone is so few rows (143) that sampling them
    drifts ten features past PSI 0.1 against the training baseline. The whole set keeps
    drift near zero (PSI under 0.03) and outcomes short of perfect."""
    if model_name not in _DEMO_DATA:
        return None
    import sklearn.datasets

    return getattr(sklearn.datasets, _DEMO_DATA[model_name])(as_frame=True).frame


def _register_family(user, project, *, name, task, description, frame, target, candidates,
                     scorer, dataset_name, dataset_description, tags, log, classes=None):
    from sklearn.model_selection import train_test_split

    features = [c for c in frame.columns if c != target]
    train, test = train_test_split(frame, test_size=0.25, random_state=42,
                                   stratify=frame[target] if task == "classification" else None)
    csv = io.BytesIO(train.to_csv(index=False).encode())
    dataset = services.upload_dataset(user, project, name=dataset_name, file=csv,
                                      filename=f"{dataset_name}.csv", target=target,
                                      description=dataset_description)
    services.profile_dataset(dataset.pk)
    model = services.create_model(user, project, name=name, task=task, description=description)
    schema = [{"name": f, "type": "double"} for f in features]
    code = git_reference()
    parent = None
    versions = []
    for candidate in candidates:
        candidate.estimator.fit(train[features], train[target])
        metadata = {
            "input_schema": schema, "metrics": scorer(candidate.estimator, test[features],
                                                      test[target]),
            "params": candidate.params, "dataset": dataset.pk, "tags": tags,
            "label": candidate.label, "description": candidate.description,
        }
        if classes:  # the names people know the classes by, shown on every page
            metadata["classes"] = classes
        if code:
            metadata["code"] = code
        if parent is not None:
            metadata["parent"] = parent.number
        version = services.register_version(
            user, model, io.BytesIO(candidate.artifact(candidate.estimator)), metadata)
        # The demo validates synchronously so the portal is complete when it opens.
        version = services.validate_version(version.pk)
        log(f"  {model.name} {version.display_name}: {version.status} "
            f"{version.metrics}")
        versions.append(version)
        parent = version
    _measure_on_holdout(model, test, target, dataset_name, dataset_description)
    return model, versions


def _measure_on_holdout(model, test, target, dataset_name, dataset_description):
    """The held-out quarter as the model's evaluation dataset, chosen by the project's owner
    (approvers choose the evidence): every version is measured on it (here synchronously, so
    the portal is complete when it opens) and the gates judge those figures, not the ones
    registered with the versions."""
    from django.contrib.auth import get_user_model

    from portal.registry.models import Evaluation

    name = dataset_name.replace("-train", "-holdout")
    owner = get_user_model().objects.get(username="olivia")
    holdout = services.upload_dataset(
        owner, model.project, name=name, file=io.BytesIO(test.to_csv(index=False).encode()),
        filename=f"{name}.csv", target=target, purpose="evaluation", model=model,
        description=dataset_description.replace("75% training split", "25% held out, never "
                                                "trained on"))
    services.profile_dataset(holdout.pk)
    for pk in Evaluation.objects.filter(dataset=holdout).values_list("pk", flat=True):
        services.evaluate(pk)


def seed(log=print) -> bool:
    """Create the demo users, project, datasets and model versions; False if already there."""
    from sklearn.datasets import load_breast_cancer, load_diabetes

    users = ensure_users()
    if Project.objects.filter(slug=PROJECT_SLUG).exists():
        return False
    owner = users["olivia"]
    with transaction.atomic():
        project = services.create_project(
            owner, name="Clinical ML", slug=PROJECT_SLUG,
            description="Diagnosis and disease-progression models trained on scikit-learn's "
                        "bundled clinical datasets.")
        for username, role, _ in DEMO_USERS:
            if role is not None and role != Role.OWNER:
                Membership.objects.create(project=project, user=users[username], role=role)
    cancer = load_breast_cancer(as_frame=True).frame
    classifier, cversions = _register_family(
        users["carlos"], project, name="tumor-classifier", task="classification",
        description="Predicts whether a breast mass is benign (1) or malignant (0) from "
                    "digitised biopsy measurements.",
        frame=cancer, target="target", candidates=_classifier_candidates(),
        scorer=classification_metrics, dataset_name="breast-cancer-train",
        dataset_description="Wisconsin diagnostic breast cancer data, 75% training split.",
        tags=["demo", "tabular"], log=log, classes={"0": "malignant", "1": "benign"})
    diabetes = load_diabetes(as_frame=True).frame
    regressor, rversions = _register_family(
        users["carlos"], project, name="progression-regressor", task="regression",
        description="Predicts disease progression one year after baseline from ten "
                    "standardised clinical measurements.",
        frame=diabetes, target="target", candidates=_regressor_candidates(),
        scorer=regression_metrics, dataset_name="diabetes-train",
        dataset_description="Diabetes progression data, 75% training split.",
        tags=["demo", "tabular"], log=log)
    for model, versions in ((classifier, cversions), (regressor, rversions)):
        services.set_alias(users["alice"], model, "champion", versions[1])
        services.set_alias(users["carlos"], model, "challenger", versions[2])
    _seed_releases(project, users, classifier=cversions, regressor=rversions)
    return True


def _seed_releases(project, users, *, classifier, regressor):
    """Two environments and two release requests waiting for an approver (alice)."""
    from portal.releases import services as releases

    owner = users["olivia"]
    releases.create_environment(
        owner, project, name="staging", backend="local", settings={},
        description="Shadow and canary tests on this machine.", required_approvals=1)
    production = releases.create_environment(
        owner, project, name="production", backend="local", settings={},
        description="Serves the clinics' requests.", required_approvals=1,
        gates=[{"metric": "roc_auc", "min": 0.95, "model": "tumor-classifier"},
               {"metric": "roc_auc", "max_drop": 0.01, "model": "tumor-classifier"},
               {"metric": "r2", "min": 0.4, "model": "progression-regressor"},
               {"metric": "rmse", "max_rise": 1.0, "model": "progression-regressor"}])
    # The champions go to production first (a worker starts their model servers)...
    for champion in (classifier[1], regressor[1]):
        request = releases.request_approval(users["carlos"], champion, production,
                                            strategy="direct", reason="Current champion.")
        releases.review(users["alice"], request, "approve", "Serving since the last review.")
    # ...and two challengers wait for an approver: the classifier's as an A/B test whose
    # outcome (the diagnosis later confirmed by biopsy) demo_traffic feeds back.
    releases.request_approval(
        users["carlos"], classifier[2], production, strategy="ab",
        strategy_params={"split": 0.5, "duration_seconds": 3600,
                         "outcome": {"metric": "correct diagnoses", "kind": "binary",
                                     "higher_is_better": True}},
        reason="Gradient boosting: better calibrated on the newest biopsies; A/B test on "
               "confirmed diagnoses before it replaces the forest.")
    releases.request_approval(
        users["carlos"], regressor[2], production, strategy="canary",
        reason="Shallow boosting: smaller and nearly as accurate as the forest.")


def ensure_monitoring() -> None:
    """Short drift windows for the demo's models, so injected drift shows within a minute."""
    from portal.monitoring.models import MonitorSettings
    from portal.registry.models import RegisteredModel

    for model in RegisteredModel.objects.filter(project__slug=PROJECT_SLUG):
        MonitorSettings.objects.get_or_create(model=model, defaults={
            "drift_window_seconds": 60, "drift": {"min_count": 100}})
