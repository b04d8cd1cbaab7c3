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
# Longest request line (method, path, query string) gunicorn reads; longer ones get its
# 414, documented on every operation of the API schema (portal/api/schema.py).
limit_request_line = 4094
accesslog = "-"
# Health checks (load balancers, the kubelet, rundemo waiting for the portal) ask every few
# seconds: their answers of 200 are not access-logged; other answers are.
PROBES = ("/healthz", "/readyz")


def _not_a_probe(record) -> bool:
    atoms = record.args if isinstance(record.args, dict) else {}
    return not (atoms.get("U") in PROBES and str(atoms.get("s")) == "200")
loglevel = os.environ.get("MODELGATE_LOG_LEVEL", "warning").lower()


# Libraries the web process imports on first use, which takes seconds (scipy.stats for A/B
# readouts, skops and scikit-learn to inspect an uploaded artifact, pandas for datasets,
# the Celery app and its Redis transport for the first task a request queues): imported
# when a worker starts, so no visitor waits for them after a deploy or a restart, and
# frozen with the rest below. Comma-separated; empty to import nothing ahead.
PRELOAD = os.environ.get("MODELGATE_WEB_PRELOAD",
                         "numpy,pandas,scipy.stats,sklearn,skops.io,portal.celery,"
                         "kombu.transport.redis,redis").split(",")


def post_worker_init(worker):
    import importlib

    worker.log.access_log.addFilter(_not_a_probe)
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


# Request bodies are read against a deadline. gunicorn's `timeout` restarts a worker whose
# master stops hearing from it, which in a gthread worker never happens because of a slow
# client: the thread reading a body blocks in recv() as long as the client sends a few
# bytes now and then (twelve bodies of 10 bytes every 2 s held every thread for their
# whole 40 s, and /healthz with them). The proxy in front (deploy/kubernetes/nginx.conf)
# buffers bodies, so gunicorn reads whole ones at local speed; without one, this bounds
# the time a body may take: past it the read fails and the request is answered 400.
# Headers are read before any hook runs: only the proxy bounds a slow header.
BODY_SECONDS = float(os.environ.get("MODELGATE_BODY_TIMEOUT_SECONDS", "30"))


def pre_request(worker, req):
    unreader = getattr(req, "unreader", None)
    sock = getattr(unreader, "sock", None)
    if sock is None or BODY_SECONDS <= 0:
        return
    import time

    from django.core.exceptions import BadRequest

    deadline = time.monotonic() + BODY_SECONDS
    read = unreader.chunk

    def chunk(*args, **kwargs):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BadRequest(f"the request body did not arrive within {BODY_SECONDS:g} s")
        sock.settimeout(remaining)
        try:
            return read(*args, **kwargs)
        except TimeoutError:
            raise BadRequest(f"the request body did not arrive within {BODY_SECONDS:g} s") \
                from None
        finally:
            sock.settimeout(None)

    unreader.chunk = chunk  # this request only: post_request takes it away


def post_request(worker, req, environ, resp):
    unreader = getattr(req, "unreader", None)
    if unreader is not None:
        vars(unreader).pop("chunk", None)
