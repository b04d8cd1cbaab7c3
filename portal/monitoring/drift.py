"""Drift windows: live input distributions from Prometheus against each version's baseline.

A periodic task (``workers.monitoring.compute_drift``) calls ``compute_all``. For every
variant of every served endpoint it asks Prometheus how many inputs fell in each baseline
bin over the model's window (``increase`` of the model server's feature bin counters,
``ops.promql.FEATURE_BIN``), compares them with the baseline profile's counts
(``ops.drift``), and stores the report in ``DriftWindow``. The portal's ``/metrics`` exports the latest reports as gauges,
Prometheus's rules turn them into alerts with ``for:`` durations.

Each member of a multi-model endpoint (decision 68) that has its own metric label is judged
the same way, against the version it serves (``member_windows``): its window is stored under
the endpoint's name with the model as its variant. The models counted together as
``__other__`` (beyond the endpoint's ``top_models`` by traffic) export no feature bins, so
they are not judged; the run's status says how many were left so. The work per endpoint is
bounded by ``top_models``, not by its members: one query for the labels that have bins now,
then one per drift window length among them, at most ``top_models`` windows stored.

Prometheus away: the stored reports stay as they were, the failure is recorded in
``SyncStatus("drift")`` (pages show it), and the gauges go stale after a few intervals so no
alert fires on old data. A feature absent from requests (or a variant with no traffic) has
no counts: its verdict is "insufficient data", never drift.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ops import drift, promql
from ops.prometheus import PrometheusClient, PrometheusUnavailable
from ops.serving.toplabels import OTHER
from portal.monitoring.endpoints import (
    ServedEndpoint,
    ServedMultiModel,
    served_endpoints,
    served_multimodel_endpoints,
)
from portal.monitoring.models import DriftWindow, MonitorSettings, SyncStatus

log = logging.getLogger(__name__)


def client() -> PrometheusClient | None:
    if not settings.MODELGATE_PROMETHEUS_URL:
        return None
    return PrometheusClient(settings.MODELGATE_PROMETHEUS_URL,
                            settings.MODELGATE_PROMETHEUS_TOKEN or None,
                            timeout=settings.MODELGATE_PROMETHEUS_TIMEOUT)


def thresholds_of(served: ServedEndpoint) -> drift.Thresholds:
    return _thresholds(served.settings(), served.model)


def model_thresholds(model) -> drift.Thresholds:
    """``model``'s own drift thresholds (its settings', else the defaults)."""
    return _thresholds(_settings_of(model), model)


def _settings_of(model) -> MonitorSettings:
    found = getattr(model, "monitor_settings", None)
    return found if found is not None else MonitorSettings(model=model)


def _thresholds(options: MonitorSettings, model) -> drift.Thresholds:
    try:
        return drift.Thresholds.from_dict(options.drift)
    except ValueError:
        log.warning("invalid drift thresholds on %s; using the defaults", model)
        return drift.Thresholds()


def baseline_of(version) -> dict[str, dict]:
    """The version's input features that its dataset profiles as numeric (what the model
    server bins); the target and other columns that are no input are left out."""
    profile = (version.dataset.profile if version.dataset_id else None) or {}
    inputs = {f.get("name") for f in version.input_schema or []}
    return {name: p for name, p in (profile.get("features") or {}).items()
            if name in inputs and p.get("kind") == "numeric" and len(p.get("edges") or []) >= 2}


def live_counts(prometheus: PrometheusClient, served: ServedEndpoint, variant: str,
                window: int) -> dict[str, dict[int, float]]:
    """Inputs per feature and bin over the last ``window`` seconds."""
    where = promql.selector(environment=served.environment.name,
                            project=served.environment.project.slug, endpoint=served.endpoint,
                            variant=variant)
    rows = prometheus.query(promql.summed(promql.total(promql.FEATURE_BIN), where,
                                          promql.seconds(window), by="feature, bin",
                                          over=promql.INCREASE))
    return _bins(rows, variant).get(variant, {})


def _bins(rows: list[dict], variant: str = "") -> dict[str, dict[str, dict[int, float]]]:
    """Query rows → inputs by variant (its label, else ``variant``), feature and bin."""
    counts: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        labels = row.get("metric") or {}
        try:
            value = float(row["value"][1])
            index = int(labels["bin"])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if value == value and value >= 0:  # NaN-safe
            counts[labels.get("variant", variant)][labels.get("feature", "")][index] = value
    return counts


def report_for(served: ServedEndpoint, variant: str, live: dict[str, dict[int, float]],
               thresholds: drift.Thresholds) -> drift.DriftReport:
    return report_of(served.variants[variant], live, thresholds)


def report_of(version, live: dict[str, dict[int, float]],
              thresholds: drift.Thresholds) -> drift.DriftReport:
    baseline = baseline_of(version)
    names, base, current, edges, stds = [], [], [], [], []
    for name, profile in baseline.items():
        bins = len(profile["edges"]) - 1
        counts = profile.get("counts") or []
        if len(counts) != bins:
            continue
        names.append(name)
        base.append([float(c) for c in counts])
        seen = live.get(name, {})
        current.append([seen.get(i, 0.0) for i in range(bins)])
        edges.append([float(e) for e in profile["edges"]])
        stds.append(profile.get("std"))
    return drift.compare_histograms(base, current, names, edges=edges, reference_std=stds,
                                    thresholds=thresholds)


def compute_all(now=None) -> int:
    """Recompute every served variant's window, and every multi-model endpoint's members'
    (``member_windows``); returns how many were stored.

    Each endpoint's windows are written in a transaction of their own: one that fails (a
    row the database refuses, a report that cannot be computed) is logged and named in the
    run's status, and the others are still computed. Prometheus away stops the run."""
    prometheus = client()
    if prometheus is None:
        SyncStatus.record("drift", False,
                          "no Prometheus is configured (set MODELGATE_PROMETHEUS_URL)")
        return 0
    now = now or timezone.now()
    stored = members = unlabelled = 0
    failed: list[str] = []
    try:
        for served in served_endpoints():
            try:
                with transaction.atomic():
                    stored += _variant_windows(prometheus, served, now)
            except PrometheusUnavailable:
                raise
            except Exception as e:  # noqa: BLE001 - one endpoint never stops the others
                log.exception("drift of %s in %s not computed", served.endpoint,
                              served.environment)
                failed.append(f"{served.environment.name}/{served.endpoint}: {_said(e)}")
        for served in served_multimodel_endpoints():
            try:
                with transaction.atomic():
                    judged, skipped = member_windows(prometheus, served, now)
            except PrometheusUnavailable:
                raise
            except Exception as e:  # noqa: BLE001 - one endpoint never stops the others
                log.exception("drift of multi-model endpoint %s in %s not computed",
                              served.endpoint.name, served.environment)
                failed.append(f"{served.environment.name}/{served.endpoint.name} "
                              f"(multi-model): {_said(e)}")
                continue
            members += judged
            unlabelled += skipped
    except PrometheusUnavailable as e:
        SyncStatus.record("drift", False, f"drift not computed: {e}")
        return stored + members
    detail = f"{stored} variant windows computed"
    if members or unlabelled:
        detail += (f"; {members} models of multi-model endpoints judged, {unlabelled} not: "
                   f"no label of their own in the window (counted as {OTHER}, whose inputs "
                   "are not binned, or no requests)")
    if failed:
        detail = (f"drift not computed for {len(failed)} endpoint"
                  f"{'s' if len(failed) != 1 else ''}: " + "; ".join(failed[:5])
                  + ("; ..." if len(failed) > 5 else "") + f". {detail}")
    SyncStatus.record("drift", not failed, detail)
    return stored + members


