"""Checking manifests before anything is sent, as the API server would.

Every manifest is validated before anything is sent when ``validate`` is on (the default; a
few milliseconds per object, and it keeps a bad setting from half-applying a plan): core
objects with ``kubernetes-validate`` in strict mode, the InferenceService against KServe's
CRD schema when ``crd_schema`` names its YAML file.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from ops.backends.base import BackendError
from ops.backends.kubernetes.manifests import without_nones
from ops.backends.kubernetes.names import KSERVE_VERSION


def validate_core_manifest(manifest: dict, kubernetes_version: str = "1.30") -> None:
    """Raise ``BackendError`` unless ``manifest`` is a valid core object (strict schema)."""
    import kubernetes_validate
    from kubernetes_validate.utils import VersionNotSupportedError

    what = f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise BackendError(f"{what} is not a valid Kubernetes {kubernetes_version} object: "
                           f"{e.message} at {path}") from e
    except (kubernetes_validate.SchemaNotFoundError, VersionNotSupportedError) as e:
        raise BackendError(f"{what} cannot be validated: {e}") from e


def _strict_structural(schema: Any) -> Any:
    """Make a CRD's structural schema reject unknown fields, as the API server does.

    The server prunes (or, with strict field validation, refuses) fields the schema does
    not declare, except under ``x-kubernetes-preserve-unknown-fields``; JSON Schema allows
    them unless ``additionalProperties`` is false, so it is added where pruning applies.
    """
    if isinstance(schema, list):
        return [_strict_structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    result = {k: _strict_structural(v) for k, v in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        result["additionalProperties"] = False
    return result


def _unique_map_keys(validator, keys, instance, schema):
    """``x-kubernetes-list-map-keys``: no two items of a map-list share their keys."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    import jsonschema

    seen = set()
    for item in instance:
        if isinstance(item, dict):
            key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
            if key in seen:
                yield jsonschema.ValidationError(
                    f"duplicate entry for key(s) {', '.join(keys)}: {item!r}")
            seen.add(key)


def _unique_set_items(validator, list_type, instance, schema):
    """``x-kubernetes-list-type: set``: the items are unique."""
    if list_type == "set" and isinstance(instance, list):
        yield from validator.descend(instance, {"uniqueItems": True})


@functools.lru_cache(maxsize=4)
def inference_service_schema(crd_path: str) -> dict:
    """The ``v1beta1`` openAPIV3Schema of KServe's InferenceService CRD file, as written.

    Parsing the 2 MB YAML takes about a second, so schemas are cached per file.
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(crd_path, encoding="utf-8") as f:
            crd = yaml.load(f, Loader=loader)
        version = next(v for v in crd["spec"]["versions"] if v["name"] == KSERVE_VERSION)
        return version["schema"]["openAPIV3Schema"]
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as e:
        raise BackendError(f"cannot read the {KSERVE_VERSION} InferenceService schema from "
                           f"{crd_path}: {e!r}") from e


@functools.lru_cache(maxsize=4)
def inference_service_validator(crd_path: str):
    """A JSON Schema validator for ``serving.kserve.io/v1beta1`` InferenceService objects.

    Built from the CRD's ``openAPIV3Schema`` (an OpenAPI 3.0 schema: its keywords follow
    JSON Schema draft 4, e.g. boolean ``exclusiveMinimum``) with the ``x-kubernetes-*``
    rules the API server applies (pruning of unknown fields, map-list keys, sets).
    """
    import jsonschema

    kind = jsonschema.validators.extend(jsonschema.Draft4Validator, {
        "x-kubernetes-list-map-keys": _unique_map_keys,
        "x-kubernetes-list-type": _unique_set_items,
    })
    return kind(_strict_structural(inference_service_schema(crd_path)))


def validate_inference_service(manifest: dict, crd_path: str | Path,
                               kubernetes_version: str = "1.30") -> None:
    """Raise ``BackendError`` unless ``manifest`` satisfies the InferenceService CRD.

    The CRD schema leaves ``metadata`` open (the API server checks it as ObjectMeta), so
    the metadata is checked with the core ObjectMeta schema too.
    """
    validator = inference_service_validator(str(Path(crd_path).resolve()))
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = "/".join(str(p) for p in first.absolute_path) or "(top)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BackendError(f"InferenceService {manifest.get('metadata', {}).get('name')} does "
                           f"not satisfy the KServe CRD: {first.message} at {path}{more}")
    validate_core_manifest({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": manifest.get("metadata", {})}, kubernetes_version)



class ManifestValidator:
    """Validates each manifest a backend is about to send (nothing when ``enabled`` is off):
    the InferenceService against the CRD of ``crd_schema`` (when given), the rest strictly
    against the core schemas of ``kubernetes_version``."""

    def __init__(self, enabled: bool = True, kubernetes_version: str = "1.30",
                 crd_schema: str | None = None):
        self.enabled = enabled
        self.kubernetes_version = kubernetes_version
        self.crd_schema = crd_schema

    def __call__(self, manifest: dict) -> None:
        if not self.enabled:
            return
        body = without_nones(manifest)
        if manifest["kind"] == "InferenceService":
            if self.crd_schema:
                validate_inference_service(body, self.crd_schema, self.kubernetes_version)
        else:
            validate_core_manifest(body, self.kubernetes_version)
