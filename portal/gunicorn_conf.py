"""gunicorn settings for the portal (``gunicorn -c python:portal.gunicorn_conf portal.wsgi``).

Garbage collection: Django's prefetching leaves cyclic garbage on every list request, and a
full collection walks every object the worker holds — the whole import graph of Django,
DRF, numpy and pandas — taking 100–160 ms every few requests (measured by
``benchmarks/registry_api.py``). Freezing what exists after start-up takes those objects
out of collections, and a higher first threshold makes collections rarer.
"""

import gc
import os

bind = os.environ.get("MODELGATE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("MODELGATE_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
accesslog = "-"
loglevel = os.environ.get("MODELGATE_LOG_LEVEL", "warning").lower()


def post_worker_init(worker):
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
