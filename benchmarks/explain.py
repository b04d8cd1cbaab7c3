"""SHAP explanations: compute time per model, and the version page's server time.

    .venv/bin/python benchmarks/explain.py [--repeat 3] [--page-requests 50]

1. ``explainability.shap_values.explain`` on 1,000 rows of breast_cancer (all 30 features;
   the 569 rows resampled) for a 100-tree RandomForest (tree explainer) and a
   StandardScaler + LogisticRegression pipeline (linear explainer), and a k-nearest-
   neighbours classifier on 100 rows (the permutation fallback, for scale). Median of
   ``--repeat`` runs after one warm-up (the first call pays SHAP's import and numba
   compilation); the largest additivity error is printed.
2. The version page with a precomputed explanation (importance, beeswarm, dependence and
   waterfall charts of a 500-row sample), rendered by the real view through Django's test
   client in this process (server time, no network), on a throwaway SQLite database:
   p50 and p95 of ``--page-requests`` requests against the target of 150 ms.

3. Feedback ingestion: ``benchmarks/feedback.py`` (run as its own process: it needs its
   own PostgreSQL database and a gunicorn), outcomes/s of ``POST /api/v1/feedback/`` in
   batches against the target of 5,000/s, beside the single-item form. ``--no-feedback``
   skips it.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def shap_timings(repeat: int) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from explainability.shap_values import explain

    data = load_breast_cancer(as_frame=True)
    X, y = data.data, data.target
    rows = X.sample(1000, replace=True, random_state=0)
    models = [
        ("RandomForest (100 trees)", RandomForestClassifier(n_estimators=100, random_state=0)
         .fit(X, y), rows),
        ("StandardScaler + LogisticRegression",
         make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X, y), rows),
        ("KNeighbors (100 rows)", KNeighborsClassifier().fit(X, y), rows.iloc[:100]),
    ]
    print(f"{'model':<38} {'method':<12} {'rows':>5} {'seconds':>8} {'additivity':>11}")
    for name, model, sample in models:
        explain(model, sample.iloc[:20], X)  # warm-up: import, compilation
        times, result = [], None
        for _ in range(repeat):
            started = time.perf_counter()
            result = explain(model, sample, X)
            times.append(time.perf_counter() - started)
        print(f"{name:<38} {result.method:<12} {len(sample):>5} {statistics.median(times):>8.3f}"
              f" {result.max_additivity_error:>11.1e}")


def page_timings(requests_: int) -> bool:
    folder = tempfile.mkdtemp(prefix="modelgate-bench-explain-")
    os.environ.update(MODELGATE_DATA_DIR=folder, DJANGO_SETTINGS_MODULE="portal.settings",
                      CELERY_TASK_ALWAYS_EAGER="true", MODELGATE_EXPLAIN_VERSIONS="false")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    from ops.artifacts import dump_skops
    from portal.registry import services

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench-owner", password="x")
    project = services.create_project(owner, name="Bench", slug="bench")
    model = services.create_model(owner, project, name="cancer", task="classification")
    frame = load_breast_cancer(as_frame=True).frame
    dataset = services.upload_dataset(owner, project, name="cancer",
                                      file=io.BytesIO(frame.to_csv(index=False).encode()),
                                      filename="cancer.csv", target="target")
    services.profile_dataset(dataset.pk)
    features = [c for c in frame.columns if c != "target"]
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(frame[features],
                                                                         frame["target"])
    version = services.register_version(owner, model, io.BytesIO(dump_skops(forest)), {
        "input_schema": [{"name": f, "type": "double"} for f in features],
        "dataset": dataset.pk, "metrics": {"roc_auc": 0.99}})
    version = services.validate_version(version.pk)
    explanation = services.explain_version(version.pk)
    assert explanation.status == "ready", explanation.reason
    client = Client()
    client.force_login(owner)
    url = f"/p/bench/m/cancer/v/{version.number}/"
    assert client.get(url).status_code == 200
    times = []
    for i in range(requests_):
        started = time.perf_counter()
        response = client.get(url + (f"?row={i % 50}" if i % 2 else ""))
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    times.sort()
    p50 = statistics.median(times)
    p95 = times[int(0.95 * (len(times) - 1))]
    size = len(response.content) / 1024
    print(f"\nversion page with a {explanation.sample_size}-row explanation of "
          f"{len(features)} features ({size:.0f} KB of HTML): p50 {p50:.1f} ms, "
          f"p95 {p95:.1f} ms over {requests_} requests "
          f"({'PASS' if p95 < 150 else 'FAIL'}: target < 150 ms)")
    return p95 < 150


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--page-requests", type=int, default=50)
    parser.add_argument("--no-feedback", action="store_true")
    args = parser.parse_args()
    shap_timings(args.repeat)
    ok = page_timings(args.page_requests)
    if not args.no_feedback:
        import subprocess

        sys.stdout.flush()
        feedback = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "feedback.py")], check=False,
            env={k: v for k, v in os.environ.items()
                 if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")})
        ok = ok and feedback.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
