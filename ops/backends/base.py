"""The backend contract: ``apply(plan)``, ``observe(endpoint)``, ``delete(endpoint)``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ops.exceptions import PermanentError, TransientError
from ops.plan import ServingPlan

if TYPE_CHECKING:
    from ops.analysis import Analyzer


class BackendError(PermanentError):
    """The platform refused the plan or the configuration is wrong; retrying cannot help."""

    code = "backend_error"


class BackendUnavailable(TransientError):
    """The platform could not be reached or timed out; the same call may succeed later."""

    code = "backend_unavailable"


@dataclass(frozen=True)
class ObservedVariant:
    name: str
    version_id: int
    weight: float
    ready: bool
    replicas: int = 1


@dataclass(frozen=True)
class ObservedState:
    """What the platform runs now for an endpoint."""

    endpoint: str
    exists: bool
    generation: int | None = None
    ready: bool = False
    variants: tuple[ObservedVariant, ...] = ()
    url: str | None = None
    detail: str = ""
    extra: dict = field(default_factory=dict)

    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self.variants}


class Backend(ABC):
    """Converges an endpoint to a plan. Implementations keep no state of their own that the
    platform does not hold too, so any process can pick up where another stopped."""

    kind: str = ""
    # What a project's environment may set for this backend (JSON schema; the portal refuses
    # anything else). Machine-level settings (hosts, credentials, images, executables,
    # folders, ports) are the operator's and never appear here.
    PROJECT_SETTINGS: dict = {"type": "object", "properties": {}}

    @abstractmethod
    def apply(self, plan: ServingPlan) -> ObservedState:
        """Make the endpoint serve ``plan`` (create it if needed) and return what it observes.

        Applying the plan the endpoint already serves changes nothing. Raises
        ``BackendError`` when the platform refuses the plan, ``BackendUnavailable`` when it
        cannot be reached.
        """

    @abstractmethod
    def observe(self, endpoint: str) -> ObservedState:
        """What the platform runs for ``endpoint`` now (``exists=False`` if nothing)."""

    @abstractmethod
    def delete(self, endpoint: str) -> None:
        """Remove the endpoint and everything created for it; deleting twice is harmless."""

    def smoke(self, endpoint: str, variant: str, rows: list[list[float]], count: int) -> int:
        """Send ``count`` requests of ``rows`` to one variant directly; return how many
        succeeded. Blue/green uses it to give an idle candidate a sample before the switch.

        Backends whose endpoints the portal cannot reach return 0 (the check then stays
        inconclusive and the rollout pauses for a person).
        """
        return 0

    def analyzer(self) -> Analyzer | None:
        """The analyzer that measures this backend's endpoints, or ``None`` for the portal's
        Prometheus (which scrapes the model servers' own ``/metrics``)."""
        return None
