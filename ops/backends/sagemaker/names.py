"""Names and tags of an endpoint's SageMaker resources.

Names are sanitised to SageMaker's ``[a-zA-Z0-9](-*[a-zA-Z0-9])*``, at most 63 characters; a
name that had to change gets a short hash of the original so two endpoints never collide.
The endpoint is named after the plan's endpoint (and its owner), EndpointConfigs
``<base>-g<generation>`` and Models ``<base>-v<version_id>-<digest8>``, where ``<base>`` is
the endpoint's name cut to 40 characters (with a hash) when longer.

The endpoint is tagged ``modelgate:endpoint`` (the plan's own name), ``modelgate:generation``
(the generation it serves now; read back by ``observe``) and ``modelgate:owner`` (the
environment it belongs to: another owner's endpoint is never changed).
"""

from __future__ import annotations

import hashlib
import re

from ops.backends.base import BackendError
from ops.backends.sagemaker.client import AwsClients
from ops.plan import ServingPlan

NAME_LIMIT = 63
BASE_LIMIT = 40  # leaves room for "-v<version>-<digest8>" and "-g<generation>"
VALID_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
MODEL_SUFFIX = re.compile(r"-v(\d+)-[0-9a-f]{8}$")
CONFIG_SUFFIX = re.compile(r"-g(\d+)$")
_TAG_VALUE_UNSAFE = re.compile(r"[^\w.:/=+\-@ ]")

ENDPOINT_TAG = "modelgate:endpoint"
GENERATION_TAG = "modelgate:generation"
OWNER_TAG = "modelgate:owner"  # the environment an endpoint belongs to
VERSION_TAG = "modelgate:version-id"
VARIANT_TAG = "modelgate:variant"
SHA256_TAG = "modelgate:sha256"


def sagemaker_name(raw: str, limit: int) -> str:
    """``raw`` as a SageMaker resource name of at most ``limit`` characters.

    A name that had to change (bad characters, too long) ends with a hash of the original,
    so ``churn_v2`` and ``churn-v2`` stay two endpoints."""
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9-]+", "-", raw)).strip("-")
    if cleaned and cleaned == raw and len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha256(raw.encode()).hexdigest()[:6]
    head = cleaned[:limit - len(digest) - 1].rstrip("-") or "endpoint"
    return f"{head}-{digest}"


def tag(key: str, value) -> dict:
    return {"Key": key, "Value": _TAG_VALUE_UNSAFE.sub("_", str(value))[:256]}



class EndpointTags:
    """The tags an endpoint carries, read and written through ``aws``, for ``owner``."""

    def __init__(self, aws: AwsClients, owner: str | None = None):
        self._aws = aws
        self.owner = owner

    def for_endpoint(self, plan: ServingPlan) -> list[dict]:
        owner = [tag(OWNER_TAG, self.owner)] if self.owner else []
        return [tag(ENDPOINT_TAG, plan.endpoint), tag(GENERATION_TAG, plan.generation),
                *owner]

    def generation(self, arn: str, config_name: str | None) -> int | None:
        """The generation the endpoint serves: its tag, else its config's name."""
        tags = self._aws.call(self._aws.sagemaker, "list_tags", ResourceArn=arn).get("Tags", [])
        values = [t["Value"] for t in tags if t["Key"] == GENERATION_TAG]
        if values and values[-1].isdigit():
            return int(values[-1])
        found = CONFIG_SUFFIX.search(config_name or "")
        return int(found.group(1)) if found else None

    def record_generation(self, endpoint: dict, generation: int, actions: list[str]) -> None:
        arn = endpoint["EndpointArn"]
        if self.generation(arn, None) == generation:
            return
        # AddTags overwrites a key on AWS (moto appends; generation() reads the last one).
        self._aws.call(self._aws.sagemaker, "add_tags", ResourceArn=arn,
                       Tags=[tag(GENERATION_TAG, generation)])
        actions.append(f"tag generation {generation}")

    def foreign(self, described: dict) -> bool:
        """Whether the endpoint is tagged for another environment (endpoint names are one
        namespace per account and region: two projects' models of one name meet there)."""
        if not self.owner:
            return False
        tags = self._aws.call(self._aws.sagemaker, "list_tags",
                              ResourceArn=described["EndpointArn"]).get("Tags", [])
        owners = [t["Value"] for t in tags if t["Key"] == OWNER_TAG]
        return bool(owners) and owners[-1] != self.owner

    def check_owner(self, described: dict) -> None:
        if self.foreign(described):
            raise BackendError(f"SageMaker endpoint {described['EndpointName']} belongs to "
                               "another environment; refusing to change it")
