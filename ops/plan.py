"""The serving plan: the whole desired state of one endpoint, handed to backends and model
servers alike (DESIGN.md §5). Backends converge to it; applying a plan twice changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from ops.exceptions import PermanentError


class PlanError(PermanentError):
    code = "invalid_plan"


@dataclass(frozen=True)
class Variant:
    """One model version serving a share of an endpoint's traffic."""

    name: str
    version_id: int
    artifact_uri: str
    sha256: str
    weight: float
    replicas: int = 1
    trusted_unsafe: bool = False  # load pickle/joblib (the portal never asks: it sends skops)
    input_schema: list = field(default_factory=list)
    baseline: dict = field(default_factory=dict)  # per-feature bin edges for drift metrics
    task: str = "classification"
    trusted_types: tuple = ()  # skops types trusted beyond ops.artifacts' own (the operator's)
    # The version's number as people know it (v4); ``version_id`` is the registry's row id.
    # Plans written before numbers were carried have none (see ``version``).
    version_number: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "trusted_types", tuple(self.trusted_types))
        if self.version_number is not None:
            object.__setattr__(self, "version_number", int(self.version_number))

    @property
    def version(self) -> int:
        """The version a model server reports: its number, or the id for older plans."""
        return self.version_number if self.version_number is not None else self.version_id

    def to_dict(self) -> dict:
        """The variant as plain data; an absent number is left out, so a plan written before
        numbers serializes (and hashes) exactly as it did then."""
        data = asdict(self)
        if data["version_number"] is None:
            del data["version_number"]
        return data


@dataclass(frozen=True)
class ServingPlan:
    """Desired state of an endpoint: its variants and their traffic weights.

    ``generation`` increases with every new plan so servers and backends can tell which
    plan they run; ``shadow`` names a variant that receives a copy of traffic whose answers
    are discarded; ``sticky`` makes weighted assignment deterministic per unit id (A/B).
    """

    endpoint: str
    variants: tuple[Variant, ...]
    generation: int = 1
    shadow: str | None = None
    sticky: bool = False

    def __post_init__(self):
        names = [v.name for v in self.variants]
        if not self.variants:
            raise PlanError(f"plan for {self.endpoint} has no variants")
        if len(set(names)) != len(names):
            raise PlanError(f"plan for {self.endpoint} repeats a variant name: {names}")
        if any(v.weight < 0 for v in self.variants):
            raise PlanError("variant weights cannot be negative")
        live = [v for v in self.variants if v.name != self.shadow]
        if sum(v.weight for v in live) <= 0:
            raise PlanError(f"plan for {self.endpoint} sends no traffic anywhere")
        if self.shadow is not None and self.shadow not in names:
            raise PlanError(f"shadow variant {self.shadow} is not in the plan")

    def weights(self) -> dict[str, float]:
        """Traffic shares of the live (non-shadow) variants, normalised to sum to 1."""
        live = [v for v in self.variants if v.name != self.shadow]
        total = sum(v.weight for v in live)
        return {v.name: v.weight / total for v in live}

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "variants": [v.to_dict() for v in self.variants]},
                          sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ServingPlan:
        try:
            # Fields a newer portal added are left out, not refused: a model server still
            # running an older image keeps loading the plans written after an upgrade.
            known = {f.name for f in fields(Variant)}
            variants = tuple(Variant(**{k: x for k, x in v.items() if k in known})
                             for v in data["variants"])
            return cls(endpoint=data["endpoint"], variants=variants,
                       generation=int(data.get("generation", 1)), shadow=data.get("shadow"),
                       sticky=bool(data.get("sticky", False)))
        except (KeyError, TypeError, ValueError) as e:
            raise PlanError(f"malformed serving plan: {e}") from e

    @classmethod
    def from_json(cls, text: str) -> ServingPlan:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise PlanError(f"serving plan is not JSON: {e}") from e
