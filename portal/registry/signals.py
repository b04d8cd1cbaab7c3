"""Signals the registry sends for apps above it (which it may not import).

``version_registered`` is sent inside ``register_version``'s transaction, once the row is
saved, with ``version``, ``user`` and ``triggered_by`` (the metadata's retraining trigger
id, or None). A receiver raising a ``DomainError`` refuses the registration: the row is
rolled back and the stored artifact removed, as for any other refusal. The retraining app
links the version to its trigger this way (decision 67).

``alias_moved`` is sent inside the transaction that moves, creates or deletes an alias, with
``alias`` (the row, its version the new one; deleted: ``version`` None), ``version`` and
``user`` (None for a release's move). The releases app re-applies the multi-model endpoints
whose members follow it (decision 68), in the same transaction: the move and their new
generation commit together.
"""

from django.dispatch import Signal

version_registered = Signal()
alias_moved = Signal()
