"""Keep a managed Prometheus in step with what runs: scrape targets and rules.

With ``MODELGATE_PROMETHEUS_CONFIG_DIR`` set, ``sync`` (a periodic task, and the demo at
start) writes the file_sd targets of every local model server and the rules of every served
endpoint with its model's thresholds, checks the rules with promtool, and reloads
Prometheus when they changed. Multi-model servers (decision 68) are among them: their
targets are labelled with the endpoint's name (``multimodel_endpoint``), their rules take
the default error and latency thresholds (``MonitorSettings``' defaults: the members' own
differ, and one rule per member would grow with the members) and each member's drift alert
its model's drift thresholds, which the drift task applied. A rule file promtool rejects is never loaded: the previous
one stays, and the error is recorded in ``SyncStatus("prometheus-rules")`` for the pages.

``export_rules`` gives the same rules as text for a Prometheus managed elsewhere
(``manage.py export_prometheus_rules``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from ops import prometheus
from ops.prometheus import EndpointRules, PrometheusConfigError, PrometheusUnavailable, Target
from portal.monitoring.endpoints import (
    ServedEndpoint,
    ServedMultiModel,
    served_endpoints,
    served_multimodel_endpoints,
)
from portal.monitoring.models import MonitorSettings, SyncStatus

log = logging.getLogger(__name__)
JOB = "prometheus-rules"


def rules_for(served: ServedEndpoint) -> EndpointRules:
    options = served.settings()
    return EndpointRules(
        environment=served.environment.name, endpoint=served.endpoint,
        project=served.environment.project.slug, model=served.model.name,
        max_error_rate=options.max_error_rate,
        max_p99_latency_seconds=options.max_p99_latency_seconds,
        no_traffic_minutes=options.no_traffic_minutes,
        for_seconds=settings.MODELGATE_ALERT_FOR_SECONDS,
        drift_for_seconds=settings.MODELGATE_DRIFT_FOR_SECONDS)


def multimodel_rules_for(served: ServedMultiModel) -> EndpointRules:
    defaults = MonitorSettings()
    return EndpointRules(
        environment=served.environment.name, endpoint=served.name,
        project=served.environment.project.slug, model="",
        multimodel=served.endpoint.name, max_error_rate=defaults.max_error_rate,
        max_p99_latency_seconds=defaults.max_p99_latency_seconds,
        no_traffic_minutes=defaults.no_traffic_minutes,
        for_seconds=settings.MODELGATE_ALERT_FOR_SECONDS,
        drift_for_seconds=settings.MODELGATE_DRIFT_FOR_SECONDS)


def multimodel_target(served: ServedMultiModel) -> Target:
    return Target(served.address, served.environment.name, served.environment.project.slug,
                  multimodel_endpoint=served.endpoint.name)


def export_rules(environments=None) -> str:
    return prometheus.dump(prometheus.rule_groups(
        [rules_for(s) for s in served_endpoints(environments)]
        + [multimodel_rules_for(s) for s in served_multimodel_endpoints(environments)]))


def sync() -> dict:
    """Write targets and rules into the managed directory and reload if needed."""
    directory = settings.MODELGATE_PROMETHEUS_CONFIG_DIR
    if not directory:
        return {"managed": False}
    directory = Path(directory)
    served = served_endpoints()
    multimodel = served_multimodel_endpoints()
    targets = [Target(s.address, s.environment.name, s.environment.project.slug, s.model.name)
               for s in served if s.address]
    targets += [multimodel_target(s) for s in multimodel if s.address]
    rules = []
    for s in served:
        try:
            rules.append(rules_for(s))
        except ValueError as e:
            log.warning("skipping the rules of %s: %s", s.model, e)
    for s in multimodel:
        try:
            rules.append(multimodel_rules_for(s))
        except ValueError as e:
            log.warning("skipping the rules of multi-model endpoint %s: %s", s.endpoint, e)
    result = {"managed": True, "targets": len(targets), "endpoints": len(rules)}
    prometheus.write_targets(directory, targets)
    last = SyncStatus.objects.filter(job=JOB).first()
    try:
        changed = prometheus.write_rules(directory, rules)
    except PrometheusConfigError as e:
        SyncStatus.record(JOB, False, str(e))
        return {**result, "error": str(e)}
    # A reload that failed last time is tried again even when the file did not change.
    if (changed or (last is not None and not last.ok)) and settings.MODELGATE_PROMETHEUS_URL:
        try:
            prometheus.reload(settings.MODELGATE_PROMETHEUS_URL,
                              settings.MODELGATE_PROMETHEUS_TOKEN or None)
        except PrometheusUnavailable as e:
            SyncStatus.record(JOB, False, f"rules written but not loaded: {e}")
            return {**result, "changed": changed, "error": str(e)}
    SyncStatus.record(JOB, True, f"{len(targets)} targets, rules for {len(rules)} endpoints")
    return {**result, "changed": changed}
