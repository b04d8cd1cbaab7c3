"""Modelgate's Django project. ``portal.celery_app`` is the Celery app (``portal/celery.py``),
loaded on first use rather than at Django start-up: the web process needs it only to queue
work (``portal.queue``) and for its probes."""


def __getattr__(name: str):
    if name == "celery_app":
        from portal.celery import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