def _variant_windows(prometheus: PrometheusClient, served: ServedEndpoint, now) -> int:
    """Judge each variant of a plan endpoint; returns the windows stored."""
    thresholds = thresholds_of(served)
    window = int(served.settings().drift_window_seconds)
    stored = 0
    for variant, version in served.variants.items():
        if not baseline_of(version):
            continue  # no dataset profile: nothing to compare with
        live = live_counts(prometheus, served, variant, window)
        report = report_for(served, variant, live, thresholds)
        DriftWindow.objects.update_or_create(
            environment=served.environment, endpoint=served.endpoint, variant=variant,
            defaults={"model": served.model, "version": version,
                      "window_seconds": window, "report": report.to_dict(),
                      "error": "", "computed_at": now})
        stored += 1
    return stored


def _said(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).strip()[:200]}"


def _where(served: ServedMultiModel) -> str:
    return promql.selector(environment=served.environment.name,
                           project=served.environment.project.slug, endpoint=served.name)


def _labelled(prometheus: PrometheusClient, served: ServedMultiModel,
              window: int) -> dict[str, float]:
    """The models of ``served`` whose inputs its server binned in the last ``window``
    seconds (those with a label of their own: at most ``top_models`` at a time), each with
    how long it kept its label there: the samples of its longest-lived bin series."""
    rows = prometheus.query(f"max by (variant) (count_over_time("
                            f"{promql.total(promql.FEATURE_BIN)}{{{_where(served)}}}"
                            f"[{promql.seconds(window)}]))")
    found = {}
    for row in rows:
        try:
            found[(row.get("metric") or {}).get("variant", "")] = float(row["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return found


def member_windows(prometheus: PrometheusClient, served: ServedMultiModel,
                   now) -> tuple[int, int]:
    """Judge each member of a multi-model endpoint that has its own label against the
    version it serves; returns (windows stored, members with a baseline not judged for want
    of a label). A member without a dataset profile has nothing to be compared with.

    The windows of models no longer members are deleted (their gauges end, their alerts
    resolve): only members' windows, whose variant is their model's name; a plan endpoint
    of a model named like this endpoint (``mme-...``, from before the prefix was reserved)
    keeps its own. A member that lost its label keeps its window until it is stale.

    When more models than ``top_models`` had a label during the window (the top set is
    chosen every 5 minutes), those that kept theirs longest are judged."""
    DriftWindow.objects.filter(environment=served.environment, endpoint=served.name,
                               variant=F("model__name")) \
        .exclude(variant__in=list(served.members)).delete()
    profiled = {name: (model, version, _settings_of(model))
                for name, (model, version) in served.members.items()
                if version is not None and baseline_of(version)}
    if not profiled:
        return 0, 0
    longest = max(int(options.drift_window_seconds) for _, _, options in profiled.values())
    labelled = _labelled(prometheus, served, longest)
    if OTHER in labelled:  # the server never bins it; said so, never judged
        log.warning("%s exports feature bins as %s; they are not judged", served.name, OTHER)
    # At most top_models: the models that kept their label longest in the window (a model
    # that held a place briefly does not push out one labelled throughout); ties by name.
    ranked = sorted((name for name in profiled if name in labelled and name != OTHER),
                    key=lambda name: (-labelled[name], name))
    judged = {name: profiled[name] for name in ranked[:served.endpoint.top_models]}
    by_window: dict[int, list[str]] = defaultdict(list)
    for name, (_, _, options) in judged.items():
        by_window[int(options.drift_window_seconds)].append(name)
    stored = 0
    for window, names in sorted(by_window.items()):
        live = _bins(prometheus.query(promql.summed(
            promql.total(promql.FEATURE_BIN), _where(served), promql.seconds(window),
            by="variant, feature, bin", over=promql.INCREASE)))
        for name in names:
            model, version, options = judged[name]
            report = report_of(version, live.get(name, {}), _thresholds(options, model))
            DriftWindow.objects.update_or_create(
                environment=served.environment, endpoint=served.name, variant=name,
                defaults={"model": model, "version": version, "window_seconds": window,
                          "report": report.to_dict(), "error": "", "computed_at": now})
            stored += 1
    return stored, len(profiled) - len(judged)
