"""A mode: one way of running an endpoint's variants on Kubernetes (KServe or Deployments).

The facade (``KubernetesBackend``) picks one mode when it is built and hands it the cluster
client, the manifest builder and the validator; a mode converges, observes and deletes, and
says which pods serve a variant (blue/green's check sends requests to them).

Every apply is fenced by generation on the mode's main object, the one recording the
endpoint's plan (generation, digest, variants): it is read first and judged
(``check_generation``: nothing is written for an older plan), the other objects are
converged, and it is written last, guarded by the ``resourceVersion`` read. A write by
anyone else in between (another worker's apply, a controller's status update) makes that
write fail with 409, and the apply starts over from reading it, so of two applies racing
the older one is refused once the newer is recorded, and never recorded after it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from ops.backends.base import ObservedState, check_generation
from ops.backends.kubernetes.client import KubeClient, WriteConflict
from ops.backends.kubernetes.manifests import (
    ManifestBuilder,
    recorded_digest,
    recorded_generation,
)
from ops.plan import ServingPlan

# How often an apply whose guarded write lost a race starts over before it gives up
# (``WriteConflict``, transient: the rollout worker retries later).
CONFLICT_ATTEMPTS = 5


class Mode(ABC):
    name: str = ""
    # The object recording the endpoint's plan: its generation fences every apply, and its
    # owner decides whether the endpoint may be deleted.
    main_kind: str = ""

    def __init__(self, client: KubeClient, manifests: ManifestBuilder,
                 validate: Callable[[dict], None]):
        self.client = client
        self.manifests = manifests
        self.validate = validate

    @property
    def namespace(self) -> str:
        return self.client.namespace

    def apply(self, plan: ServingPlan) -> None:
        """Make the cluster hold what serves ``plan``, fenced by generation (see the
        module's docstring); the facade observes afterwards."""
        name = self.manifests.name(plan.endpoint)
        what = f"{self.main_kind} {name}"
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            current = self.client.read(self.main_kind, name)
            self.client.check_owner(current, what)
            meta = (current or {}).get("metadata") or {}
            check_generation(plan, recorded_generation(meta), recorded_digest(meta), what)
            try:
                self.converge(plan, current)
                return
            except WriteConflict:
                if attempt == CONFLICT_ATTEMPTS:
                    raise

    @abstractmethod
    def converge(self, plan: ServingPlan, current: dict | None) -> None:
        """Write what serves ``plan``, given the main object as read (``current``); the main
        object last, with ``guarded=True`` (raising ``WriteConflict`` if it changed)."""

    @abstractmethod
    def observe(self, endpoint: str) -> ObservedState:
        """What the cluster runs for ``endpoint``, read from the objects this mode makes."""

    @abstractmethod
    def delete_workloads(self, name: str) -> None:
        """Delete the objects that run the pods of the endpoint whose objects are ``name``."""

    @abstractmethod
    def pod_labels(self, endpoint: str, variant: str) -> dict[str, str] | None:
        """The labels of the pods serving ``variant``; None when no pod can serve it."""

    def delete(self, endpoint: str) -> None:
        """Remove what this mode creates for ``endpoint``; what is gone already is fine."""
        name = self.manifests.name(endpoint)
        main = self.main_kind
        self.client.check_owner(self.client.read(main, name), f"{main} {name}")
        self.delete_workloads(name)
        for config_map in self.client.list("ConfigMap", name):
            self.client.delete("ConfigMap", config_map["metadata"]["name"])
        # By name: listing Secrets would need the right to read every Secret in the namespace.
        self.client.delete("Secret", self.manifests.key_secret_name(endpoint))

    def converge_key_secret(self, endpoint: str) -> None:
        """The Secret with the key the endpoint's servers sign prediction ids with."""
        secret = self.manifests.key_secret(endpoint)
        if secret is None:
            return
        self.validate(secret)
        self.client.converge(secret, self.client.read("Secret", secret["metadata"]["name"]))

    def foreign_state(self, endpoint: str) -> ObservedState:
        """Another environment's endpoint of the same name: never reported as this one's."""
        return ObservedState(endpoint=endpoint, exists=True, ready=False,
                             detail=f"{self.manifests.name(endpoint)} in namespace "
                                    f"{self.namespace} belongs to another environment")
