"""Retraining: every operation, importable from one place (one module a concern).

- ``rules``: create, change, delete rules (contributors; audited; checked as a whole).
- ``conditions``: what a rule's condition finds now, with the evidence for the run.
- ``triggers``: firing (the cooldown and the incident claimed) and sending (retried).
- ``lineage``: a registered version linked to the trigger its run was started by.
"""

from portal.retraining.lineage import link_version, retrained_because
from portal.retraining.rules import create_rule, delete_rule, update_rule
from portal.retraining.targets import webhook_secret
from portal.retraining.triggers import TriggerRetry, evaluate, fire, in_cooldown, send

__all__ = ["TriggerRetry", "create_rule", "delete_rule", "evaluate", "fire", "in_cooldown",
           "link_version", "retrained_because", "send", "update_rule", "webhook_secret"]
