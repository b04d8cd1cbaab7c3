"""The Amazon SageMaker backend: one real-time SageMaker endpoint per serving plan.

How a plan maps onto SageMaker (names are sanitised to SageMaker's ``[a-zA-Z0-9](-*[a-zA-Z0-9])*``,
at most 63 characters; a name that had to change gets a short hash of the original so two
endpoints never collide):

- **Endpoint** ``<endpoint>``, tagged ``modelgate:endpoint`` (the plan's own name) and
  ``modelgate:generation`` (the generation it serves now; read back by ``observe``).
- **EndpointConfig** ``<base>-g<generation>`` per plan generation that changes the *set* of
  variants: one ProductionVariant per live variant, ``VariantName`` = the plan's variant
  name, ``InitialVariantWeight`` = its normalised weight, ``InitialInstanceCount`` =
  ``max(replicas, initial_instance_count)``, ``InstanceType`` = ``instance_type``.
  ``<base>`` is the endpoint name, cut to 40 characters (with a hash) when longer.
- **Model** ``<base>-v<version_id>-<digest8>`` per version, with the model-server image and
  ``ModelDataUrl`` = ``s3://<bucket>/<prefix>/<base>/<model>/model.tar.gz``. The tarball
  holds the artifact (``artifact.<suffix>``) and a ``plan.json`` serving only that variant
  (weight 1, generation 1, the artifact as a path relative to the plan), so the container
  finds both under ``/opt/ml/model``. ``digest8`` is a hash of that ``plan.json`` (and of
  the prediction-id key in the container's environment, when there is one): a Model is
  never changed after creation, and the same name always means the same content. The
  inner plan keeps the plan's variant name, so the container answers as ``stable`` or
  ``candidate`` like every other backend; a version that comes back under the other name
  in a later rollout gets a second Model. Every artifact is copied from its ``file://`` or
  ``s3://`` uri and its sha256 checked against the plan before anything is created.

Converging (``apply``): the same plan twice makes no changing call. A change of weights
or replica counts of the variants already deployed is one
``UpdateEndpointWeightsAndCapacities``; a change of the set of variants (a canary adds the
candidate, promote or rollback removes one) creates the generation's EndpointConfig and
calls ``UpdateEndpoint``. On AWS that is always what happens: SageMaker swaps the
configuration in place and the endpoint keeps serving. While SageMaker is still
``Creating`` or ``Updating``, a plan that needs a further change raises
``BackendUnavailable`` (retry later); a ``Failed`` endpoint raises ``BackendError``.

**Test emulators only:** moto's server does not implement ``UpdateEndpoint`` (it answers an
HTML 500). When the API at ``endpoint_url`` answers that way *and* the environment's
settings say ``allow_recreate=True``, the endpoint is deleted and created again with the
new configuration, which on a real endpoint would mean downtime. Without the setting the
plan is refused with ``BackendError``. With no ``endpoint_url`` (real AWS) the fallback can
never trigger, whatever the settings say.

Not supported: shadow variants (refused with ``BackendError``; SageMaker's
``ShadowProductionVariants`` would fit, but the emulator ignores them, so nothing could test
them). ``sticky`` plans are accepted, but SageMaker splits traffic per request: callers who
need a unit to stay on one variant pass ``TargetVariant`` to ``InvokeEndpoint``.

``apply`` does not wait for SageMaker (creating an endpoint takes minutes) unless
``ready_timeout`` is set; it returns what it observes, with the calls it made in
``extra["actions"]``. Older EndpointConfigs and Models of an endpoint stay until
``delete``. Credentials come from the process environment (the usual boto3 chain:
variables, profile, instance role), never from the environment's settings.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import re
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from ops.analysis import CloudWatchAnalyzer
from ops.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    ObservedState,
    ObservedVariant,
)
from ops.exceptions import OpsError, PermanentError, StorageError
from ops.plan import ServingPlan, Variant
from ops.serving.ids import KEY_ENV
from ops.storage import CHUNK, S3ArtifactStore

log = logging.getLogger("ops.backends.sagemaker")

NAME_LIMIT = 63
BASE_LIMIT = 40  # leaves room for "-v<version>-<digest8>" and "-g<generation>"
_VALID_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_MODEL_SUFFIX = re.compile(r"-v(\d+)-[0-9a-f]{8}$")
_CONFIG_SUFFIX = re.compile(r"-g(\d+)$")
_TAG_VALUE_UNSAFE = re.compile(r"[^\w.:/=+\-@ ]")

ENDPOINT_TAG = "modelgate:endpoint"
GENERATION_TAG = "modelgate:generation"
OWNER_TAG = "modelgate:owner"  # the environment an endpoint belongs to
VERSION_TAG = "modelgate:version-id"
VARIANT_TAG = "modelgate:variant"
SHA256_TAG = "modelgate:sha256"

PLAN_MEMBER = "plan.json"
TARBALL = "model.tar.gz"
IN_SERVICE = "InService"
BUSY = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
BROKEN = frozenset({"Failed", "OutOfService", "UpdateRollbackFailed"})
_WEIGHT_TOLERANCE = 1e-6

# Error codes AWS uses for "slow down" or "try again", whatever the HTTP status.
_TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "SlowDown", "PriorRequestNotComplete", "RequestTimeout", "RequestTimeoutException",
    "InternalFailure", "InternalError", "InternalServerError", "ServiceUnavailable",
    "ServiceUnavailableException", "EC2ThrottledException", "BandwidthLimitExceeded",
})
_CREDENTIAL_SETTINGS = frozenset({
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "access_key",
    "secret_key", "session_token", "profile", "profile_name", "credentials",
})


@dataclass(frozen=True)
class _Slot:
    """One ProductionVariant as the plan wants it or as SageMaker has it."""

    variant: str
    model: str
    instance_type: str | None
    count: int | None
    weight: float

    def shape(self) -> tuple:
        return (self.variant, self.model, self.instance_type)


class SageMakerBackend(Backend):
    """Converges one SageMaker endpoint per plan; see the module docstring for the mapping."""

    kind = "sagemaker"

    PROJECT_SETTINGS = {"type": "object", "properties": {
        # Instance counts are the operator's (the account's bill), not a project's.
        "instance_type": {"type": "string"},
        "analysis": {"enum": ["cloudwatch", "prometheus"]},
        "latency_stat": {"enum": ["p99", "p90", "p50", "Maximum", "Average"]},
    }}

    def __init__(self, region: str | None = None, role_arn: str | None = None,
                 image_uri: str | None = None, instance_type: str = "ml.m5.large",
                 bucket: str | None = None, prefix: str = "modelgate",
                 endpoint_url: str | None = None, initial_instance_count: int = 1,
                 allow_recreate: bool = False, max_attempts: int = 3,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 ready_timeout: float = 0.0, poll_interval: float = 15.0,
                 analysis: str = "cloudwatch", latency_stat: str = "p99",
                 prediction_key: str | None = None, owner: str | None = None, **extra):
        """Settings come from the environment's JSON settings.

        ``endpoint_url`` points every client at an emulator (tests: a moto server);
        ``allow_recreate`` lets a test emulator that lacks ``UpdateEndpoint`` recreate the
        endpoint instead (never used against AWS); ``ready_timeout`` > 0 makes ``apply``
        wait that long for ``InService``, polling every ``poll_interval`` seconds;
        ``prediction_key`` (given by the portal) the key the containers sign prediction ids
        with, set in the model's container environment (SageMaker has no other way in;
        ``DescribeModel`` shows it to principals allowed to call it).
        """
        credentials = sorted(_CREDENTIAL_SETTINGS.intersection(k.lower() for k in extra))
        if credentials:
            raise BackendError("AWS credentials come from the process environment, never from "
                               f"an environment's settings; remove {', '.join(credentials)}")
        missing = [name for name, value in (("region", region), ("role_arn", role_arn),
                                            ("image_uri", image_uri), ("bucket", bucket))
                   if not value]
        if missing:
            raise BackendError("the sagemaker backend needs these settings: "
                               + ", ".join(missing))
        if int(initial_instance_count) < 1:
            raise BackendError("initial_instance_count must be at least 1")
        if analysis not in ("cloudwatch", "prometheus"):
            raise BackendError(f"analysis must be cloudwatch or prometheus, not {analysis!r}")
        if extra:
            log.info("sagemaker backend: ignoring unknown settings %s", sorted(extra))
        self.region = region
        self.role_arn = role_arn
        self.image_uri = image_uri
        self.instance_type = instance_type
        self.bucket = bucket
        self.prefix = (prefix or "").strip("/")
        self.endpoint_url = endpoint_url
        self.initial_instance_count = int(initial_instance_count)
        self.allow_recreate = bool(allow_recreate)
        self.ready_timeout = float(ready_timeout)
        self.poll_interval = float(poll_interval)
        self.analysis = analysis
        self.latency_stat = latency_stat
        self.prediction_key = prediction_key
        self.owner = owner  # tags the endpoint; another owner's endpoint is never touched

        # Few retries: the rollout worker retries a BackendUnavailable itself, with a bound.
        self._config = Config(retries={"max_attempts": int(max_attempts), "mode": "standard"},
                              connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._s3_client = None
        self._s3_lock = threading.Lock()
        try:
            self._session = boto3.session.Session(region_name=region)
            self._sagemaker = self._session.client("sagemaker", endpoint_url=endpoint_url,
                                                   config=self._config)
        except (BotoCoreError, ValueError) as e:
            raise BackendError(f"cannot build a SageMaker client: {e}") from e

    @property
    def _s3(self):
        """The S3 client, built on first use (~0.1 s): observing never needs it."""
        with self._s3_lock:  # a boto3 session must not build two clients at once
            if self._s3_client is None:
                # An emulator on an IP address or localhost has no per-bucket host names.
                config = self._config.merge(Config(s3={"addressing_style": "path"})) \
                    if self.endpoint_url else self._config
                try:
                    self._s3_client = self._session.client(
                        "s3", endpoint_url=self.endpoint_url, config=config)
                except (BotoCoreError, ValueError) as e:
                    raise BackendError(f"cannot build an S3 client: {e}") from e
            return self._s3_client

    # -- names ------------------------------------------------------------------------------

    def _owned(self, endpoint: str) -> str:
        # Endpoint names are one namespace per account and region: the owner in the name
        # keeps two projects' models of one name apart.
        return f"{endpoint}-{self.owner}" if self.owner else endpoint

    def endpoint_name(self, endpoint: str) -> str:
        """The SageMaker endpoint name of a plan's endpoint."""
        return _sagemaker_name(self._owned(endpoint), NAME_LIMIT)

    def _base(self, endpoint: str) -> str:
        return _sagemaker_name(self._owned(endpoint), BASE_LIMIT)

    def _config_name(self, endpoint: str, generation: int) -> str:
        return f"{self._base(endpoint)}-g{int(generation)}"

    def _model_name(self, endpoint: str, container_plan: ServingPlan) -> str:
        variant = container_plan.variants[0]
        content = container_plan.to_json()
        if self.prediction_key:  # in the container's environment: part of the Model too
            content += "\0" + self.prediction_key
        digest = hashlib.sha256(content.encode()).hexdigest()[:8]
        return f"{self._base(endpoint)}-v{int(variant.version_id)}-{digest}"

    def _s3_key(self, endpoint: str, model: str) -> str:
        key = f"{self._base(endpoint)}/{model}/{TARBALL}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def _s3_folder(self, endpoint: str) -> str:
        folder = f"{self._base(endpoint)}/"
        return f"{self.prefix}/{folder}" if self.prefix else folder

    def invocation_url(self, endpoint: str) -> str:
        name = self.endpoint_name(endpoint)
        host = self.endpoint_url or f"https://runtime.sagemaker.{self.region}.amazonaws.com"
        return f"{host.rstrip('/')}/endpoints/{name}/invocations"

    def analyzer(self):
        if self.analysis == "prometheus":
            return None
        return CloudWatchAnalyzer(self._client("cloudwatch"), self.endpoint_name,
                                  latency_stat=self.latency_stat)

    def smoke(self, endpoint: str, variant: str, rows: list[list[float]], count: int) -> int:
        """Invokes one production variant directly (``TargetVariant``), as blue/green's
        check needs: the idle candidate gets requests no user sent."""
        runtime = self._client("sagemaker-runtime")
        body = json.dumps({"instances": rows}).encode()
        succeeded = 0
        for _ in range(count):
            try:
                runtime.invoke_endpoint(EndpointName=self.endpoint_name(endpoint),
                                        TargetVariant=variant, Body=body,
                                        ContentType="application/json",
                                        Accept="application/json")
            except (BotoCoreError, ClientError) as e:
                log.info("smoke request to %s/%s failed: %s", endpoint, variant, e)
                continue
            succeeded += 1
        return succeeded

    def _client(self, service: str):
        try:
            with self._s3_lock:  # a boto3 session must not build two clients at once
                return self._session.client(service, endpoint_url=self.endpoint_url,
                                            config=self._config)
        except (BotoCoreError, ValueError) as e:
            raise BackendError(f"cannot build a {service} client: {e}") from e

    # -- the contract -----------------------------------------------------------------------

    def apply(self, plan: ServingPlan) -> ObservedState:
        """Converge the endpoint to ``plan``; ``extra["actions"]`` lists the changing calls."""
        _check_plan(plan)
        name = self.endpoint_name(plan.endpoint)
        packages = {v.name: _container_plan(plan.endpoint, v) for v in plan.variants}
        desired = self._desired_slots(plan, packages)
        config_name = self._config_name(plan.endpoint, plan.generation)
        actions: list[str] = []

        endpoint = self._call(self._sagemaker, "describe_endpoint", missing_ok=True,
                              EndpointName=name)
        if endpoint is not None:
            self._check_owner(endpoint)
            status = endpoint["EndpointStatus"]
            if status in BROKEN:
                raise BackendError(
                    f"SageMaker endpoint {name} is {status}"
                    + (f": {endpoint['FailureReason']}" if endpoint.get("FailureReason") else "")
                    + "; delete it and apply the plan again")
            deployed = self._deployed_slots(endpoint)
            if deployed is not None and _shapes(deployed) == _shapes(desired):
                self._converge_weights(endpoint, deployed, desired, actions)
                self._tag_generation(endpoint, plan.generation, actions)
                return self._finish(plan, actions)
            if status in BUSY:
                pending = (endpoint.get("PendingDeploymentSummary") or {}).get(
                    "EndpointConfigName")
                if pending != config_name:
                    raise BackendUnavailable(
                        f"SageMaker endpoint {name} is {status}; the plan can be applied "
                        "once it is InService")
                self._tag_generation(endpoint, plan.generation, actions)
                return self._finish(plan, actions)  # already moving to this very config

        self._ensure_config(plan, config_name, desired, packages, endpoint, actions)
        if endpoint is None:
            self._call(self._sagemaker, "create_endpoint", EndpointName=name,
                       EndpointConfigName=config_name, Tags=self._endpoint_tags(plan))
            actions.append(f"create_endpoint {name} ({config_name})")
        else:
            self._switch_config(endpoint, plan, config_name, actions)
        return self._finish(plan, actions)

    def observe(self, endpoint: str) -> ObservedState:
        name = self.endpoint_name(endpoint)
        described = self._call(self._sagemaker, "describe_endpoint", missing_ok=True,
                               EndpointName=name)
        if described is None:
            return ObservedState(endpoint=endpoint, exists=False)
        if self._foreign(described):
            return ObservedState(endpoint=endpoint, exists=True, ready=False,
                                 detail=f"SageMaker endpoint {name} belongs to another "
                                        "environment")
        status = described["EndpointStatus"]
        config_name = described.get("EndpointConfigName", "")
        config = self._call(self._sagemaker, "describe_endpoint_config", missing_ok=True,
                            EndpointConfigName=config_name) or {}
        configured = {pv["VariantName"]: pv for pv in config.get("ProductionVariants", [])}
        live = described.get("ProductionVariants") or []

        def current_weight(pv: dict) -> float:
            # moto leaves CurrentWeight out when the configured weight was 0
            fallback = configured.get(pv["VariantName"], {}).get("InitialVariantWeight", 1.0)
            return float(pv.get("CurrentWeight", fallback))

        total = sum(current_weight(pv) for pv in live)
        variants = []
        for pv in live:
            model = configured.get(pv["VariantName"], {}).get("ModelName", "")
            version = _MODEL_SUFFIX.search(model)
            replicas = int(pv.get("CurrentInstanceCount", pv.get("DesiredInstanceCount", 0)))
            variants.append(ObservedVariant(
                name=pv["VariantName"], version_id=int(version.group(1)) if version else 0,
                weight=round(current_weight(pv) / total, 6) if total > 0 else 0.0,
                ready=status == IN_SERVICE and replicas >= 1, replicas=replicas))
        generation = self._generation(described["EndpointArn"], config_name)
        detail = status + (f": {described['FailureReason']}"
                           if described.get("FailureReason") else "")
        return ObservedState(
            endpoint=endpoint, exists=True, generation=generation, ready=status == IN_SERVICE,
            variants=tuple(variants), url=self.invocation_url(endpoint), detail=detail,
            extra={
                "status": status,
                "sagemaker_endpoint": name,
                "endpoint_config": config_name,
                "models": {n: pv.get("ModelName") for n, pv in configured.items()},
                "desired_weights": {pv["VariantName"]: pv.get("DesiredWeight") for pv in live},
            })

    def delete(self, endpoint: str) -> None:
        """Delete the endpoint, its configs, its models and their S3 tarballs."""
        name, base = self.endpoint_name(endpoint), self._base(endpoint)
        described = self._call(self._sagemaker, "describe_endpoint", missing_ok=True,
                               EndpointName=name)
        if described is not None:
            self._check_owner(described)
        if described is not None and described["EndpointStatus"] != "Deleting":
            self._call(self._sagemaker, "delete_endpoint", missing_ok=True, EndpointName=name)
        # Anchored patterns: endpoint "churn" must never sweep up "churn-eu-g1".
        config_pattern = re.compile(rf"^{re.escape(base)}-g\d+$")
        for config in self._list("list_endpoint_configs", "EndpointConfigs", NameContains=base):
            if config_pattern.match(config["EndpointConfigName"]):
                self._call(self._sagemaker, "delete_endpoint_config", missing_ok=True,
                           EndpointConfigName=config["EndpointConfigName"])
        model_pattern = re.compile(rf"^{re.escape(base)}-v\d+-[0-9a-f]{{8}}$")
        for model in self._list("list_models", "Models", NameContains=base):
            if model_pattern.match(model["ModelName"]):
                self._call(self._sagemaker, "delete_model", missing_ok=True,
                           ModelName=model["ModelName"])
        self._delete_tarballs(endpoint)

    # -- apply, step by step ----------------------------------------------------------------

    def _desired_slots(self, plan: ServingPlan,
                       packages: dict[str, ServingPlan]) -> list[_Slot]:
        weights = plan.weights()
        return [_Slot(variant=v.name, model=self._model_name(plan.endpoint, packages[v.name]),
                      instance_type=self.instance_type,
                      count=max(int(v.replicas), self.initial_instance_count),
                      weight=round(weights[v.name], 6))
                for v in plan.variants]

    def _deployed_slots(self, endpoint: dict) -> list[_Slot] | None:
        """The endpoint's variants: models and types from its config, weights from itself."""
        config = self._call(self._sagemaker, "describe_endpoint_config", missing_ok=True,
                            EndpointConfigName=endpoint["EndpointConfigName"])
        if config is None:
            return None  # someone deleted it: rebuild from this generation's config
        live = {pv["VariantName"]: pv for pv in endpoint.get("ProductionVariants") or []}
        slots = []
        for pv in config["ProductionVariants"]:
            runtime = live.get(pv["VariantName"], {})
            slots.append(_Slot(
                variant=pv["VariantName"], model=pv["ModelName"],
                instance_type=pv.get("InstanceType"),
                count=runtime.get("DesiredInstanceCount", pv.get("InitialInstanceCount")),
                weight=float(runtime.get("DesiredWeight", pv.get("InitialVariantWeight", 1.0)))))
        return slots

    def _converge_weights(self, endpoint: dict, deployed: list[_Slot], desired: list[_Slot],
                          actions: list[str]) -> None:
        if _same_traffic(deployed, desired):
            return
        name = endpoint["EndpointName"]
        live = {pv["VariantName"] for pv in endpoint.get("ProductionVariants") or []}
        if endpoint["EndpointStatus"] in BUSY:
            if live != {s.variant for s in desired}:
                return  # still switching to this config; its weights are the plan's
            raise BackendUnavailable(f"SageMaker endpoint {name} is "
                                     f"{endpoint['EndpointStatus']}; weights can change once "
                                     "it is InService")
        self._call(self._sagemaker, "update_endpoint_weights_and_capacities",
                   EndpointName=name,
                   DesiredWeightsAndCapacities=[
                       {"VariantName": s.variant, "DesiredWeight": s.weight,
                        "DesiredInstanceCount": s.count} for s in desired])
        actions.append("update_endpoint_weights_and_capacities " + ", ".join(
            f"{s.variant}={s.weight:g}x{s.count}" for s in desired))

    def _ensure_config(self, plan: ServingPlan, config_name: str, desired: list[_Slot],
                       packages: dict[str, ServingPlan], endpoint: dict | None,
                       actions: list[str]) -> None:
        existing = self._call(self._sagemaker, "describe_endpoint_config", missing_ok=True,
                              EndpointConfigName=config_name)
        if existing is not None:
            found = [_Slot(pv["VariantName"], pv["ModelName"], pv.get("InstanceType"),
                           pv.get("InitialInstanceCount"),
                           float(pv.get("InitialVariantWeight", 1.0)))
                     for pv in existing["ProductionVariants"]]
            if _shapes(found) == _shapes(desired) and _same_traffic(found, desired):
                return  # a retry after a crash: the config is already there
            if endpoint is not None and endpoint.get("EndpointConfigName") == config_name:
                raise BackendError(
                    f"endpoint {endpoint['EndpointName']} serves config {config_name} with "
                    f"other variants: generation {plan.generation} of {plan.endpoint} was "
                    "already used for a different plan; apply it with a new generation")
            # Left over from an earlier plan of this generation and used by nothing now.
            self._call(self._sagemaker, "delete_endpoint_config", missing_ok=True,
                       EndpointConfigName=config_name)
            actions.append(f"delete_endpoint_config {config_name} (stale, other variants)")
        self._ensure_models(plan, desired, packages, actions)
        self._call(
            self._sagemaker, "create_endpoint_config", EndpointConfigName=config_name,
            ProductionVariants=[
                {"VariantName": s.variant, "ModelName": s.model,
                 "InitialInstanceCount": s.count, "InstanceType": s.instance_type,
                 "InitialVariantWeight": s.weight} for s in desired],
            Tags=[_tag(ENDPOINT_TAG, plan.endpoint), _tag(GENERATION_TAG, plan.generation)])
        actions.append(f"create_endpoint_config {config_name}")

    def _ensure_models(self, plan: ServingPlan, desired: list[_Slot],
                       packages: dict[str, ServingPlan], actions: list[str]) -> None:
        """Create the Models the plan needs; every artifact is verified before any is made."""
        missing = [s for s in desired
                   if self._call(self._sagemaker, "describe_model", missing_ok=True,
                                 ModelName=s.model) is None]
        if not missing:
            return
        with tempfile.TemporaryDirectory(prefix="modelgate-sagemaker-") as work:
            tarballs = {s.model: self._package(plan.variant(s.variant), packages[s.variant],
                                               Path(work)) for s in missing}
            for slot in missing:
                variant = plan.variant(slot.variant)
                key = self._s3_key(plan.endpoint, slot.model)
                with open(tarballs[slot.model], "rb") as body:  # one PUT: at most 5 GB
                    self._call(self._s3, "put_object", Bucket=self.bucket, Key=key, Body=body,
                               ContentType="application/gzip",
                               Metadata={"artifact-sha256": variant.sha256.lower()})
                self._call(
                    self._sagemaker, "create_model", ModelName=slot.model,
                    ExecutionRoleArn=self.role_arn,
                    PrimaryContainer={"Image": self.image_uri,
                                      "ModelDataUrl": f"s3://{self.bucket}/{key}",
                                      "Mode": "SingleModel",
                                      "Environment": ({KEY_ENV: self.prediction_key}
                                                      if self.prediction_key else {})},
                    Tags=[_tag(ENDPOINT_TAG, plan.endpoint),
                          _tag(VERSION_TAG, variant.version_id),
                          _tag(VARIANT_TAG, variant.name),
                          _tag(SHA256_TAG, variant.sha256.lower())])
                actions.append(f"create_model {slot.model} (s3://{self.bucket}/{key})")

    def _switch_config(self, endpoint: dict, plan: ServingPlan, config_name: str,
                       actions: list[str]) -> None:
        name = endpoint["EndpointName"]
        try:
            self._sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config_name)
        except ClientError as e:
            if not self._emulator_lacks_operation(e):
                raise _translate(e, "update_endpoint") from e
            if not self.allow_recreate:
                raise BackendError(
                    f"the SageMaker API at {self.endpoint_url} does not implement "
                    "UpdateEndpoint (a test emulator?); set allow_recreate=True in the "
                    "environment's settings to delete and recreate the endpoint instead "
                    "(emulators only: on AWS UpdateEndpoint is always used)") from e
            log.warning("the SageMaker API at %s lacks UpdateEndpoint: recreating endpoint %s "
                        "with %s (allow_recreate; test emulators only)",
                        self.endpoint_url, name, config_name)
            self._call(self._sagemaker, "delete_endpoint", EndpointName=name)
            self._call(self._sagemaker, "create_endpoint", EndpointName=name,
                       EndpointConfigName=config_name, Tags=self._endpoint_tags(plan))
            actions.append(f"recreate_endpoint {name} ({config_name}): the emulator lacks "
                           "UpdateEndpoint, allow_recreate is set")
            return
        except BotoCoreError as e:
            raise _translate(e, "update_endpoint") from e
        actions.append(f"update_endpoint {name} ({config_name})")
        self._tag_generation(endpoint, plan.generation, actions)

    def _tag_generation(self, endpoint: dict, generation: int, actions: list[str]) -> None:
        arn = endpoint["EndpointArn"]
        if self._generation(arn, None) == generation:
            return
        # AddTags overwrites a key on AWS (moto appends; _generation reads the last one).
        self._call(self._sagemaker, "add_tags", ResourceArn=arn,
                   Tags=[_tag(GENERATION_TAG, generation)])
        actions.append(f"tag generation {generation}")

    def _endpoint_tags(self, plan: ServingPlan) -> list[dict]:
        owner = [_tag(OWNER_TAG, self.owner)] if self.owner else []
        return [_tag(ENDPOINT_TAG, plan.endpoint), _tag(GENERATION_TAG, plan.generation),
                *owner]

    def _foreign(self, described: dict) -> bool:
        """Whether the endpoint is tagged for another environment (endpoint names are one
        namespace per account and region: two projects' models of one name meet there)."""
        if not self.owner:
            return False
        tags = self._call(self._sagemaker, "list_tags",
                          ResourceArn=described["EndpointArn"]).get("Tags", [])
        owners = [t["Value"] for t in tags if t["Key"] == OWNER_TAG]
        return bool(owners) and owners[-1] != self.owner

    def _check_owner(self, described: dict) -> None:
        if self._foreign(described):
            raise BackendError(f"SageMaker endpoint {described['EndpointName']} belongs to "
                               "another environment; refusing to change it")

    def _finish(self, plan: ServingPlan, actions: list[str]) -> ObservedState:
        observed = self.observe(plan.endpoint)
        deadline = time.monotonic() + self.ready_timeout
        while not observed.ready and time.monotonic() < deadline:
            if observed.extra.get("status") in BROKEN:
                raise BackendError(f"SageMaker endpoint {observed.extra['sagemaker_endpoint']} "
                                   f"failed: {observed.detail}")
            time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0.0)))
            observed = self.observe(plan.endpoint)
        if self.ready_timeout > 0 and not observed.ready:
            raise BackendUnavailable(f"SageMaker endpoint for {plan.endpoint} is not InService "
                                     f"after {self.ready_timeout:.0f}s ({observed.detail})")
        if actions:
            log.info("sagemaker %s generation %s: %s", plan.endpoint, plan.generation,
                     "; ".join(actions))
        return replace(observed, extra={**observed.extra, "actions": actions})

    # -- packaging --------------------------------------------------------------------------

    def _package(self, variant: Variant, container_plan: ServingPlan, work: Path) -> Path:
        """Build ``model.tar.gz`` (artifact + plan.json) from a verified private copy."""
        source = self._fetch_verified(variant, work)
        member = container_plan.variants[0].artifact_uri
        target = work / f"{uuid.uuid4().hex}.tar.gz"
        # Fixed times and owners: packaging the same version twice gives the same bytes.
        with open(target, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            with open(source, "rb") as handle:
                tar.addfile(_tar_entry(member, source.stat().st_size), handle)
            plan_bytes = container_plan.to_json().encode()
            tar.addfile(_tar_entry(PLAN_MEMBER, len(plan_bytes)), io.BytesIO(plan_bytes))
        return target

    def _fetch_verified(self, variant: Variant, work: Path) -> Path:
        """Copy the artifact into ``work`` while hashing it; refuse it unless the sha256 is
        the plan's (the copy is what gets packaged, so nothing can swap it in between)."""
        uri = variant.artifact_uri
        scheme = urlsplit(uri).scheme
        if scheme not in ("s3", "file", ""):
            raise BackendError(f"variant {variant.name}: artifact uri scheme {scheme!r} is not "
                               "supported (use file:// or s3://)")
        try:
            if scheme == "s3":
                bucket = uri[len("s3://"):].split("/", 1)[0]
                source = S3ArtifactStore(bucket, client=self._s3).open(uri)
            else:
                source = open(Path(uri.removeprefix("file://")), "rb")
        except StorageError as e:
            raise BackendUnavailable(f"variant {variant.name}: cannot read {uri}: {e}") from e
        except PermanentError as e:
            raise BackendError(f"variant {variant.name}: cannot read {uri}: {e}") from e
        except OSError as e:
            raise BackendError(f"variant {variant.name}: cannot read {uri}: "
                               f"{e.strerror or e}") from e
        target = work / uuid.uuid4().hex
        digest = hashlib.sha256()
        with source, open(target, "wb") as copy:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                copy.write(chunk)
        if digest.hexdigest() != variant.sha256.lower():
            raise BackendError(
                f"variant {variant.name}: artifact {uri} has sha256 {digest.hexdigest()}, the "
                f"plan expects {variant.sha256}; refusing to deploy a file that is not the "
                "approved one")
        return target

    def _delete_tarballs(self, endpoint: str) -> None:
        folder = self._s3_folder(endpoint)
        keys = [obj["Key"] for page in self._pages(self._s3, "list_objects_v2", "Contents",
                                                   Bucket=self.bucket, Prefix=folder)
                for obj in page]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            self._call(self._s3, "delete_objects", Bucket=self.bucket,
                       Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]],
                               "Quiet": True})

    # -- boto3 at arm's length --------------------------------------------------------------

    def _call(self, client, operation: str, missing_ok: bool = False, **kwargs):
        """Call ``operation``; botocore errors become ``BackendError`` or
        ``BackendUnavailable``. With ``missing_ok`` a "not found" answer returns None."""
        try:
            return getattr(client, operation)(**kwargs)
        except ClientError as e:
            if missing_ok and _not_found(e):
                return None
            raise _translate(e, operation) from e
        except BotoCoreError as e:
            raise _translate(e, operation) from e

    def _pages(self, client, operation: str, key: str, **kwargs):
        try:
            for page in client.get_paginator(operation).paginate(**kwargs):
                yield page.get(key) or []
        except ClientError as e:
            if _not_found(e):
                return  # no bucket, nothing to list
            raise _translate(e, operation) from e
        except BotoCoreError as e:
            raise _translate(e, operation) from e

    def _list(self, operation: str, key: str, **kwargs) -> list[dict]:
        return [item for page in self._pages(self._sagemaker, operation, key, **kwargs)
                for item in page]

    def _generation(self, arn: str, config_name: str | None) -> int | None:
        tags = self._call(self._sagemaker, "list_tags", ResourceArn=arn).get("Tags", [])
        values = [t["Value"] for t in tags if t["Key"] == GENERATION_TAG]
        if values and values[-1].isdigit():
            return int(values[-1])
        found = _CONFIG_SUFFIX.search(config_name or "")
        return int(found.group(1)) if found else None

    def _emulator_lacks_operation(self, error: ClientError) -> bool:
        """moto answers an unimplemented operation with an HTML 500; AWS never sends HTML,
        and without an ``endpoint_url`` we are talking to AWS."""
        if self.endpoint_url is None:
            return False
        response = error.response or {}
        meta = response.get("ResponseMetadata", {})
        code = str(response.get("Error", {}).get("Code", ""))
        content_type = str(meta.get("HTTPHeaders", {}).get("content-type", ""))
        return meta.get("HTTPStatusCode") in (500, 501) and (
            code.startswith("NotImplemented") or "text/html" in content_type)


