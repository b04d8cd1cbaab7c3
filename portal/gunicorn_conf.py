"""gunicorn settings for the portal (``gunicorn -c python:portal.gunicorn_conf portal.wsgi``).

Garbage collection: Django's prefetching leaves cyclic garbage on every list request, and a
full collection walks every object the worker holds — the whole import graph of Django,
DRF, numpy and pandas — taking 100–160 ms every few requests (measured by
``benchmarks/registry_api.py``). Freezing what exists after start-up takes those objects
out of collections, and a higher first threshold makes collections rarer.
"""

import gc
import os
import shutil
import tempfile

# Every gunicorn process writes its metrics here and /metrics sums them; set before the
# app (and prometheus_client) is imported in the workers.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelgate-metrics-")

bind = os.environ.get("MODELGATE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("MODELGATE_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
# Idle keep-alive connections stay open longer than a load balancer's idle timeout (60 s on
# AWS ALB, nginx's default 75 s): a backend that closes first races the balancer's next
# request on that connection, which the client sees as a reset or a 502.
keepalive = int(os.environ.get("MODELGATE_KEEPALIVE_SECONDS", "75"))
accesslog = "-"
loglevel = os.environ.get("MODELGATE_LOG_LEVEL", "warning").lower()


# Libraries the web process imports on first use, which takes seconds (scipy.stats for A/B
# readouts, skops and scikit-learn to inspect an uploaded artifact, pandas for datasets,
# the Celery app and its Redis transport for the first task a request queues): imported
# when a worker starts, so no visitor waits for them after a deploy or a restart, and
# frozen with the rest below. Comma-separated; empty to import nothing ahead.
PRELOAD = os.environ.get("MODELGATE_WEB_PRELOAD",
                         "numpy,pandas,scipy.stats,sklearn,skops.io,workers.registry,"
                         "kombu.transport.redis,redis").split(",")


def post_worker_init(worker):
    import importlib

    for name in filter(None, (n.strip() for n in PRELOAD)):
        try:
            importlib.import_module(name)
        except ImportError as e:
            worker.log.warning("could not preload %s: %s", name, e)
    try:
        # The cache client (sessions, throttles, shared readouts) connects on first use.
        from django.core.cache import cache

        cache.get("modelgate:warm-up")
    except Exception as e:  # Redis away at start: the first request connects instead
        worker.log.warning("cache not reachable at start: %s", e)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def on_starting(server):
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)  # samples of a previous run do not count
    os.makedirs(folder, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
