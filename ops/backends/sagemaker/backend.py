"""The SageMaker backend: converges one real-time SageMaker endpoint per serving plan (see
the package's docstring for the mapping and for what it does not support)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from ops.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    ObservedState,
    PlanConflict,
    check_generation,
)
from ops.backends.sagemaker.client import CREDENTIAL_SETTINGS, AwsClients, translate
from ops.backends.sagemaker.cloudwatch import CloudWatchAnalyzer
from ops.backends.sagemaker.config import (
    Slot,
    check_plan,
    configured_slots,
    container_plan,
    deployed_slots,
    desired_slots,
    observed_variants,
    production_variants,
    same_traffic,
    shapes,
    weights_and_capacities,
)
from ops.backends.sagemaker.names import (
    BASE_LIMIT,
    CONFIG_SUFFIX,
    ENDPOINT_TAG,
    GENERATION_TAG,
    NAME_LIMIT,
    SHA256_TAG,
    VARIANT_TAG,
    VERSION_TAG,
    EndpointTags,
    sagemaker_name,
    tag,
)
from ops.backends.sagemaker.packaging import delete_tarballs, package
from ops.plan import ServingPlan
from ops.serving.ids import KEY_ENV

log = logging.getLogger("ops.backends.sagemaker")

TARBALL = "model.tar.gz"
IN_SERVICE = "InService"
BUSY = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
BROKEN = frozenset({"Failed", "OutOfService", "UpdateRollbackFailed"})


class SageMakerBackend(Backend):
    """Converges one SageMaker endpoint per plan; see the package's docstring for the
    mapping."""

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
        credentials = sorted(CREDENTIAL_SETTINGS.intersection(k.lower() for k in extra))
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
        self._aws = AwsClients(region, endpoint_url, max_attempts, connect_timeout,
                               read_timeout)
        self._tags = EndpointTags(self._aws, owner)

    # -- names ------------------------------------------------------------------------------

    def _owned(self, endpoint: str) -> str:
        # Endpoint names are one namespace per account and region: the owner in the name
        # keeps two projects' models of one name apart.
        return f"{endpoint}-{self.owner}" if self.owner else endpoint

    def endpoint_name(self, endpoint: str) -> str:
        """The SageMaker endpoint name of a plan's endpoint."""
        return sagemaker_name(self._owned(endpoint), NAME_LIMIT)

    def _base(self, endpoint: str) -> str:
        return sagemaker_name(self._owned(endpoint), BASE_LIMIT)

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

    def analyzer(self) -> CloudWatchAnalyzer | None:
        if self.analysis == "prometheus":
            return None
        return CloudWatchAnalyzer(self._aws.client("cloudwatch"), self.endpoint_name,
                                  latency_stat=self.latency_stat)

    def smoke(self, endpoint: str, variant: str, rows: list[list[float]], count: int) -> int:
        """Invokes one production variant directly (``TargetVariant``), as blue/green's
        check needs: the idle candidate gets requests no user sent."""
        runtime = self._aws.client("sagemaker-runtime")
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

    # -- the contract -----------------------------------------------------------------------

    def apply(self, plan: ServingPlan, *, wait: bool = True) -> ObservedState:
        """Converge the endpoint to ``plan``; ``extra["actions"]`` lists the changing calls.

        Fenced by generation: the endpoint's recorded generation (``EndpointTags.recorded``)
        is compared before any change, and again right before ``UpdateEndpoint`` (making the
        models and config may take minutes). SageMaker has no compare-and-set, so two
        applies racing can both pass the check; on AWS the later update is refused while the
        first is in progress, and the portal's next apply converges the endpoint.
        ``wait`` (with ``ready_timeout`` > 0) waits for ``InService``."""
        check_plan(plan)
        name = self.endpoint_name(plan.endpoint)
        packages = {v.name: container_plan(plan.endpoint, v) for v in plan.variants}
        desired = desired_slots(
            plan, lambda v: self._model_name(plan.endpoint, packages[v.name]),
            self.instance_type, self.initial_instance_count)
        config_name = self._config_name(plan.endpoint, plan.generation)
        actions: list[str] = []

        endpoint = self._describe_fenced(plan, name)
        if endpoint is not None:
            status = endpoint["EndpointStatus"]
            if status in BROKEN:
                raise BackendError(
                    f"SageMaker endpoint {name} is {status}"
                    + (f": {endpoint['FailureReason']}" if endpoint.get("FailureReason") else "")
                    + "; delete it and apply the plan again")
            self._check_not_refused(plan, endpoint)
            deployed = self._deployed_slots(endpoint)
            if deployed is not None and shapes(deployed) == shapes(desired):
                self._converge_weights(endpoint, deployed, desired, actions)
                self._tags.record_generation(endpoint, plan, actions)
                return self._finish(plan, actions, wait)
            if status in BUSY:
                pending = (endpoint.get("PendingDeploymentSummary") or {}).get(
                    "EndpointConfigName")
                if pending != config_name:
                    raise BackendUnavailable(
                        f"SageMaker endpoint {name} is {status}; the plan can be applied "
                        "once it is InService")
                self._tags.record_generation(endpoint, plan, actions)
                return self._finish(plan, actions, wait)  # already moving to this config

        self._ensure_config(plan, config_name, desired, packages, endpoint, actions)
        if endpoint is None:
            self._aws.call(self._aws.sagemaker, "create_endpoint", EndpointName=name,
                           EndpointConfigName=config_name, Tags=self._tags.for_endpoint(plan))
            actions.append(f"create_endpoint {name} ({config_name})")
        else:
            # Judged again: another apply may have moved the endpoint on meanwhile.
            endpoint = self._describe_fenced(plan, name) or endpoint
            self._switch_config(endpoint, plan, config_name, actions)
        return self._finish(plan, actions, wait)

    def _describe_fenced(self, plan: ServingPlan, name: str) -> dict | None:
        """The endpoint as SageMaker describes it (None if there is none), after checking
        that it is this owner's and records no newer plan (``check_generation``)."""
        endpoint = self._aws.call(self._aws.sagemaker, "describe_endpoint", missing_ok=True,
                                  EndpointName=name)
        if endpoint is not None:
            self._tags.check_owner(endpoint)
            generation, digest = self._tags.recorded(endpoint)
            check_generation(plan, generation, digest, f"SageMaker endpoint {name}")
        return endpoint

    def _check_not_refused(self, plan: ServingPlan, endpoint: dict) -> None:
        """``BackendError`` when SageMaker already refused this very plan: updating to its
        config again would only fail again, minutes later (a new plan needs a new
        generation)."""
        if endpoint["EndpointStatus"] != IN_SERVICE or not endpoint.get("FailureReason"):
            return  # the cheap test first: most endpoints never failed an update
        recorded = self._tags.generation(endpoint["EndpointArn"],
                                         endpoint.get("EndpointConfigName"))
        refused = self._refusal(plan.endpoint, endpoint, recorded)
        if refused and recorded == plan.generation:
            raise BackendError(refused)

    def _refusal(self, endpoint: str, described: dict, recorded: int | None) -> str:
        """Why SageMaker refused the plan the endpoint records (generation ``recorded``), if
        it did: the endpoint is ``Failed``, or the update to that plan's config failed and
        SageMaker rolled back to the config it ran before (``InService`` on another config,
        with a ``FailureReason``). A plan that only moved weights asked for no config of its
        own, so an older failure is not its refusal."""
        status, reason = described["EndpointStatus"], described.get("FailureReason")
        if recorded is None or status not in (IN_SERVICE, "Failed"):
            return ""
        if status == "Failed":
            return f"SageMaker refused plan {recorded}: {reason or 'the endpoint failed'}"
        wanted = self._config_name(endpoint, recorded)
        if not reason or described.get("EndpointConfigName") == wanted:
            return ""
        asked = self._aws.call(self._aws.sagemaker, "describe_endpoint_config",
                               missing_ok=True, EndpointConfigName=wanted)
        return f"SageMaker refused plan {recorded}: {reason}" if asked is not None else ""

    def observe(self, endpoint: str) -> ObservedState:
        name = self.endpoint_name(endpoint)
        described = self._aws.call(self._aws.sagemaker, "describe_endpoint", missing_ok=True,
                                   EndpointName=name)
        if described is None:
            return ObservedState(endpoint=endpoint, exists=False)
        if self._tags.foreign(described):
            return ObservedState(endpoint=endpoint, exists=True, ready=False,
                                 detail=f"SageMaker endpoint {name} belongs to another "
                                        "environment")
        status = described["EndpointStatus"]
        config_name = described.get("EndpointConfigName", "")
        config = self._aws.call(self._aws.sagemaker, "describe_endpoint_config", missing_ok=True,
                                EndpointConfigName=config_name) or {}
        configured = {pv["VariantName"]: pv for pv in config.get("ProductionVariants", [])}
        live = described.get("ProductionVariants") or []
        variants = observed_variants(described, config, status == IN_SERVICE)
        recorded = self._tags.generation(described["EndpointArn"], config_name)
        refused = self._refusal(endpoint, described, recorded)
        detail = refused or status + (f": {described['FailureReason']}"
                                      if described.get("FailureReason") else "")
        return ObservedState(
            endpoint=endpoint, exists=True, generation=_served(recorded, config_name, refused),
            ready=status == IN_SERVICE, variants=tuple(variants),
            url=self.invocation_url(endpoint), detail=detail, refused=refused,
            extra={
                "status": status,
                "recorded_generation": recorded,
                "sagemaker_endpoint": name,
                "endpoint_config": config_name,
                "models": {n: pv.get("ModelName") for n, pv in configured.items()},
                "desired_weights": {pv["VariantName"]: pv.get("DesiredWeight") for pv in live},
            })

    def delete(self, endpoint: str) -> None:
        """Delete the endpoint, its configs, its models and their S3 tarballs."""
        name, base = self.endpoint_name(endpoint), self._base(endpoint)
        described = self._aws.call(self._aws.sagemaker, "describe_endpoint", missing_ok=True,
                                   EndpointName=name)
        if described is not None:
            self._tags.check_owner(described)
        if described is not None and described["EndpointStatus"] != "Deleting":
            self._aws.call(self._aws.sagemaker, "delete_endpoint", missing_ok=True,
                           EndpointName=name)
        # Anchored patterns: endpoint "churn" must never sweep up "churn-eu-g1".
        config_pattern = re.compile(rf"^{re.escape(base)}-g\d+$")
        for config in self._aws.list("list_endpoint_configs", "EndpointConfigs", NameContains=base):
            if config_pattern.match(config["EndpointConfigName"]):
                self._aws.call(self._aws.sagemaker, "delete_endpoint_config", missing_ok=True,
                               EndpointConfigName=config["EndpointConfigName"])
        model_pattern = re.compile(rf"^{re.escape(base)}-v\d+-[0-9a-f]{{8}}$")
        for model in self._aws.list("list_models", "Models", NameContains=base):
            if model_pattern.match(model["ModelName"]):
                self._aws.call(self._aws.sagemaker, "delete_model", missing_ok=True,
                               ModelName=model["ModelName"])
        delete_tarballs(self._aws, self.bucket, self._s3_folder(endpoint))

    # -- apply, step by step ----------------------------------------------------------------

    def _deployed_slots(self, endpoint: dict) -> list[Slot] | None:
        """The endpoint's variants: models and types from its config, weights from itself."""
        config = self._aws.call(self._aws.sagemaker, "describe_endpoint_config", missing_ok=True,
                                EndpointConfigName=endpoint["EndpointConfigName"])
        if config is None:
            return None  # someone deleted it: rebuild from this generation's config
        return deployed_slots(endpoint, config)

    def _converge_weights(self, endpoint: dict, deployed: list[Slot], desired: list[Slot],
                          actions: list[str]) -> None:
        if same_traffic(deployed, desired):
            return
        name = endpoint["EndpointName"]
        live = {pv["VariantName"] for pv in endpoint.get("ProductionVariants") or []}
        if endpoint["EndpointStatus"] in BUSY:
            if live != {s.variant for s in desired}:
                return  # still switching to this config; its weights are the plan's
            raise BackendUnavailable(f"SageMaker endpoint {name} is "
                                     f"{endpoint['EndpointStatus']}; weights can change once "
                                     "it is InService")
        self._aws.call(self._aws.sagemaker, "update_endpoint_weights_and_capacities",
                       EndpointName=name,
                       DesiredWeightsAndCapacities=weights_and_capacities(desired))
        actions.append("update_endpoint_weights_and_capacities " + ", ".join(
            f"{s.variant}={s.weight:g}x{s.count}" for s in desired))

    def _ensure_config(self, plan: ServingPlan, config_name: str, desired: list[Slot],
                       packages: dict[str, ServingPlan], endpoint: dict | None,
                       actions: list[str]) -> None:
        existing = self._aws.call(self._aws.sagemaker, "describe_endpoint_config", missing_ok=True,
                                  EndpointConfigName=config_name)
        if existing is not None:
            found = configured_slots(existing)
            if shapes(found) == shapes(desired) and same_traffic(found, desired):
                return  # a retry after a crash: the config is already there
            if endpoint is not None and endpoint.get("EndpointConfigName") == config_name:
                raise PlanConflict(
                    f"endpoint {endpoint['EndpointName']} serves config {config_name} with "
                    f"other variants: generation {plan.generation} of {plan.endpoint} was "
                    "already used for a different plan; apply it with a new generation")
            # Left over from an earlier plan of this generation and used by nothing now.
            self._aws.call(self._aws.sagemaker, "delete_endpoint_config", missing_ok=True,
                           EndpointConfigName=config_name)
            actions.append(f"delete_endpoint_config {config_name} (stale, other variants)")
        self._ensure_models(plan, desired, packages, actions)
        self._aws.call(
            self._aws.sagemaker, "create_endpoint_config", EndpointConfigName=config_name,
            ProductionVariants=production_variants(desired),
            Tags=[tag(ENDPOINT_TAG, plan.endpoint), tag(GENERATION_TAG, plan.generation)])
        actions.append(f"create_endpoint_config {config_name}")

    def _ensure_models(self, plan: ServingPlan, desired: list[Slot],
                       packages: dict[str, ServingPlan], actions: list[str]) -> None:
        """Create the Models the plan needs; every artifact is verified before any is made."""
        missing = [s for s in desired
                   if self._aws.call(self._aws.sagemaker, "describe_model", missing_ok=True,
                                     ModelName=s.model) is None]
        if not missing:
            return
        with tempfile.TemporaryDirectory(prefix="modelgate-sagemaker-") as work:
            tarballs = {s.model: package(plan.variant(s.variant), packages[s.variant],
                                         Path(work), self._aws.s3) for s in missing}
            for slot in missing:
                variant = plan.variant(slot.variant)
                key = self._s3_key(plan.endpoint, slot.model)
                with open(tarballs[slot.model], "rb") as body:  # one PUT: at most 5 GB
                    self._aws.call(self._aws.s3, "put_object", Bucket=self.bucket, Key=key,
                                   Body=body, ContentType="application/gzip",
                                   Metadata={"artifact-sha256": variant.sha256.lower()})
                self._aws.call(
                    self._aws.sagemaker, "create_model", ModelName=slot.model,
                    ExecutionRoleArn=self.role_arn,
                    PrimaryContainer={"Image": self.image_uri,
                                      "ModelDataUrl": f"s3://{self.bucket}/{key}",
                                      "Mode": "SingleModel",
                                      "Environment": ({KEY_ENV: self.prediction_key}
                                                      if self.prediction_key else {})},
                    Tags=[tag(ENDPOINT_TAG, plan.endpoint),
                          tag(VERSION_TAG, variant.version_id),
                          tag(VARIANT_TAG, variant.name),
                          tag(SHA256_TAG, variant.sha256.lower())])
                actions.append(f"create_model {slot.model} (s3://{self.bucket}/{key})")

    def _switch_config(self, endpoint: dict, plan: ServingPlan, config_name: str,
                       actions: list[str]) -> None:
        name = endpoint["EndpointName"]
        if endpoint["EndpointStatus"] in BUSY:  # another apply's update began meanwhile
            raise BackendUnavailable(f"SageMaker endpoint {name} is {endpoint['EndpointStatus']}"
                                     "; the plan can be applied once it is InService")
        try:
            self._aws.sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config_name)
        except ClientError as e:
            if not self._aws.lacks_operation(e):
                raise translate(e, "update_endpoint") from e
            if not self.allow_recreate:
                raise BackendError(
                    f"the SageMaker API at {self.endpoint_url} does not implement "
                    "UpdateEndpoint (a test emulator?); set allow_recreate=True in the "
                    "environment's settings to delete and recreate the endpoint instead "
                    "(emulators only: on AWS UpdateEndpoint is always used)") from e
            log.warning("the SageMaker API at %s lacks UpdateEndpoint: recreating endpoint %s "
                        "with %s (allow_recreate; test emulators only)",
                        self.endpoint_url, name, config_name)
            self._aws.call(self._aws.sagemaker, "delete_endpoint", EndpointName=name)
            self._aws.call(self._aws.sagemaker, "create_endpoint", EndpointName=name,
                           EndpointConfigName=config_name, Tags=self._tags.for_endpoint(plan))
            actions.append(f"recreate_endpoint {name} ({config_name}): the emulator lacks "
                           "UpdateEndpoint, allow_recreate is set")
            return
        except BotoCoreError as e:
            raise translate(e, "update_endpoint") from e
        actions.append(f"update_endpoint {name} ({config_name})")
        self._tags.record_generation(endpoint, plan, actions)

    def _finish(self, plan: ServingPlan, actions: list[str], wait: bool) -> ObservedState:
        """What the endpoint is now; with ``wait``, once InService (within ``ready_timeout``)
        or once a newer plan replaced this one."""
        observed = self.observe(plan.endpoint)
        timeout = self.ready_timeout if wait else 0.0
        deadline = time.monotonic() + timeout
        while not _done(plan, observed) and time.monotonic() < deadline:
            if observed.extra.get("status") in BROKEN:
                raise BackendError(f"SageMaker endpoint {observed.extra['sagemaker_endpoint']} "
                                   f"failed: {observed.detail}")
            time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0.0)))
            observed = self.observe(plan.endpoint)
        if timeout > 0 and observed.refused \
                and observed.extra.get("recorded_generation") == plan.generation:
            raise BackendError(observed.refused)
        if timeout > 0 and not _done(plan, observed):
            raise BackendUnavailable(f"SageMaker endpoint for {plan.endpoint} is not InService "
                                     f"after {self.ready_timeout:.0f}s ({observed.detail})")
        if actions:
            log.info("sagemaker %s generation %s: %s", plan.endpoint, plan.generation,
                     "; ".join(actions))
        return replace(observed, extra={**observed.extra, "actions": actions})


def _served(recorded: int | None, config_name: str, refused: str) -> int | None:
    """The generation the endpoint serves: the one it records, unless SageMaker refused
    that; then the one in the name of the config it kept (None when that is the refused
    plan's own config, or has no generation in its name)."""
    if not refused:
        return recorded
    found = CONFIG_SUFFIX.search(config_name or "")
    kept = int(found.group(1)) if found else None
    return kept if kept != recorded else None


def _done(plan: ServingPlan, observed: ObservedState) -> bool:
    """Nothing more to wait for: the endpoint is InService, or a newer plan replaced
    ``plan`` (its generation will never be what the endpoint records)."""
    return observed.ready or (observed.generation or 0) > plan.generation
