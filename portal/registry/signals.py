"""Signals the registry sends for apps above it (which it may not import).

``version_registered`` is sent inside ``register_version``'s transaction, once the row is
saved, with ``version``, ``user`` and ``triggered_by`` (the metadata's retraining trigger
id, or None). A receiver raising a ``DomainError`` refuses the registration: the row is
rolled back and the stored artifact removed, as for any other refusal. The retraining app
links the version to its trigger this way (decision 67).
"""

from django.dispatch import Signal

version_registered = Signal()