# -- helpers --------------------------------------------------------------------------------


def _check_plan(plan: ServingPlan) -> None:
    if plan.shadow is not None:
        raise BackendError(f"plan for {plan.endpoint} shadows {plan.shadow}: the sagemaker "
                           "backend does not serve shadow variants")
    for variant in plan.variants:
        if len(variant.name) > NAME_LIMIT or not _VALID_NAME.match(variant.name):
            raise BackendError(f"variant name {variant.name!r} is not a valid SageMaker "
                               "variant name (letters, digits and inner hyphens, at most 63)")


def _container_plan(endpoint: str, variant: Variant) -> ServingPlan:
    """The plan baked into a variant's tarball: that variant alone, its artifact beside it.

    Weight, replicas and generation are fixed, so the tarball (and the Model built on it)
    depends on the version alone and survives any number of weight changes."""
    suffix = Path(urlsplit(variant.artifact_uri).path).suffix
    member = "artifact" + (suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else "")
    return ServingPlan(endpoint=endpoint, generation=1, variants=(
        replace(variant, artifact_uri=member, weight=1.0, replicas=1),))


def _sagemaker_name(raw: str, limit: int) -> str:
    """``raw`` as a SageMaker resource name of at most ``limit`` characters.

    A name that had to change (bad characters, too long) ends with a hash of the original,
    so ``churn_v2`` and ``churn-v2`` stay two endpoints."""
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9-]+", "-", raw)).strip("-")
    if cleaned and cleaned == raw and len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha256(raw.encode()).hexdigest()[:6]
    head = cleaned[:limit - len(digest) - 1].rstrip("-") or "endpoint"
    return f"{head}-{digest}"


