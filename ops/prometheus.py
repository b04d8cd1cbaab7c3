"""Prometheus configuration written by the portal: scrape targets, rules, checks, reload.

No Django. The portal decides *what* runs where (``Target``, ``EndpointRules``); this
module renders it in Prometheus's formats, has ``promtool`` check every file before it is
used, replaces files atomically (a rejected file never replaces a good one), and asks the
server to reload.

Layout of a managed directory (``write_managed``)::

    prometheus.yml        the main configuration (``main_config``), checked with
                          ``promtool check config``
    targets/modelgate.json  file_sd targets: every model server, with the labels
                          ``environment``, ``project``, ``model`` (a multi-model server:
                          ``multimodel_endpoint``, its name, instead of ``model``);
                          Prometheus re-reads it by itself, no reload needed
    rules/modelgate.yml   recording and alerting rules per endpoint, checked with
                          ``promtool check rules``; a reload makes them live

Series and labels. The model servers export ``modelgate_*`` series labelled ``endpoint``
and ``variant``; the scrape adds ``environment`` (and project, model) from the target. The
portal's own ``/metrics`` exports the drift gauges (``modelgate_drift_*``) with all these
labels itself (scraped with ``honor_labels``). Rules:

- recording ``modelgate:error_rate:ratio_1m`` and ``modelgate:latency_p99:seconds_1m`` per
  environment, project, endpoint and variant (every selector names the project: environment
  names are per project, and a plan endpoint is named after its model);
- alerts ``ModelgateErrorRateHigh`` (critical), ``ModelgateLatencyHigh`` (warning),
  ``ModelgateNoTraffic`` (warning: a variant meant to get traffic got none),
  ``ModelgateServerDown`` (critical), ``ModelgateFeatureDrift`` (warning),
  ``ModelgateFeatureDriftCritical`` and ``ModelgateDatasetDrift`` (critical). Every alert
  carries ``environment``, ``endpoint``, ``variant`` (where the series has one),
  ``project``, ``model`` and ``severity``, so the portal can place it and a rollout can
  tell its candidate's alerts from the stable's.

A multi-model endpoint (``EndpointRules.multimodel``, decision 68) serves many models, its
``variant`` label being the model (or ``__other__``): its alerts carry
``multimodel_endpoint`` and take ``model`` from the series (the drift gauges carry it; the
error and latency alerts copy it from ``variant``), and it has no ``ModelgateNoTraffic``
(no model is meant to get a share of the traffic).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from ops import promql
from ops.exceptions import PermanentError, TransientError

RULES_FILE = "rules/modelgate.yml"
TARGETS_FILE = "targets/modelgate.json"
MAIN_FILE = "prometheus.yml"
_LABEL_VALUE = re.compile(r"^[^\"\\\n]*$")


class PrometheusConfigError(PermanentError):
    """promtool rejected a file (``detail`` holds what it said); nothing was replaced."""

    code = "prometheus_config_invalid"


class PrometheusUnavailable(TransientError):
    """The Prometheus server could not be reached or refused the reload."""

    code = "prometheus_unavailable"


@dataclass(frozen=True)
class Target:
    """One model server to scrape: a plan server names its ``model``, a multi-model server
    its ``multimodel_endpoint`` (its series' ``variant`` names each model)."""

    address: str  # host:port
    environment: str
    project: str
    model: str = ""
    multimodel_endpoint: str = ""

    @property
    def labels(self) -> dict[str, str]:
        labels = {"environment": self.environment, "project": self.project}
        if self.multimodel_endpoint:
            labels["multimodel_endpoint"] = self.multimodel_endpoint
        else:
            labels["model"] = self.model
        return labels


@dataclass(frozen=True)
class EndpointRules:
    """Alert thresholds of one endpoint in one environment (from its model's settings)."""

    environment: str
    endpoint: str
    project: str
    model: str
    max_error_rate: float = 0.05
    max_p99_latency_seconds: float = 1.0
    no_traffic_minutes: int = 10
    for_seconds: int = 60  # how long a condition must hold before an alert fires
    drift_for_seconds: int = 60
    multimodel: str = ""  # a multi-model endpoint's name: ``model`` comes from each series

    def __post_init__(self):
        problems = []
        if not (0 < self.max_error_rate <= 1):
            problems.append("max_error_rate must be in (0, 1]")
        if not (self.max_p99_latency_seconds > 0 and math.isfinite(self.max_p99_latency_seconds)):
            problems.append("max_p99_latency_seconds must be a positive number")
        if int(self.no_traffic_minutes) < 1:
            problems.append("no_traffic_minutes must be at least 1")
        if int(self.for_seconds) < 0 or int(self.drift_for_seconds) < 0:
            problems.append("for durations cannot be negative")
        for name in ("environment", "endpoint", "project", "model", "multimodel"):
            if not _LABEL_VALUE.match(str(getattr(self, name))):
                problems.append(f"{name} cannot hold quotes, backslashes or newlines")
        if problems:
            raise ValueError("invalid alert thresholds: " + "; ".join(problems))


def rule_groups(endpoints: list[EndpointRules]) -> dict:
    """The rule file's content: one group per project, environment and endpoint."""
    groups = []
    for e in sorted(endpoints, key=lambda e: (e.project, e.environment, e.multimodel,
                                              e.endpoint)):
        # Environment names are per project, and a plan endpoint is named after its model
        # (names per project too): the project keeps two projects' same-named endpoints
        # apart. Every series carries it (the target's label, or the portal's gauges).
        where = promql.selector(environment=e.environment, project=e.project,
                                endpoint=e.endpoint)
        by = "environment, project, endpoint, variant"
        static = ({"project": e.project, "multimodel_endpoint": e.multimodel} if e.multimodel
                  else {"project": e.project, "model": e.model})
        per_model = _model_from_variant if e.multimodel else str
        # ``up`` carries only its target's labels (``Target.labels``), never ``endpoint``:
        # a plan server's target names its project and model, a multi-model server's its
        # project and endpoint. (Selecting ``endpoint`` matched nothing: the alert could
        # never fire.) ``endpoint`` is set by the rule, so the alert is the endpoint's.
        scraped = (promql.selector(environment=e.environment, project=e.project,
                                   multimodel_endpoint=e.multimodel)
                   if e.multimodel else
                   promql.selector(environment=e.environment, project=e.project,
                                   model=e.model))
        # How a summary names the place: a multi-model endpoint by its own name and the model.
        place = f"{e.multimodel or e.endpoint} ({e.environment})"
        at = ("{{ $labels.variant }} on " if e.multimodel else "") + place
        feature = "{{ $labels.feature }}" + (" of {{ $labels.variant }}" if e.multimodel else "")
        drifted = f"{promql.DRIFT_VERDICT}{{{where}}}"
        psi = f"{promql.DRIFT_PSI}{{{where}}}"
        duration = promql.seconds(e.for_seconds)
        drift_duration = promql.seconds(e.drift_for_seconds)
        groups.append({
            # Unique per file (promtool refuses a file with two groups of one name): a
            # multi-model endpoint's under multimodel/, so a plan endpoint named like it
            # (a model named mme-..., from before the name was reserved) cannot collide.
            "name": (f"modelgate/{e.project}/{e.environment}/multimodel/{e.multimodel}"
                     if e.multimodel else f"modelgate/{e.project}/{e.environment}/{e.endpoint}"),
            "rules": [
                {"record": promql.ERROR_RATE_1M,
                 "expr": promql.error_rate(where, "1m", by=by)},
                {"record": promql.LATENCY_P99_1M,
                 "expr": promql.p99_latency(where, "1m", by=by)},
                {"alert": "ModelgateErrorRateHigh",
                 "expr": per_model(f"{promql.ERROR_RATE_1M}{{{where}}} > {e.max_error_rate:g}"),
                 "for": duration,
                 "labels": {"severity": "critical", **static},
                 "annotations": {
                     "summary": f"{at}: server errors above "
                                f"{e.max_error_rate:.1%}",
                     "description": "{{ $labels.variant }} answers {{ $value | humanizePercentage }}"
                                    " of requests with a server error."}},
                {"alert": "ModelgateLatencyHigh",
                 "expr": per_model(f"{promql.LATENCY_P99_1M}{{{where}}} > "
                                   f"{e.max_p99_latency_seconds:g}"),
                 "for": duration,
                 "labels": {"severity": "warning", **static},
                 "annotations": {
                     "summary": f"{at}: p99 latency above "
                                f"{e.max_p99_latency_seconds:g} s",
                     "description": "p99 latency of {{ $labels.variant }} is "
                                    "{{ $value | humanizeDuration }}."}},
                {"alert": "ModelgateNoTraffic",
                 "expr": (f"{promql.requests(where, f'{int(e.no_traffic_minutes)}m', by=by)}"
                          f" == 0 and on ({by}) {promql.VARIANT_WEIGHT}{{{where}}} > 0"),
                 "for": f"{int(e.no_traffic_minutes)}m",
                 "labels": {"severity": "warning", **static},
                 "annotations": {
                     "summary": f"{place}: no requests for "
                                f"{int(e.no_traffic_minutes)} minutes",
                     "description": "{{ $labels.variant }} is meant to get traffic and got "
                                    "none; no drift verdict is possible without it."}},
                {"alert": "ModelgateServerDown",
                 "expr": f"{promql.UP}{{{scraped}}} == 0",
                 "for": duration,
                 "labels": {"severity": "critical", "endpoint": e.endpoint, **static},
                 "annotations": {
                     "summary": f"{place}: model server not answering "
                                "scrapes",
                     "description": "{{ $labels.instance }} has not answered Prometheus."}},
                # The verdict (drift needs PSI and significance) decides; the alert's
                # value is the feature's PSI, which is what people want to read.
                {"alert": "ModelgateFeatureDrift",
                 "expr": f"{psi} and on ({by}, feature) ({drifted} == 1)",
                 "for": drift_duration,
                 "labels": {"severity": "warning", **static},
                 "annotations": {
                     "summary": f"{feature} drifted on {place}",
                     "description": "PSI of {{ $labels.feature }} on {{ $labels.variant }} is "
                                    "{{ $value | printf \"%.3f\" }}, above the warning "
                                    "threshold."}},
                {"alert": "ModelgateFeatureDriftCritical",
                 "expr": f"{psi} and on ({by}, feature) ({drifted} == 2)",
                 "for": drift_duration,
                 "labels": {"severity": "critical", **static},
                 "annotations": {
                     "summary": f"{feature} drifted far on {place}",
                     "description": "PSI of {{ $labels.feature }} on {{ $labels.variant }} is "
                                    "{{ $value | printf \"%.3f\" }}, above the critical "
                                    "threshold."}},
                {"alert": "ModelgateDatasetDrift",
                 "expr": (f"{promql.DRIFT_SHARE}{{{where}}} and on ({by}) "
                          f"({promql.DRIFT_DATASET}{{{where}}} == 1)"),
                 "for": drift_duration,
                 "labels": {"severity": "critical", **static},
                 "annotations": {
                     "summary": f"{at}: inputs drifted",
                     "description": "{{ $labels.variant }}: {{ $value | humanizePercentage }} "
                                    "of the features drifted."}},
            ],
        })
        if e.multimodel:
            groups[-1]["rules"] = [r for r in groups[-1]["rules"]
                                   if r.get("alert") != "ModelgateNoTraffic"]
    return {"groups": groups}


def _model_from_variant(expr: str) -> str:
    """A multi-model endpoint's ``variant`` is the model: copied into ``model``, so the
    portal places the alert on it (``__other__`` names no model and places none)."""
    return f'label_replace({expr}, "model", "$1", "variant", "(.+)")'


def file_sd(targets: list[Target]) -> list[dict]:
    """Prometheus file service discovery: one entry per target with its labels."""
    return [{"targets": [t.address], "labels": t.labels}
            for t in sorted(targets, key=lambda t: (t.environment, t.address))]


def main_config(directory: Path, *, scrape_interval: str = "15s",
                evaluation_interval: str = "15s", portal: str | None = None,
                portal_scheme: str = "http", portal_token_file: str | None = None,
                alertmanagers: list[str] | None = None) -> dict:
    """``prometheus.yml`` for a Prometheus the portal manages: the model servers (file_sd),
    the portal's own ``/metrics`` (drift gauges; ``portal`` is its host:port), the rules,
    and optionally Alertmanagers (host:port)."""
    directory = Path(directory)
    scrape = [{"job_name": "modelgate-models",
               "file_sd_configs": [{"files": [str(directory / "targets" / "*.json")],
                                    "refresh_interval": "5s"}]}]
    if portal:
        job = {"job_name": "modelgate-portal", "honor_labels": True, "scheme": portal_scheme,
               "metrics_path": "/metrics", "static_configs": [{"targets": [portal]}]}
        if portal_token_file:
            job["authorization"] = {"type": "Bearer", "credentials_file": portal_token_file}
        scrape.append(job)
    config = {"global": {"scrape_interval": scrape_interval,
                         "evaluation_interval": evaluation_interval},
              "rule_files": [str(directory / "rules" / "*.yml")],
              "scrape_configs": scrape}
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]}
    return config


