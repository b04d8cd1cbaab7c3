"""Probes: ``/healthz`` (the process answers: liveness) and ``/readyz`` (it can do its work:
the database, the broker and the artifact store answer; readiness).

A failed readiness check names the dependency and the kind of failure, never the error's
text: that may carry a host, a user name or a URL with credentials, and the probe answers
anyone who can reach the pod.
"""

from __future__ import annotations

import time

from django.db import connection
from django.http import JsonResponse

TIMEOUT_SECONDS = 2.0


def healthz(request):
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    from portal.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                               timeout=TIMEOUT_SECONDS)


def _artifact_store() -> None:
    from portal.registry.storage import get_store

    get_store().ping()


CHECKS = {"database": _database, "broker": _broker, "artifact_store": _artifact_store}


def readyz(request):
    results, ready = {}, True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as e:  # noqa: BLE001 - any failure means not ready
            ready = False
            results[name] = {"ok": False, "error": type(e).__name__,
                             "ms": round(1000 * (time.perf_counter() - started), 1)}
        else:
            results[name] = {"ok": True, "ms": round(1000 * (time.perf_counter() - started), 1)}
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": results},
                        status=200 if ready else 503)