def _shapes(slots: list[_Slot]) -> set[tuple]:
    return {s.shape() for s in slots}


def _same_traffic(current: list[_Slot], desired: list[_Slot]) -> bool:
    """Same normalised weights and instance counts, variant by variant."""
    def normalised(slots):
        total = sum(s.weight for s in slots) or 1.0
        return {s.variant: (s.weight / total, s.count) for s in slots}

    have, want = normalised(current), normalised(desired)
    return have.keys() == want.keys() and all(
        abs(have[n][0] - want[n][0]) <= _WEIGHT_TOLERANCE and have[n][1] == want[n][1]
        for n in want)


def _tag(key: str, value) -> dict:
    return {"Key": key, "Value": _TAG_VALUE_UNSAFE.sub("_", str(value))[:256]}


def _tar_entry(name: str, size: int) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.size, entry.mode, entry.mtime = size, 0o644, 0
    entry.uid = entry.gid = 0
    entry.uname = entry.gname = ""
    return entry


def _not_found(error: ClientError) -> bool:
    """SageMaker says "not found" as a ValidationException reading "Could not find ..."."""
    err = (error.response or {}).get("Error", {})
    code, message = str(err.get("Code", "")), str(err.get("Message", ""))
    status = (error.response or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("ResourceNotFound", "ResourceNotFoundException", "NoSuchKey", "NoSuchBucket",
                "NotFound", "404"):
        return True
    return status == 400 and code.startswith("Validation") \
        and message.lower().startswith("could not find")


def _translate(error: Exception, operation: str) -> OpsError:
    """A botocore error as ours: throttling, 5xx, connections and timeouts may pass; the
    rest (validation, permissions, quotas, missing credentials) will not."""
    if isinstance(error, ClientError):
        response = error.response or {}
        err = response.get("Error", {})
        code = str(err.get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        message = re.sub(r"<[^>]+>|\s+", " ", str(err.get("Message", ""))).strip()[:300]
        text = f"SageMaker backend: {operation} failed: {code or status} {message}".rstrip()
        if code in _TRANSIENT_CODES or status == 429 or status >= 500:
            return BackendUnavailable(text)
        return BackendError(text)
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        return BackendUnavailable(f"SageMaker backend: {operation} could not reach the API: "
                                  f"{error}")
    return BackendError(f"SageMaker backend: {operation} failed: {error}")
