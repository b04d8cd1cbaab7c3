"""Multi-model endpoints on SageMaker (decision 68): one SageMaker multi-model endpoint
(a container in ``Mode: MultiModel``) whose models are the ``<name>.tar.gz`` objects under
one S3 prefix.

Each model's tarball holds its artifact (copied and checked against the catalog's sha256,
as every SageMaker package is) and ``model.json``, its catalog entry with the artifact as a
path relative to it. SageMaker downloads a tarball on the first request naming it
(``TargetModel``, the ``X-Amzn-SageMaker-Target-Model`` header) and calls the container's
``POST /models``; the model server loads it within ``MODELGATE_MEMORY_BUDGET``
(``ops.serving.multimodel_app``). SageMaker unloads models itself under memory pressure
(``DELETE /models/<name>``) as well. A member removed from the catalog has its tarball
deleted, so it can no longer be loaded (a copy already loaded answers until unloaded: AWS
documents no way to force it). The Model and EndpointConfig change only with the budget
(the container's environment); members change in S3 alone. The endpoint's tags record the
catalog's generation and digest, the fence of every apply (decision 51).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import tempfile
from pathlib import Path

from ops.backends.base import BackendError
from ops.backends.multimodel import (
    MultiModelBackend,
    MultiModelState,
    catalog_digest,
    check_catalog_generation,
)
from ops.backends.sagemaker.client import AwsClients, translate
from ops.backends.sagemaker.names import (
    DIGEST_TAG,
    ENDPOINT_TAG,
    GENERATION_TAG,
    NAME_LIMIT,
    OWNER_TAG,
    EndpointTags,
    sagemaker_name,
    tag,
)
from ops.backends.sagemaker.packaging import _tar_entry, _verified_copy
from ops.serving.multimodel import Catalog, CatalogModel

log = logging.getLogger(__name__)
ENTRY = "model.json"
SHA_METADATA = "modelgate-entry-sha256"  # S3 object metadata: which entry a tarball holds


class SageMakerMultiModel(MultiModelBackend):
    """Settings as ``SageMakerBackend``'s: region, role_arn, image_uri, bucket, prefix,
    endpoint_url, instance_type, initial_instance_count, allow_recreate, owner."""

    def __init__(self, region: str | None = None, role_arn: str | None = None,
                 image_uri: str | None = None, bucket: str | None = None,
                 prefix: str = "modelgate", endpoint_url: str | None = None,
                 instance_type: str = "ml.m5.large", initial_instance_count: int = 1,
                 allow_recreate: bool = False, max_attempts: int = 3,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 owner: str | None = None, **extra):
        missing = [name for name, value in (("region", region), ("role_arn", role_arn),
                                            ("image_uri", image_uri), ("bucket", bucket))
                   if not value]
        if missing:
            raise BackendError("the sagemaker backend needs these settings: "
                               + ", ".join(missing))
        self.role_arn = role_arn
        self.image_uri = image_uri
        self.bucket = bucket
        self.prefix = (prefix or "").strip("/")
        self.instance_type = instance_type
        self.initial_instance_count = int(initial_instance_count)
        self.allow_recreate = bool(allow_recreate)
        self.owner = owner
        self._aws = AwsClients(region, endpoint_url, max_attempts, connect_timeout,
                               read_timeout)
        self._tags = EndpointTags(self._aws, owner)

    # -- names ------------------------------------------------------------------------------

    def endpoint_name(self, endpoint: str) -> str:
        return sagemaker_name(f"{endpoint}-{self.owner}" if self.owner else endpoint,
                              NAME_LIMIT)

    def models_prefix(self, endpoint: str) -> str:
        """The one S3 prefix (``ModelDataUrl``) holding the endpoint's ``<name>.tar.gz``."""
        return "/".join(p for p in (self.prefix, "multimodel", self.endpoint_name(endpoint))
                        if p) + "/"

    def _model_name(self, catalog: Catalog) -> str:
        settings = f"{catalog.memory_budget}:{catalog.top_models}:{self.image_uri}"
        digest = hashlib.sha256(settings.encode()).hexdigest()[:8]
        return sagemaker_name(f"{self.endpoint_name(catalog.endpoint)[:50]}-mm-{digest}",
                              NAME_LIMIT)

    # -- the contract -----------------------------------------------------------------------

    def apply_catalog(self, catalog: Catalog, *, wait: bool = True) -> MultiModelState:
        name = self.endpoint_name(catalog.endpoint)
        described = self._call("describe_endpoint", missing_ok=True, EndpointName=name)
        if described is not None:
            self._tags.check_owner(described)
            tags = self._tags._tags(described["EndpointArn"])
            recorded = EndpointTags._last(tags, GENERATION_TAG)
            check_catalog_generation(
                catalog, int(recorded) if recorded and recorded.isdigit() else None,
                EndpointTags._last(tags, DIGEST_TAG), "its tags")
        self._sync_models(catalog)
        model_name = self._ensure_model(catalog)
        config_name = f"{model_name}-config"
        if self._call("describe_endpoint_config", missing_ok=True,
                      EndpointConfigName=config_name) is None:
            self._call("create_endpoint_config", EndpointConfigName=config_name,
                       ProductionVariants=[{
                           "VariantName": "AllTraffic", "ModelName": model_name,
                           "InitialInstanceCount": self.initial_instance_count,
                           "InstanceType": self.instance_type, "InitialVariantWeight": 1.0}])
        if described is None:
            self._call("create_endpoint", EndpointName=name, EndpointConfigName=config_name,
                       Tags=self._endpoint_tags(catalog))
        else:
            if described.get("EndpointConfigName") != config_name:
                self._switch(name, config_name, catalog)
            self._call("add_tags", ResourceArn=described["EndpointArn"], Tags=[
                tag(GENERATION_TAG, catalog.generation),
                tag(DIGEST_TAG, catalog_digest(catalog))])
        return self.observe_catalog(catalog.endpoint)

    def observe_catalog(self, endpoint: str) -> MultiModelState:
        name = self.endpoint_name(endpoint)
        described = self._call("describe_endpoint", missing_ok=True, EndpointName=name)
        if described is None or self._tags.foreign(described):
            return MultiModelState(endpoint, exists=False)
        recorded = EndpointTags._last(self._tags._tags(described["EndpointArn"]),
                                      GENERATION_TAG)
        status = described.get("EndpointStatus", "")
        return MultiModelState(
            endpoint, exists=True, ready=status == "InService",
            generation=int(recorded) if recorded and recorded.isdigit() else None,
            url=name, detail="" if status == "InService" else
            f"{status}: {described.get('FailureReason') or 'not in service yet'}",
            extra={"models_prefix": f"s3://{self.bucket}/{self.models_prefix(endpoint)}"})

    def delete_catalog(self, endpoint: str) -> None:
        name = self.endpoint_name(endpoint)
        described = self._call("describe_endpoint", missing_ok=True, EndpointName=name)
        if described is not None:
            self._tags.check_owner(described)
            self._call("delete_endpoint", EndpointName=name)
        for key in self._stored(endpoint):
            self._call_s3("delete_object", Bucket=self.bucket, Key=key)

    # -- S3: one tarball per model under the prefix ----------------------------------------

    def _stored(self, endpoint: str) -> dict[str, str]:
        """``key -> ETag`` of the tarballs under the endpoint's prefix."""
        found = {}
        for page in self._aws.pages(self._aws.s3, "list_objects_v2", "Contents",
                                    Bucket=self.bucket, Prefix=self.models_prefix(endpoint)):
            for item in page:
                found[item["Key"]] = item.get("ETag", "")
        return found

    def _sync_models(self, catalog: Catalog) -> None:
        prefix = self.models_prefix(catalog.endpoint)
        stored = self._stored(catalog.endpoint)
        wanted = {f"{prefix}{name}.tar.gz": model for name, model in catalog.models.items()}
        with tempfile.TemporaryDirectory(prefix="modelgate-mme-") as work:
            for key, model in wanted.items():
                entry = _entry(model)
                sha = hashlib.sha256(entry).hexdigest()
                if key in stored:
                    head = self._call_s3("head_object", Bucket=self.bucket, Key=key)
                    if (head.get("Metadata") or {}).get(SHA_METADATA) == sha:
                        continue  # the same model already: nothing to upload
                tarball = _package(model, entry, Path(work), self._aws.s3)
                self._call_s3("put_object", Bucket=self.bucket, Key=key, Body=tarball,
                              Metadata={SHA_METADATA: sha})
        for key in set(stored) - set(wanted):
            self._call_s3("delete_object", Bucket=self.bucket, Key=key)

    # -- Model, config, endpoint ------------------------------------------------------------

    def _ensure_model(self, catalog: Catalog) -> str:
        model_name = self._model_name(catalog)
        if self._call("describe_model", missing_ok=True, ModelName=model_name) is None:
            self._call("create_model", ModelName=model_name, ExecutionRoleArn=self.role_arn,
                       PrimaryContainer=self.container(catalog))
        return model_name

    def container(self, catalog: Catalog) -> dict:
        """The multi-model container: every ``<name>.tar.gz`` under one prefix."""
        return {
            "Image": self.image_uri,
            "Mode": "MultiModel",
            "ModelDataUrl": f"s3://{self.bucket}/{self.models_prefix(catalog.endpoint)}",
            "Environment": {
                "MODELGATE_MULTI_MODEL": "sagemaker",
                "MODELGATE_ENDPOINT": catalog.endpoint,
                "MODELGATE_MEMORY_BUDGET": str(catalog.memory_budget),
                "MODELGATE_TOP_MODELS": str(catalog.top_models),
            },
        }

    def _endpoint_tags(self, catalog: Catalog) -> list[dict]:
        owner = [tag(OWNER_TAG, self.owner)] if self.owner else []
        return [tag(ENDPOINT_TAG, catalog.endpoint), tag(GENERATION_TAG, catalog.generation),
                tag(DIGEST_TAG, catalog_digest(catalog)), *owner]

    def _switch(self, name: str, config_name: str, catalog: Catalog) -> None:
        from botocore.exceptions import ClientError

        try:
            self._aws.sagemaker.update_endpoint(EndpointName=name,
                                                EndpointConfigName=config_name)
        except ClientError as e:
            if not (self.allow_recreate and self._aws.lacks_operation(e)):
                raise translate(e, "update_endpoint") from e
            # An emulator without UpdateEndpoint (moto): recreate it (tests only).
            self._call("delete_endpoint", EndpointName=name)
            self._call("create_endpoint", EndpointName=name, EndpointConfigName=config_name,
                       Tags=self._endpoint_tags(catalog))

    def _call(self, operation: str, missing_ok: bool = False, **kwargs):
        return self._aws.call(self._aws.sagemaker, operation, missing_ok=missing_ok, **kwargs)

    def _call_s3(self, operation: str, **kwargs):
        return self._aws.call(self._aws.s3, operation, **kwargs)


def _entry(model: CatalogModel) -> bytes:
    """``model.json``: the catalog entry, its artifact a path inside the tarball."""
    spec = {**model.spec.to_dict(), "artifact_uri": _member(model),
            "memory_bytes": model.memory_bytes}
    return json.dumps(spec, sort_keys=True).encode()


def _member(model: CatalogModel) -> str:
    suffix = Path(model.spec.artifact_uri.split("?", 1)[0]).suffix or ".bin"
    return f"artifact{suffix}"


def _package(model: CatalogModel, entry: bytes, work: Path, s3_client) -> bytes:
    """The tarball's bytes: the verified artifact and ``model.json``."""
    buffer = io.BytesIO()
    with _verified_copy(model.spec, work, s3_client) as source, \
            tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        with open(source, "rb") as handle:
            tar.addfile(_tar_entry(_member(model), source.stat().st_size), handle)
        tar.addfile(_tar_entry(ENTRY, len(entry)), io.BytesIO(entry))
    return buffer.getvalue()
