"""Steady synthetic traffic to the demo's production endpoints (rundemo starts it).

Rows are drawn from each model's training data and sent in small batches; ``manage.py
inject_drift`` makes it shift some features so that drift shows up. While an A/B test runs
on an endpoint, each request comes from a random user and the outcome of every prediction
is sent back as feedback a few seconds later, the way an integrator would: for a
classifier whether its answer matched the row's true label, for a regressor the absolute
error (the test's outcome settings say which direction is better).
"""

import json
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import requests
from django.conf import settings
from django.core.management.base import BaseCommand

from portal.demo import traffic_rows
from portal.monitoring.endpoints import served_endpoints
from portal.registry.storage import get_store
from portal.releases.models import Environment


def drift_file() -> Path:
    return Path(settings.DATA_DIR) / "demo-drift.json"


def read_drift() -> dict:
    try:
        return json.loads(drift_file().read_text())
    except (OSError, ValueError):
        return {}


class Command(BaseCommand):
    help = "Send steady synthetic requests to the served production endpoints (demo)."

    def add_arguments(self, parser):
        parser.add_argument("--environment", default="production")
        parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
        parser.add_argument("--batch", type=int, default=5, help="rows per request")
        parser.add_argument("--rounds", type=int, default=0,
                            help="stop after this many requests to each endpoint, and say "
                                 "how many were answered (default: until stopped)")

    def handle(self, *args, environment, rate, batch, rounds, **options):
        traffic = Traffic(environment, batch=batch, errors=self.stderr)
        self.stdout.write(f"demo traffic: {rate:g} requests/s of {batch} rows to {environment}")
        done = 0
        while not rounds or done < rounds:
            traffic.round()
            done += 1
            time.sleep(1.0 / max(rate, 0.1))
        traffic.flush()
        self.stdout.write(f"demo traffic: {traffic.summary()}")


class Traffic:
    """One request per served endpoint a round; an endpoint that fails (a bug, a model that
    cannot read its rows) is reported and skipped, and the others keep their traffic."""

    def __init__(self, environment: str, *, batch: int, errors):
        self.environment, self.batch, self.errors = environment, batch, errors
        self.rng = np.random.default_rng()
        self.session = requests.Session()
        self.frames: dict = {}  # model id -> the rows its requests are drawn from
        self.endpoints, self.refreshed, self.testing = [], 0.0, set()
        self.pending: list[dict] = []  # outcomes not sent yet
        self.sent_at = time.monotonic()
        self.counts: Counter = Counter()
        self.reported: set[str] = set()  # failures already written out (once each)

    def round(self) -> None:
        if time.monotonic() - self.refreshed > 10:  # new rollouts change what serves
            self.endpoints = [s for s in served_endpoints(
                Environment.objects.filter(name=self.environment)) if s.address]
            self.testing = running_tests(self.environment)
            self.refreshed = time.monotonic()
        shift = read_drift()
        for served in self.endpoints:
            try:
                self.pending += send_rows(served, batch=self.batch, rng=self.rng,
                                          session=self.session, frames=self.frames,
                                          shift=shift, testing=self.testing,
                                          counts=self.counts)
            except Exception as e:  # noqa: BLE001 - one endpoint's trouble stops only its traffic
                self.counts["failed"] += 1
                self._report(served, e)
        if self.pending and time.monotonic() - self.sent_at > 5:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            send_feedback(self.pending, self.errors)
        self.pending, self.sent_at = [], time.monotonic()

    def summary(self) -> str:
        return ", ".join(f"{self.counts[k]} {k}" for k in ("answered", "refused", "unreachable",
                                                            "failed"))

    def _report(self, served, error: Exception) -> None:
        key = f"{served.endpoint}: {type(error).__name__}: {error}"
        if key not in self.reported:
            self.reported.add(key)
            self.errors.write(f"ERROR demo traffic to {served.endpoint} failed (its requests are "
                              f"skipped, the others go on):\n"
                              + "".join(traceback.format_exception(error)))


def send_rows(served, *, batch: int, rng, session, frames: dict, shift: dict,
              testing: set[int], counts: Counter | None = None) -> list[dict]:
    """One request of ``batch`` rows to a served model (shifted as ``inject_drift`` asks);
    the outcomes to send back as feedback when an A/B test runs on it."""
    version = next(iter(served.variants.values()), None)
    if version is None or not version.dataset_id:
        return []
    frame = rows_of(served, version, frames)
    features = [f["name"] for f in version.input_schema]
    rows = frame[features].sample(batch, replace=True, random_state=int(rng.integers(1 << 31)))
    # Rows as they are: jitter would move the many tied values of discrete-ish
    # columns across the baseline's bin edges and look like drift.
    # A copy: pandas 3 hands out a read-only view of the frame's own data.
    values = rows.to_numpy(dtype=float, copy=True)
    if shift and shift.get("model") in (None, served.model.name):
        for name in shift.get("features", []):
            if name in features:
                j = features.index(name)
                values[:, j] += shift.get("shift", 3.0) * frame[name].std()
    try:
        answer = session.post(
            f"http://{served.address}/v2/models/{served.endpoint}/infer",
            json={"instances": values.tolist()}, timeout=5,
            headers={"X-Unit-Id": f"patient-{int(rng.integers(1 << 40))}"})
    except requests.RequestException:
        if counts is not None:
            counts["unreachable"] += 1
        return []  # the server may be starting or restarting
    if counts is not None:
        counts["answered" if answer.ok else "refused"] += 1
    target = version.dataset.target
    if served.model.pk in testing and answer.ok and target in frame:
        return outcomes(answer.json(), rows.index, frame[target], served.model.task)
    return []


def rows_of(served, version, frames: dict):
    """The rows a served model's requests are drawn from, read once: the demo's models get
    their whole bundled dataset (some rows they never saw); other models their dataset's
    rows."""
    import pandas as pd

    if served.model.pk not in frames:
        frame = traffic_rows(served.model.name)
        if frame is None:
            with get_store().local_path(version.dataset.uri) as path:
                frame = pd.read_csv(path)
        frames[served.model.pk] = frame
    return frames[served.model.pk]


def running_tests(environment: str) -> set[int]:
    """Models with an A/B test running in ``environment``."""
    from portal.experiments.models import Experiment

    return set(Experiment.objects.filter(
        deployment__environment__name=environment,
        deployment__status__in=["progressing", "paused", "awaiting_decision"])
        .values_list("deployment__model_id", flat=True))


def outcomes(answer: dict, index, truth, task: str) -> list[dict]:
    """The outcome of one answer: correct (1/0) or the absolute error. One per request,
    because a request is one user here, and the test's statistics count independent
    units (the rows of one request share a variant and would count as one)."""
    ids = (answer.get("parameters") or {}).get("prediction_ids") or []
    predicted = answer["outputs"][0]["data"]
    items = []
    for pid, label, row in list(zip(ids, predicted, index, strict=False))[:1]:
        actual = float(truth.loc[row])
        value = int(float(label) == actual) if task == "classification" \
            else abs(float(label) - actual)
        items.append({"prediction_id": pid, "outcome": value})
    return items


def send_feedback(items: list[dict], log) -> None:
    from django.contrib.auth import get_user_model

    from portal.experiments.services import record_feedback

    user = get_user_model().objects.filter(username="carlos").first()
    if user is None:
        return
    result = record_feedback(user, items)
    if result.errors:
        log.write(f"demo feedback: {len(result.errors)} refused, first: "
                  f"{result.errors[0]['detail']}")
