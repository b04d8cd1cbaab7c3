"""Names of an endpoint's Kubernetes objects, and the labels and annotations they carry.

Kubernetes objects are named after the endpoint, sanitised to a DNS-1035 label of at most
45 characters (Knative names the predictor revision ``<name>-predictor-00001``, which must
stay within 63): a valid short name is used unchanged; any other is lower-cased, every run
of characters outside ``[a-z0-9]`` becomes ``-``, ``mg-`` is put in front when it would not
start with a letter, it is cut to 36 characters and gets ``-`` plus the first 8 hex digits
of the sha256 of the original name, so two endpoints never share objects. Variant names get
the same treatment with 16 characters (``stable`` and ``candidate`` are kept). The original
names are kept in annotations.
"""

from __future__ import annotations

import hashlib
import re

from ops.backends.base import BackendError

KSERVE_GROUP, KSERVE_VERSION, KSERVE_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"

NAME_MAX = 45
VARIANT_MAX = 16
PLAN_DIR = "/etc/modelgate"
PLAN_KEY = "plan.json"
PORT = 8080

MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER_LABEL = "modelgate.io/owner"  # the environment an endpoint's objects belong to
ENDPOINT_LABEL = "modelgate.io/endpoint"
VARIANT_LABEL = "modelgate.io/variant"
ENDPOINT_ANNOTATION = "modelgate.io/endpoint-name"
GENERATION_ANNOTATION = "modelgate.io/generation"
PLAN_DIGEST_ANNOTATION = "modelgate.io/plan-digest"  # tells a re-apply from another plan
VARIANTS_ANNOTATION = "modelgate.io/variants"
SHADOW_ANNOTATION = "modelgate.io/shadow"
FINGERPRINT_ANNOTATION = "modelgate.io/fingerprint"
CHECKSUM_ANNOTATION = "modelgate.io/plan-checksum"
# A model pod's monitoring labels (the portal's project and environment) as annotations
# ``modelgate.io/<label>``: any value fits an annotation, and a Prometheus relabels them onto
# the pod's series (docs/operations.md, "Model servers on Kubernetes").
MONITORING_LABELS = ("project", "environment")
MONITORING_ANNOTATION = "modelgate.io/{}"

_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def dns_label(text: str, max_length: int) -> str:
    """``text`` as a DNS-1035 label of at most ``max_length`` characters (see module doc)."""
    if len(text) <= max_length and _DNS_LABEL.fullmatch(text):
        return text
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = f"mg-{cleaned}".rstrip("-")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned[:max_length - 9].rstrip('-')}-{digest}"


def resource_name(endpoint: str) -> str:
    """The name of the Kubernetes objects of ``endpoint``."""
    if not endpoint:
        raise BackendError("an endpoint needs a name")
    return dns_label(endpoint, NAME_MAX)


def owned_name(endpoint: str, owner: str | None) -> str:
    """The name of the endpoint's objects: the endpoint and its owner, so two projects'
    models of one name in one namespace never share (or fight over) an object."""
    if not endpoint:
        raise BackendError("an endpoint needs a name")
    return resource_name(f"{endpoint}-{owner}" if owner else endpoint)


def variant_label(variant: str) -> str:
    return dns_label(variant, VARIANT_MAX)
