"""Names and tags of an endpoint's SageMaker resources.

Names are sanitised to SageMaker's ``[a-zA-Z0-9](-*[a-zA-Z0-9])*``, at most 63 characters; a
name that had to change gets a short hash of the original so two endpoints never collide.
The endpoint is named after the plan's endpoint (and its owner), EndpointConfigs
``<base>-g<generation>`` and Models ``<base>-v<version_id>-<digest8>``, where ``<base>`` is
the endpoint's name cut to 40 characters (with a hash) when longer.

The endpoint is tagged ``modelgate:endpoint`` (the plan's own name), ``modelgate:generation``
(the generation it serves now; read back by ``observe``), ``modelgate:plan-digest`` (that
plan's ``plan_digest``: ``apply`` refuses another plan claiming its generation) and
``modelgate:owner`` (the environment it belongs to: another owner's endpoint is never
changed).
"""

from __future__ import annotations

import hashlib
import re

from ops.backends.base import BackendError, plan_digest
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
DIGEST_TAG = "modelgate:plan-digest"
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
                tag(DIGEST_TAG, plan_digest(plan)), *owner]

    def _tags(self, arn: str) -> list[dict]:
        return self._aws.call(self._aws.sagemaker, "list_tags", ResourceArn=arn).get("Tags", [])

    @staticmethod
    def _last(tags: list[dict], key: str) -> str | None:
        # AddTags overwrites a key on AWS; moto appends, so the last value is the current one.
        values = [t["Value"] for t in tags if t["Key"] == key]
        return values[-1] if values else None

    def generation(self, arn: str, config_name: str | None) -> int | None:
        """The generation the endpoint serves: its tag, else its config's name."""
        value = self._last(self._tags(arn), GENERATION_TAG)
        if value and value.isdigit():
            return int(value)
        found = CONFIG_SUFFIX.search(config_name or "")
        return int(found.group(1)) if found else None

    def recorded(self, described: dict) -> tuple[int | None, str | None]:
        """The newest generation the endpoint records and, when it is the tagged one, that
        plan's digest: the generation tag, or the generation in the name of the config the
        endpoint runs or is moving to (an update whose tag was never written), the higher."""
        tags = self._tags(described["EndpointArn"])
        tagged = self._last(tags, GENERATION_TAG)
        found = [int(tagged)] if tagged and tagged.isdigit() else []
        pending = (described.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
        for config in (described.get("EndpointConfigName"), pending):
            suffix = CONFIG_SUFFIX.search(config or "")
            if suffix:
                found.append(int(suffix.group(1)))
        generation = max(found, default=None)
        if generation is None or tagged != str(generation):
            return generation, None
        return generation, self._last(tags, DIGEST_TAG)

    def record_generation(self, endpoint: dict, plan: ServingPlan, actions: list[str]) -> None:
        """Tag the endpoint with ``plan``'s generation and digest (unless it has them)."""
        arn = endpoint["EndpointArn"]
        tags = self._tags(arn)
        wanted = {GENERATION_TAG: str(plan.generation), DIGEST_TAG: plan_digest(plan)}
        if all(self._last(tags, key) == value for key, value in wanted.items()):
            return
        self._aws.call(self._aws.sagemaker, "add_tags", ResourceArn=arn,
                       Tags=[tag(key, value) for key, value in wanted.items()])
        actions.append(f"tag generation {plan.generation}")

    def foreign(self, described: dict) -> bool:
        """Whether the endpoint is tagged for another environment (endpoint names are one
        namespace per account and region: two projects' models of one name meet there)."""
        if not self.owner:
            return False
        owner = self._last(self._tags(described["EndpointArn"]), OWNER_TAG)
        return owner is not None and owner != self.owner

    def check_owner(self, described: dict) -> None:
        if self.foreign(described):
            raise BackendError(f"SageMaker endpoint {described['EndpointName']} belongs to "
                               "another environment; refusing to change it")
