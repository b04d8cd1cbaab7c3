"""What is counted rather than audited, and what is audited on the side of a request.

Counted, in the portal's own metrics (``/metrics``, summed over gunicorn's processes like the
request latencies of ``portal/observability.py``):

- ``modelgate_feedback_rows_total{project}``: A/B outcomes stored (one per prediction id;
  duplicates and refused items are not rows). Feedback arrives in bulk: an audit event per
  row would make the chain as long as the outcome table;
- ``modelgate_explanation_requests_total{project}``: requests for predictions and SHAP
  values of rows (each is an audit event too, ``explanation.request``: they are throttled
  and cost a worker far more than the event);
- ``modelgate_signins_total{outcome}``: ``succeeded``; ``failed``, every failed attempt,
  those refused during a lockout included; ``locked_out``, the attempts that met a lockout
  (the one that began it and those it refused). Counted even when the trail stops
  recording an address's failures (``portal/accounts/signals.py``).

Audited: every request a token makes with its ``approve`` scope (``token.approve_use``, with
the token's prefix, the action and the answer's status). The scope check notes the use on
the request; the event is recorded by ``RequestContextMiddleware`` once the answer is known.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

log = logging.getLogger(__name__)

FEEDBACK_ROWS = Counter("modelgate_feedback_rows_total",
                        "A/B outcomes stored, by project", ["project"])
EXPLANATION_REQUESTS = Counter("modelgate_explanation_requests_total",
                               "Requests to explain rows, by project", ["project"])
SIGNINS = Counter("modelgate_signins_total", "Sign-ins by outcome (succeeded, failed, "
                  "locked_out)", ["outcome"])

APPROVE_USE = "token.approve_use"


def count_feedback(rows: dict, inserted) -> None:
    """Count stored outcomes by project; ``rows`` maps an id to (index, experiment, ...) as
    ``portal.experiments.services._store`` holds them, ``inserted`` the ids it stored."""
    per_project: dict[str, int] = {}
    for text in inserted:
        slug = rows[text][1].deployment.environment.project.slug
        per_project[slug] = per_project.get(slug, 0) + 1
    for slug, n in per_project.items():
        FEEDBACK_ROWS.labels(slug).inc(n)


def explanation_requested(user, version, item, created: bool) -> None:
    """Count a request to explain rows of ``version`` and record it (``item`` is the
    ``InstanceExplanation`` answering it; ``created`` False when the same rows were asked
    before)."""
    from portal.audit import services as audit

    project = version.model.project
    EXPLANATION_REQUESTS.labels(project.slug).inc()
    audit.record(user, "explanation.request", version, project_id=project.pk,
                 changes={"explanation": item.pk, "rows": len(item.rows or []),
                          "new": created})


def note_scope_use(request, view, scope: str) -> None:
    """Called by the token scope check when it lets a request through: a use of the
    ``approve`` scope is recorded once the request is answered (``record_scope_use``)."""
    if scope != "approve":
        return
    token = getattr(request, "auth", None)
    action = getattr(view, "action", None) or request.method.lower()
    name = getattr(view, "basename", None) or type(view).__name__
    # DRF's request wraps Django's, which is the one the middleware holds.
    django_request = getattr(request, "_request", request)
    django_request._modelgate_scope_use = (token, f"{name}.{action}")


def record_scope_use(request, response) -> None:
    use = getattr(request, "_modelgate_scope_use", None)
    if use is None:
        return
    from portal.audit import services as audit

    token, action = use
    user = getattr(request, "user", None)
    changes = {"prefix": token.prefix, "action": action, "method": request.method,
               "path": request.path[:200], "status": response.status_code}
    try:
        audit.record(user, APPROVE_USE, token, changes=changes,
                     object_repr=f"token {token.name} ({token.prefix}…) of {token.user}")
    except Exception:  # the action is done and answered: failing the answer undoes nothing
        log.exception("could not record %s in the audit trail: %s", APPROVE_USE, changes)
