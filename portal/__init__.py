"""Modelgate's Django project. The Celery app is ``portal.celery.app`` (``celery -A portal``),
imported only where it is used, not at Django start-up: the web process needs it only to
queue work (``portal.queue``) and for its probes."""
