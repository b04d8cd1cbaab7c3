"""Feedback for A/B tests: signed ids only, idempotent, counted once, refused clearly.

The experiment here belongs to an A/B deployment row in the running state; ids are minted
with the endpoint's real key the way its model server mints them (the end-to-end path through
real model servers is in test_experiments.py).
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from django.db import connection

from ops import rollout
from ops.serving.ids import Signer, derive_key, new_prediction_ids, parse_prediction_id
from portal.experiments import services as experiments
from portal.experiments.models import Outcome, OutcomeBucket, VariantTotal
from portal.experiments.signing import signer_for
from portal.registry import services as registry
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import Deployment
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration]


def _version(users, model, seed):
    return registry.register_version(users["contributor"], model,
                                     io.BytesIO(random_classifier_bytes(seed)), metadata())


def make_experiment(users, project, model, kind="binary", status="progressing"):
    environment = releases.create_environment(users["owner"], project, name="production")
    v1, v2 = _version(users, model, 1), _version(users, model, 2)
    spec = deployments._spec("ab", {"split": 0.5, "duration_seconds": 3600}, model.name, v2, v1)
    state = rollout.RolloutState(status=rollout.Status(status), generation=2, base_generation=1,
                                 step_started_at=time.time())
    deployment = Deployment.objects.create(
        environment=environment, model=model, candidate=v2, stable=v1, endpoint=model.name,
        strategy="ab", spec=spec.to_dict(), state=state.to_dict(), status=status)
    experiment = experiments.create_for(deployment, generation=2)
    if kind != experiment.kind:
        experiment.kind = kind
        experiment.save()
    return experiment


def ids(experiment, variant, count, generation=2, signer=None):
    signer = signer or signer_for(experiment.deployment.environment_id,
                                  experiment.deployment.model_id)
    return [new_prediction_ids(variant, generation, 1, signer=signer)[0] for _ in range(count)]


@pytest.fixture
def experiment(db, users, project, clf):
    return make_experiment(users, project, clf)


def post(api, who, body):
    return api(who).post("/api/v1/feedback/", body, format="json")


def test_a_batch_is_counted_per_variant_and_read_out(api, experiment):
    rng = np.random.default_rng(0)
    a_ids, b_ids = ids(experiment, "stable", 400), ids(experiment, "candidate", 400)
    a_out = (rng.random(400) < 0.10).astype(int)
    b_out = (rng.random(400) < 0.20).astype(int)
    items = [{"prediction_id": i, "outcome": int(o)}
             for i, o in zip(a_ids, a_out, strict=True)] + \
            [{"prediction_id": i, "outcome": bool(o)}
             for i, o in zip(b_ids, b_out, strict=True)]
    answer = post(api, "contributor", {"items": items})
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"accepted": 800, "duplicates": 0, "rejected": 0, "errors": []}
    totals = {t.variant: (t.n, t.total, t.total_sq) for t in VariantTotal.objects.all()}
    assert totals == {"stable": (400, a_out.sum(), a_out.sum()),
                      "candidate": (400, b_out.sum(), b_out.sum())}
    readout = api("viewer").get(f"/api/v1/experiments/{experiment.pk}/readout/").json()
    r = readout["readout"]
    assert r["control"]["units"] == 400 and r["treatment"]["units"] == 400
    assert r["control"]["rate"] == pytest.approx(a_out.mean())
    assert r["difference"] == pytest.approx(b_out.mean() - a_out.mean())
    assert r["verdict"] and "B (v2)" in r["verdict"] and not r["srm_broken"]
    points = readout["over_time"]
    assert [p["units"] for p in points["stable"]] == [400]
    assert points["candidate"][0]["low"] < b_out.mean() < points["candidate"][0]["high"]
    assert readout["experiment"]["status"] == "running"


def test_feedback_is_idempotent_and_the_first_outcome_stands(api, experiment):
    pid = ids(experiment, "candidate", 1)[0]
    first = post(api, "contributor", {"prediction_id": pid, "outcome": 1})
    assert first.status_code == 201 and first.json()["accepted"] == 1
    again = post(api, "contributor", {"prediction_id": pid, "outcome": 1})
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    changed = post(api, "contributor", {"prediction_id": pid, "outcome": 0})
    assert changed.status_code == 409 and changed.json()["code"] == "conflicting_outcome"
    twice = post(api, "contributor", {"items": [{"prediction_id": p, "outcome": 1}
                                                for p in ids(experiment, "stable", 2) * 2]})
    assert twice.json()["accepted"] == 2 and twice.json()["duplicates"] == 2
    assert Outcome.objects.get(prediction_id=pid).value == 1.0
    assert VariantTotal.objects.get(variant="candidate").n == 1
    assert sum(b.n for b in OutcomeBucket.objects.all()) == 3


def test_bad_ids_and_outcomes_are_refused_each_with_its_reason(api, experiment, users,
                                                                project):
    good = ids(experiment, "candidate", 1)[0]
    pid = parse_prediction_id(good)
    swapped = good.replace("candidate.", "stable.", 1)  # the variant changed, MAC kept
    unsigned = pid.body
    other_kid = f"e{experiment.deployment.environment_id}m999"  # a real key, no test
    elsewhere = ids(experiment, "candidate", 1,
                    signer=Signer(other_kid, derive_key(b"x" * 32, other_kid)))[0]
    valid_other = ids(experiment, "candidate", 1, signer=signer_for(
        experiment.deployment.environment_id, 999))[0]
    before = ids(experiment, "stable", 1, generation=1)[0]  # made before the test
    items = [
        {"prediction_id": swapped, "outcome": 1},
        {"prediction_id": unsigned, "outcome": 1},
        {"prediction_id": elsewhere, "outcome": 1},
        {"prediction_id": valid_other, "outcome": 1},
        {"prediction_id": before, "outcome": 1},
        {"prediction_id": "not-an-id", "outcome": 1},
        {"prediction_id": ids(experiment, "candidate", 1)[0], "outcome": 0.5},
        {"prediction_id": ids(experiment, "candidate", 1)[0], "outcome": "yes"},
        {"prediction_id": ids(experiment, "shadowy", 1)[0], "outcome": 1},
        {"outcome": 1},
        "text",
        {"prediction_id": good, "outcome": 1},
    ]
    answer = post(api, "contributor", {"items": items})
    body = answer.json()
    assert answer.status_code == 200 and body["accepted"] == 1 and body["rejected"] == 11
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (0, "invalid_signature"), (1, "unsigned_id"), (2, "invalid_signature"),
        (5, "malformed_id"), (9, "invalid_item"), (10, "invalid_item"),
        (3, "unknown_prediction"), (4, "unknown_prediction"), (6, "invalid_outcome"),
        (7, "invalid_outcome"), (8, "unknown_variant")]
    assert all(e["detail"] for e in body["errors"])
    assert Outcome.objects.count() == 1


def test_numeric_outcomes_take_any_finite_number(api, db, users, project, clf):
    experiment = make_experiment(users, project, clf, kind="numeric")
    values = [12.5, -3.0, 0.0, 1e6]
    items = [{"prediction_id": p, "outcome": v}
             for p, v in zip(ids(experiment, "stable", 4), values, strict=True)]
    assert post(api, "contributor", {"items": items}).json()["accepted"] == 4
    total = VariantTotal.objects.get(variant="stable")
    assert (total.n, total.total, total.total_sq) == (4, sum(values),
                                                      sum(v * v for v in values))
    refused = post(api, "contributor", {"prediction_id": ids(experiment, "stable", 1)[0],
                                        "outcome": True})
    assert refused.status_code == 201  # true counts as 1.0: a number


def test_who_may_send_feedback(api, experiment):
    pid = ids(experiment, "stable", 1)[0]
    assert post(api, "outsider", {"prediction_id": pid, "outcome": 1}).status_code == 404
    viewer = post(api, "viewer", {"prediction_id": pid, "outcome": 1})
    assert viewer.status_code == 403 and viewer.json()["code"] == "permission_denied"
    assert post(api, None, {"prediction_id": pid, "outcome": 1}).status_code in (401, 403)
    assert Outcome.objects.count() == 0
    assert post(api, "contributor", {"prediction_id": pid, "outcome": 1}).status_code == 201


def test_feedback_for_a_finished_test_is_refused(api, experiment):
    Deployment.objects.filter(pk=experiment.deployment_id).update(status="succeeded")
    answer = post(api, "contributor", {"prediction_id": ids(experiment, "stable", 1)[0],
                                       "outcome": 1})
    assert answer.status_code == 409 and answer.json()["code"] == "test_finished"
    assert "promoted" in answer.json()["detail"]


def test_malformed_bodies_and_oversized_batches(api, experiment, settings):
    assert post(api, "contributor", {"items": []}).status_code == 400
    assert post(api, "contributor", {"items": "x"}).status_code == 400
    settings.MODELGATE_FEEDBACK_MAX_BATCH = 5
    items = [{"prediction_id": p, "outcome": 1} for p in ids(experiment, "stable", 6)]
    too_many = post(api, "contributor", {"items": items})
    assert too_many.status_code == 413 and Outcome.objects.count() == 0
    assert post(api, "contributor", items[:5]).json()["accepted"] == 5  # a bare list too


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_of_the_same_ids_count_each_once(users, project, clf):
    experiment = make_experiment(users, project, clf)
    batch = [{"prediction_id": p, "outcome": i % 2}
             for i, p in enumerate(ids(experiment, "candidate", 300))]
    results, errors = [], []

    def send():
        try:
            results.append(experiments.record_feedback(users["contributor"], batch))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.accepted for r in results) == 300
    assert sum(r.duplicates for r in results) == 900
    total = VariantTotal.objects.get(variant="candidate")
    assert (total.n, total.total) == (300, 150)


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_in_any_order_never_deadlock(users, project, clf):
    """Batches holding the same ids of both variants in different orders: each takes its
    locks in one order, so none waits for another in a cycle (PostgreSQL would fail one
    with "deadlock detected")."""
    import random

    experiment = make_experiment(users, project, clf)
    pool = ids(experiment, "stable", 150) + ids(experiment, "candidate", 150)
    outcome = {p: i % 2 for i, p in enumerate(pool)}
    errors, accepted = [], []

    def send(seed):
        rng = random.Random(seed)
        try:
            for _ in range(8):
                batch = rng.sample(pool, 120)
                result = experiments.record_feedback(
                    users["contributor"], [{"prediction_id": p, "outcome": outcome[p]}
                                           for p in batch])
                accepted.append(result.accepted)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    counted = {t.variant: (t.n, t.total) for t in VariantTotal.objects.all()}
    assert sum(n for n, _ in counted.values()) == Outcome.objects.count() == sum(accepted)
    assert counted["stable"][1] + counted["candidate"][1] == sum(
        v for p, v in outcome.items() if Outcome.objects.filter(prediction_id=p).exists())


def test_feedback_looks_at_most_every_few_seconds(api, experiment, settings):
    """A look per batch would cost a readout per request; every readout still looks."""
    settings.MODELGATE_AB_LOOK_SECONDS = 60
    rng = np.random.default_rng(5)
    seen = []
    for _ in range(3):
        items = [{"prediction_id": p, "outcome": int(rng.random() < 0.2)}
                 for p in ids(experiment, "stable", 100)] + \
                [{"prediction_id": p, "outcome": int(rng.random() < 0.6)}
                 for p in ids(experiment, "candidate", 100)]
        post(api, "contributor", {"items": items})
        experiment.refresh_from_db()
        seen.append(experiment.sequential_p)
    assert seen[0] is not None and seen[1] == seen[2] == seen[0]  # one look, the first
    readout = api("viewer").get(f"/api/v1/experiments/{experiment.pk}/readout/").json()
    experiment.refresh_from_db()
    assert experiment.sequential_p < seen[0]
    assert readout["readout"]["sequential_p"] == pytest.approx(experiment.sequential_p)


def test_the_sequential_p_value_is_a_running_minimum(api, experiment, settings):
    settings.MODELGATE_AB_LOOK_SECONDS = 0  # a look after every batch
    rng = np.random.default_rng(3)
    seen = []
    for _ in range(6):
        items = [{"prediction_id": p, "outcome": int(rng.random() < 0.3)}
                 for p in ids(experiment, "stable", 100)] + \
                [{"prediction_id": p, "outcome": int(rng.random() < 0.4)}
                 for p in ids(experiment, "candidate", 100)]
        post(api, "contributor", {"items": items})
        experiment.refresh_from_db()
        seen.append(experiment.sequential_p)
    assert experiment.tau2 is not None
    assert all(b <= a for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1] < 0.05  # 30 % against 40 % over 600 units each is clear


def test_a_readout_is_shared_for_a_few_seconds_and_forgotten_by_a_decision(
        api, experiment, settings):
    from portal.experiments.services import _forget_results

    def units():
        body = api("viewer").get(f"/api/v1/experiments/{experiment.pk}/readout/").json()
        return body["readout"]["control"]["units"] + body["readout"]["treatment"]["units"]

    settings.MODELGATE_AB_READOUT_SECONDS = 60
    assert units() == 0
    items = [{"prediction_id": p, "outcome": 1} for p in ids(experiment, "stable", 10)]
    assert post(api, "contributor", {"items": items}).json()["accepted"] == 10
    assert units() == 0  # computed a moment ago, shared
    _forget_results(experiment)  # what a decision does once committed
    assert units() == 10
    settings.MODELGATE_AB_READOUT_SECONDS = 0
    items = [{"prediction_id": p, "outcome": 0} for p in ids(experiment, "candidate", 5)]
    post(api, "contributor", {"items": items})
    assert units() == 15