def dump(obj) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=200)


# -- checking and writing ---------------------------------------------------------------------


def promtool() -> str | None:
    return shutil.which("promtool")


def _check(kind: str, path: Path, tool: str | None) -> None:
    tool = tool or promtool()
    if tool is None:
        raise PrometheusConfigError("promtool is not installed (apt-get install prometheus); "
                                    "files are never used unchecked")
    done = subprocess.run([tool, "check", kind, str(path)], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip().replace(str(path), path.name)
        raise PrometheusConfigError(f"promtool check {kind} rejected {path.name}: {said}")


def check_rules_text(text: str, tool: str | None = None) -> None:
    """Raise ``PrometheusConfigError`` unless promtool accepts ``text`` as a rule file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rules.yml"
        path.write_text(text)
        _check("rules", path, tool)


def _replace(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically; False if it already held exactly that."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
    return True


def write_rules(directory: Path, endpoints: list[EndpointRules],
                tool: str | None = None) -> bool:
    """Check the rules, then replace the rule file; True if it changed (reload needed)."""
    text = dump(rule_groups(endpoints))
    check_rules_text(text, tool)
    return _replace(Path(directory) / RULES_FILE, text)


def write_targets(directory: Path, targets: list[Target]) -> bool:
    return _replace(Path(directory) / TARGETS_FILE,
                    json.dumps(file_sd(targets), indent=2, sort_keys=True) + "\n")


def write_main_config(directory: Path, tool: str | None = None, **options) -> bool:
    """Check and write ``prometheus.yml`` (the rule and target files may be empty)."""
    directory = Path(directory)
    (directory / "rules").mkdir(parents=True, exist_ok=True)
    (directory / "targets").mkdir(parents=True, exist_ok=True)
    text = dump(main_config(directory, **options))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / MAIN_FILE
        path.write_text(text)
        _check("config", path, tool)
    return _replace(directory / MAIN_FILE, text)


def reload(url: str, token: str | None = None, timeout: float = 5.0) -> None:
    """``POST /-/reload`` (Prometheus must run with ``--web.enable-lifecycle``)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = requests.post(f"{url.rstrip('/')}/-/reload", headers=headers, timeout=timeout)
    except requests.RequestException as e:
        raise PrometheusUnavailable(f"cannot reach Prometheus at {url}: {e}") from e
    if answer.status_code != 200:
        raise PrometheusUnavailable(f"Prometheus refused the reload: HTTP {answer.status_code} "
                                    f"{answer.text.strip()[:300]}")


# -- reading ------------------------------------------------------------------------------------


class PrometheusClient:
    """The few read calls the portal makes, each with a timeout; every failure (network,
    HTTP status, a malformed answer) is ``PrometheusUnavailable`` with a plain reason."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def _get(self, path: str, **params) -> dict:
        try:
            answer = self.session.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        except requests.Timeout as e:
            raise PrometheusUnavailable(f"Prometheus at {self.url} did not answer within "
                                        f"{self.timeout:g} s") from e
        except requests.RequestException as e:
            raise PrometheusUnavailable(f"cannot reach Prometheus at {self.url}: "
                                        f"{type(e).__name__}") from e
        try:
            body = answer.json()
        except ValueError as e:
            raise PrometheusUnavailable(f"Prometheus answered HTTP {answer.status_code} "
                                        "without JSON") from e
        if answer.status_code != 200 or body.get("status") != "success":
            raise PrometheusUnavailable(f"Prometheus refused the query: "
                                        f"{body.get('error') or answer.status_code}")
        return body.get("data") or {}

    def query(self, promql: str) -> list[dict]:
        """Instant vector: ``[{"metric": {...}, "value": [ts, "v"]}, ...]``."""
        return list(self._get("/api/v1/query", query=promql).get("result") or [])

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict]:
        """Matrix: ``[{"metric": {...}, "values": [[ts, "v"], ...]}, ...]``."""
        return list(self._get("/api/v1/query_range", query=promql, start=f"{start:.3f}",
                              end=f"{end:.3f}", step=f"{max(step, 1):g}s").get("result") or [])

    def alerts(self) -> list[dict]:
        """Active alerts (pending and firing) as ``/api/v1/alerts`` lists them."""
        return list(self._get("/api/v1/alerts").get("alerts") or [])
