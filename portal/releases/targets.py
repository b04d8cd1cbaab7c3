"""Deployment targets: the machine-level connections operators define, and what a project's
environment may choose on top of them.

A project owner must not be able to point the workers at a kubeconfig, an API host, an
executable or a folder: those run code or send requests with the portal's privileges. So
everything that names a machine-level resource lives in a *target* the operator defines
(``MODELGATE_TARGETS``, JSON: ``{"name": {"backend": "kubernetes", ...backend settings}}``);
an environment names its target and sets only what its backend declares safe per project
(``PROJECT_SETTINGS`` of each backend class: a JSON schema, unknown keys refused), with
values the target allows (``"allowed": {"namespace": [...], "instance_type": [...]}``).

Local targets give a port range (``"ports": "9100-9999"``); the portal allocates one port per
endpoint from it, unique across every project (``EndpointSlot``), and keeps each endpoint's
state under ``MODELGATE_SERVING_DIR/env-<id>``: neither is a setting anyone writes.
"""

from __future__ import annotations

import copy
import socket
from dataclasses import dataclass, field

import jsonschema
from django.conf import settings
from django.db import IntegrityError, transaction

from ops.backends import REGISTRY, backend_class
from ops.backends.base import BackendError
from portal.errors import ValidationFailed
from portal.prepared import Prepared

DEFAULT_TARGETS = {"local": {"backend": "local", "ports": "9100-9999"}}
# Keys of a target the portal reads itself; the rest are the backend's own settings.
TARGET_KEYS = {"backend", "allowed", "ports", "description"}
# Settings the portal hands a backend itself, never from a target or an environment.
PORTAL_OWNED = {"prediction_key", "owner", "state_dir", "port", "monitoring_labels"}


@dataclass(frozen=True)
class Target:
    name: str
    backend: str
    options: dict = field(default_factory=dict)
    allowed: dict = field(default_factory=dict)
    ports: tuple[int, int] | None = None
    description: str = ""


def _port_range(name: str, raw) -> tuple[int, int]:
    try:
        low, high = (raw.split("-", 1) if isinstance(raw, str) else raw)
        low, high = int(low), int(high)
    except (TypeError, ValueError):
        raise ValidationFailed(f"target {name}: ports must be a range like \"9100-9999\"",
                               code="invalid_target") from None
    if not 1024 <= low <= high <= 65535:
        raise ValidationFailed(f"target {name}: ports {low}-{high} must lie within 1024-65535",
                               code="invalid_target")
    return low, high


def parse_targets(raw: dict) -> dict[str, Target]:
    """The operator's targets, checked; ``ValidationFailed`` names what is wrong."""
    if not isinstance(raw, dict) or not raw:
        raise ValidationFailed("MODELGATE_TARGETS must be a JSON object of named targets",
                               code="invalid_target")
    found = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict) or spec.get("backend") not in REGISTRY:
            raise ValidationFailed(f"target {name}: backend must be one of "
                                   + ", ".join(sorted(REGISTRY)), code="invalid_target")
        forbidden = PORTAL_OWNED & set(spec)
        if forbidden:
            raise ValidationFailed(f"target {name}: {', '.join(sorted(forbidden))} are set by "
                                   "the portal, not by a target", code="invalid_target")
        allowed = spec.get("allowed", {})
        if not isinstance(allowed, dict) or not all(isinstance(v, list)
                                                    for v in allowed.values()):
            raise ValidationFailed(f"target {name}: allowed must map settings to lists",
                                   code="invalid_target")
        ports = None
        if spec["backend"] == "local":
            ports = _port_range(name, spec.get("ports", "9100-9999"))
        found[name] = Target(name=name, backend=spec["backend"],
                             options={k: v for k, v in spec.items() if k not in TARGET_KEYS},
                             allowed=allowed, ports=ports,
                             description=str(spec.get("description", "")))
    return found


def targets() -> dict[str, Target]:
    return parse_targets(settings.MODELGATE_TARGETS or DEFAULT_TARGETS)


def target_named(name: str) -> Target:
    found = targets()
    if name not in found:
        raise ValidationFailed(f"no target named {name!r}; the operator defines: "
                               + ", ".join(sorted(found)), code="unknown_target", field="target")
    return found[name]


def default_target(backend: str) -> Target:
    """The first target of a backend kind (environments created without naming one)."""
    for target in targets().values():
        if target.backend == backend:
            return target
    raise ValidationFailed(f"the operator defines no {backend} target (MODELGATE_TARGETS)",
                           code="unknown_target", field="target")


def project_schema(target: Target) -> dict:
    """The JSON schema of an environment's settings on ``target``: its backend's per-project
    settings, each restricted to the values the target allows."""
    schema = copy.deepcopy(backend_class(target.backend).PROJECT_SETTINGS)
    schema["additionalProperties"] = False
    properties = schema.setdefault("properties", {})
    for key, values in target.allowed.items():
        if key in properties:
            properties[key]["enum"] = values
    for key, default_key in (("namespace", "namespace"), ("instance_type", "instance_type")):
        if key in properties and key not in target.allowed:
            # Without an allow-list a project may only use the target's own value.
            properties[key]["enum"] = [target.options.get(default_key) or
                                       ("default" if key == "namespace" else "ml.m5.large")]
    return schema


def check_settings(target: Target, values: dict) -> None:
    """Refuse an environment's settings the target does not allow (unknown keys included);
    the error's field is the setting's path (``settings.namespace``)."""
    if not isinstance(values, dict):
        raise ValidationFailed("settings must be a JSON object", code="invalid_settings",
                               field="settings")
    validator = jsonschema.Draft202012Validator(project_schema(target))
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.path))
    if errors:
        detail, path = _settings_error(target, values, errors[0])
        raise ValidationFailed(detail, code="invalid_settings",
                               field=".".join(("settings", *map(str, path))))


