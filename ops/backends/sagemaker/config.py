"""Plan to endpoint configuration, and back: the ProductionVariants a plan asks for, and
what an endpoint and its EndpointConfig say they run.

One ProductionVariant per live variant (a ``Slot``): ``VariantName`` = the plan's variant
name, ``InitialVariantWeight`` = its normalised weight, ``InitialInstanceCount`` =
``max(replicas, initial_instance_count)``, ``InstanceType`` = ``instance_type``. Each runs a
Model built from the variant's ``container_plan`` (see ``packaging.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from ops.backends.base import BackendError, ObservedVariant
from ops.backends.sagemaker.names import MODEL_SUFFIX, NAME_LIMIT, VALID_NAME
from ops.plan import ServingPlan, Variant

_WEIGHT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Slot:
    """One ProductionVariant as the plan wants it or as SageMaker has it."""

    variant: str
    model: str
    instance_type: str | None
    count: int | None
    weight: float

    def shape(self) -> tuple:
        return (self.variant, self.model, self.instance_type)


def check_plan(plan: ServingPlan) -> None:
    if plan.shadow is not None:
        raise BackendError(f"plan for {plan.endpoint} shadows {plan.shadow}: the sagemaker "
                           "backend does not serve shadow variants")
    for variant in plan.variants:
        if len(variant.name) > NAME_LIMIT or not VALID_NAME.match(variant.name):
            raise BackendError(f"variant name {variant.name!r} is not a valid SageMaker "
                               "variant name (letters, digits and inner hyphens, at most 63)")


def container_plan(endpoint: str, variant: Variant) -> ServingPlan:
    """The plan baked into a variant's tarball: that variant alone, its artifact beside it.

    Weight, replicas and generation are fixed, so the tarball (and the Model built on it)
    depends on the version alone and survives any number of weight changes."""
    suffix = Path(urlsplit(variant.artifact_uri).path).suffix
    member = "artifact" + (suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else "")
    return ServingPlan(endpoint=endpoint, generation=1, variants=(
        replace(variant, artifact_uri=member, weight=1.0, replicas=1),))


def shapes(slots: list[Slot]) -> set[tuple]:
    return {s.shape() for s in slots}


def same_traffic(current: list[Slot], desired: list[Slot]) -> bool:
    """Same normalised weights and instance counts, variant by variant."""
    def normalised(slots):
        total = sum(s.weight for s in slots) or 1.0
        return {s.variant: (s.weight / total, s.count) for s in slots}

    have, want = normalised(current), normalised(desired)
    return have.keys() == want.keys() and all(
        abs(have[n][0] - want[n][0]) <= _WEIGHT_TOLERANCE and have[n][1] == want[n][1]
        for n in want)


def desired_slots(plan: ServingPlan, model_name: Callable[[Variant], str],
                  instance_type: str, initial_instance_count: int) -> list[Slot]:
    """The ProductionVariants ``plan`` asks for; ``model_name`` names each variant's Model."""
    weights = plan.weights()
    return [Slot(variant=v.name, model=model_name(v), instance_type=instance_type,
                 count=max(int(v.replicas), initial_instance_count),
                 weight=round(weights[v.name], 6))
            for v in plan.variants]


def deployed_slots(endpoint: dict, config: dict) -> list[Slot]:
    """The endpoint's variants: models and types from its config, weights from itself."""
    live = {pv["VariantName"]: pv for pv in endpoint.get("ProductionVariants") or []}
    slots = []
    for pv in config["ProductionVariants"]:
        runtime = live.get(pv["VariantName"], {})
        slots.append(Slot(
            variant=pv["VariantName"], model=pv["ModelName"],
            instance_type=pv.get("InstanceType"),
            count=runtime.get("DesiredInstanceCount", pv.get("InitialInstanceCount")),
            weight=float(runtime.get("DesiredWeight", pv.get("InitialVariantWeight", 1.0)))))
    return slots


def configured_slots(config: dict) -> list[Slot]:
    """The variants an EndpointConfig was created with."""
    return [Slot(pv["VariantName"], pv["ModelName"], pv.get("InstanceType"),
                 pv.get("InitialInstanceCount"), float(pv.get("InitialVariantWeight", 1.0)))
            for pv in config["ProductionVariants"]]


def production_variants(slots: list[Slot]) -> list[dict]:
    """``CreateEndpointConfig``'s ProductionVariants for ``slots``."""
    return [{"VariantName": s.variant, "ModelName": s.model,
             "InitialInstanceCount": s.count, "InstanceType": s.instance_type,
             "InitialVariantWeight": s.weight} for s in slots]


def weights_and_capacities(slots: list[Slot]) -> list[dict]:
    """``UpdateEndpointWeightsAndCapacities``'s DesiredWeightsAndCapacities for ``slots``."""
    return [{"VariantName": s.variant, "DesiredWeight": s.weight,
             "DesiredInstanceCount": s.count} for s in slots]


def observed_variants(described: dict, config: dict, in_service: bool) -> list[ObservedVariant]:
    """The variants an endpoint serves (``DescribeEndpoint``), with the versions of the
    Models its EndpointConfig names and their share of the current weights."""
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
        version = MODEL_SUFFIX.search(model)
        replicas = int(pv.get("CurrentInstanceCount", pv.get("DesiredInstanceCount", 0)))
        variants.append(ObservedVariant(
            name=pv["VariantName"], version_id=int(version.group(1)) if version else 0,
            weight=round(current_weight(pv) / total, 6) if total > 0 else 0.0,
            ready=in_service and replicas >= 1, replicas=replicas))
    return variants