_TYPE_WORDS = {"string": "a string", "object": "a JSON object", "integer": "a whole number",
               "number": "a number", "boolean": "true or false", "array": "a list"}
# jsonschema's refusal → a sentence about ``where`` (its messages quote Python reprs).
_SCHEMA_WORDS = {
    "enum": lambda e: "must be one of " + ", ".join(map(str, e.validator_value)),
    "type": lambda e: f"must be {_TYPE_WORDS.get(e.validator_value, e.validator_value)}",
    "pattern": lambda e: f"does not have the form {e.validator_value}",
    "maxLength": lambda e: f"is longer than {e.validator_value} characters",
    "maxProperties": lambda e: f"has more than {e.validator_value} entries",
    "minimum": lambda e: f"must be at least {e.validator_value}",
    "maximum": lambda e: f"must be at most {e.validator_value}",
}


def _settings_error(target: Target, values: dict, error) -> tuple[str, list]:
    """What a person reads for jsonschema's ``error``, and the path of the setting at fault."""
    path = list(error.path)
    if error.validator == "additionalProperties" and not path:
        properties = project_schema(target).get("properties", {})
        unknown = sorted(set(values) - set(properties))
        allowed = (f"may set only {', '.join(sorted(properties))}" if properties
                   else "sets nothing")
        return (f"{', '.join(unknown)} cannot be set here: a {target.backend} environment "
                f"{allowed}; machine-level settings (hosts, credentials, images, programs, "
                "folders, ports) belong to the operator's target"), unknown[:1]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return (f"settings.{missing[0]} is required on a {target.backend} target",
                [*path, missing[0]])
    if "propertyNames" in error.schema_path:  # a key inside an object setting (env)
        where = ".".join(("settings", *map(str, path)))
        return (f"{where}: {error.instance} cannot be set; valid: "
                + ", ".join(map(str, error.validator_value)), [*path, error.instance])
    where = ".".join(("settings", *map(str, path)))
    words = _SCHEMA_WORDS.get(error.validator)
    return (f"{where} {words(error)}" if words else f"{where}: {error.message}"), path


def safe_settings(target: Target, values: dict) -> dict:
    """The environment's settings that its target's schema accepts, key by key; anything
    else (rows written before targets existed, a namespace no longer allowed) is ignored,
    never handed to a backend."""
    properties = project_schema(target).get("properties", {})
    return {k: v for k, v in (values or {}).items()
            if k in properties and jsonschema.Draft202012Validator(properties[k]).is_valid(v)}


# Local ports -------------------------------------------------------------------------------

def _free_on_host(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@Prepared
def _allocated_port(environment_id: int, model_id: int):
    """The endpoint's port if allocated (read by every page that shows what serves)."""
    from portal.releases.models import EndpointSlot

    return (EndpointSlot.objects.filter(environment_id=environment_id, model_id=model_id)
            .order_by("pk").values_list("port", flat=True)[:1])


def allocate_port(environment, model, target: Target) -> int:
    """The endpoint's port: allocated once from the target's range, unique across every
    project and environment (a unique constraint settles two workers racing for one)."""
    from portal.releases.models import EndpointSlot

    port = _allocated_port.first(environment.pk, model.pk)
    if port is not None:
        return port
    low, high = target.ports
    host = target.options.get("host", "127.0.0.1")
    for _ in range(5):
        taken = set(EndpointSlot.objects.filter(port__gte=low, port__lte=high)
                    .values_list("port", flat=True))
        port = next((p for p in range(low, high + 1)
                     if p not in taken and _free_on_host(host, p)), None)
        if port is None:
            raise BackendError(f"target {target.name} has no free port left in {low}-{high}")
        try:
            with transaction.atomic():
                return EndpointSlot.objects.create(environment=environment, model=model,
                                                   port=port).port
        except IntegrityError:
            slot = EndpointSlot.objects.filter(environment=environment, model=model).first()
            if slot is not None:  # another worker allocated this endpoint first
                return slot.port
    raise BackendError(f"could not allocate a port in {low}-{high}: too many concurrent "
                       "allocations")


def local_host(environment) -> str:
    """The address a local environment's model servers listen on (its target's host)."""
    return _target_of(environment).options.get("host", "127.0.0.1")


def _target_of(environment) -> Target:
    try:
        return (target_named(environment.target) if environment.target
                else default_target(environment.backend))
    except ValidationFailed as e:  # the operator removed or renamed it since
        raise BackendError(f"environment {environment.name}: {e.detail}") from e


def portal_owned(environment, target: Target) -> dict:
    """What the portal gives every backend of ``environment``: the owner mark, and on
    Kubernetes the labels a Prometheus puts on its model pods' series (decision 22)."""
    owned = {"owner": f"env-{environment.pk}"}
    if target.backend == "kubernetes":
        owned["monitoring_labels"] = {"project": environment.project.slug,
                                      "environment": environment.name}
    return owned


def backend_options(environment, model, prediction_key: str) -> dict:
    """Everything a backend is built with: the target's settings, the environment's safe
    settings, and what the portal owns (key, owner mark, folder, port)."""
    target = _target_of(environment)
    if target.backend != environment.backend:
        raise BackendError(f"environment {environment.name} is a {environment.backend} "
                           f"environment but its target {target.name} is {target.backend}")
    options = {**target.options, **safe_settings(target, environment.settings)}
    options["prediction_key"] = prediction_key
    options.update(portal_owned(environment, target))
    if target.backend == "local":
        options["state_dir"] = str(settings.MODELGATE_SERVING_DIR / f"env-{environment.pk}")
        options["ports"] = {model.name: allocate_port(environment, model, target)}
    return options
