"""A stateful Kubernetes API emulator over HTTP, and backends pointed at it.

kmock's ``KubernetesEmulator`` keeps objects in memory and serves them over real HTTP; it
is an aiohttp app, so it runs on its own event loop in a thread and the (synchronous)
official client talks to it like to any API server. ``ClusterEmulator`` fixes the quirks
that matter to a client (kmock 0.8):

* create answers 200; a real server answers 201 Created;
* ``GET /version/`` (trailing slash, as some clients ask) answers 404;
* no server-filled metadata: ``namespace``, ``uid``, ``creationTimestamp``,
  ``resourceVersion`` (bumped only by a write that changes the object, as on a real
  server) and ``generation`` (bumped when ``spec`` changes);
* listing an undeclared resource type answers 404: ConfigMaps, Services, Deployments and
  InferenceServices are declared with their kinds;
* a patch carrying ``metadata.resourceVersion`` is a precondition (optimistic concurrency):
  kmock 0.8 ignores it and merges whatever comes; here a stale one answers 409 Conflict
  and changes nothing, as on a real server.

Left as they are (the backend must cope): label selectors are ignored; a dict patch is a
JSON merge patch whatever its content type (no strategic merge); PUT replace answers 404;
no controllers run, so objects never get a ``status`` unless a test calls
``EmulatedCluster.reconcile`` (what KServe's and the Deployment controller would write, the
model loaded by the model server's own loader).

A plugin of tests/conftest.py: ``kube_cluster`` is a fresh emulator per test (starting one
takes about 20 ms, so no test shares another's objects or request log),
``kubernetes_backend_factory(mode="kserve", **settings)`` builds a ``KubernetesBackend``
pointed at it, ``kserve_crd_path`` is KServe's CRD (tests needing it skip when ``../shared``
is absent).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import kmock
import pytest

if TYPE_CHECKING:  # imported by the factory: every test run loads this plugin
    from ops.backends.kubernetes import KubernetesBackend


KSERVE_CRD = (Path(__file__).resolve().parents[2].parent / "shared" / "schemas" / "kserve"
              / "serving.kserve.io_inferenceservices.yaml")
TEST_NAMESPACE = "modelgate-test"
TEST_IMAGE = "registry.example.com/modelgate/server:1.0"

RESOURCES = {
    "v1/configmaps": ("ConfigMap", "configmap"),
    "v1/services": ("Service", "service"),
    "v1/pods": ("Pod", "pod"),
    "apps/v1/deployments": ("Deployment", "deployment"),
    "serving.kserve.io/v1beta1/inferenceservices": ("InferenceService", "inferenceservice"),
}
PLURALS = {kind: path.rsplit("/", 1)[-1] for path, (kind, _) in RESOURCES.items()}
_resource_versions = itertools.count(1000)


def _merge(value: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch, as the emulator applies every dict patch."""
    result = dict(value)
    for key, change in patch.items():
        if change is None:
            result.pop(key, None)
        elif isinstance(change, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], change)
        else:
            result[key] = change
    return result


class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the server-side behaviour a client relies on (module doc)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for path, (kind, singular) in RESOURCES.items():
            self.resources[path] = kmock.ResourceInfo(
                kind=kind, singular=singular, namespaced=True,
                verbs={"create", "delete", "get", "list", "patch", "watch"})
        self.fallback["get /version/"] << self._serve_server_version

    async def _handle(self, request: kmock.Request):
        writes = request.resource is not None and isinstance(request.data, dict)
        # One write at a time from the precondition check to the stored change: kmock's own
        # lock is taken later, inside the parent's handler.
        async with self._writing() if writes else contextlib.nullcontext():
            if writes and request.action == kmock.action.CREATE:
                self._stamp_created(request)
            elif writes and request.action == kmock.action.UPDATE and request.name:
                self._check_precondition(request)
                self._stamp_patched(request)
            response = await super()._handle(request)
        if (request.action == kmock.action.CREATE and response.status == 200
                and not response.prepared):
            response.set_status(201)
        return response

    def _writing(self) -> asyncio.Lock:
        if not hasattr(self, "_write_lock"):
            self._write_lock = asyncio.Lock()  # made on the emulator's own loop
        return self._write_lock

    def _check_precondition(self, request: kmock.Request) -> None:
        """A patch naming a ``resourceVersion`` applies only to that version (409 else)."""
        wanted = (request.data.get("metadata") or {}).get("resourceVersion")
        key = (request.resource, request.namespace, request.name)
        if wanted is None or key not in self.objects or self.objects[key].deleted:
            return
        found = (self.objects[key].raw.get("metadata") or {}).get("resourceVersion")
        if wanted != found:
            raise kmock.KubernetesError(
                status=409, reason="Conflict",
                message=f"Operation cannot be fulfilled on {request.resource.plural} "
                        f'"{request.name}": the object has been modified; please apply your '
                        "changes to the latest version and try again")

    @staticmethod
    def _stamp_created(request: kmock.Request) -> None:
        meta = request.data.setdefault("metadata", {})
        meta.setdefault("namespace", request.namespace)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        meta["resourceVersion"] = str(next(_resource_versions))
        if "spec" in request.data:
            meta["generation"] = 1

    def _stamp_patched(self, request: kmock.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return  # the emulator answers 404
        before = self.objects[key].raw
        after = _merge(before, request.data)
        if after == before:
            return  # a no-op write leaves resourceVersion alone, as on a real server
        meta = request.data.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(_resource_versions))
        if after.get("spec") != before.get("spec"):
            meta["generation"] = int(before.get("metadata", {}).get("generation", 0)) + 1


class EmulatedCluster:
    """A ``ClusterEmulator`` serving HTTP on a free loopback port from its own loop thread."""

    def __init__(self, namespace: str = TEST_NAMESPACE):
        self.namespace = namespace
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kmock",
                                        daemon=True)
        self.emulator: ClusterEmulator | None = None
        self._server: kmock.Server | None = None
        self.url = ""
        self._verdicts: dict[str, str] = {}  # plan text -> why it does not load

    def _run(self, coroutine, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def start(self) -> EmulatedCluster:
        self._thread.start()

        async def start():
            emulator = ClusterEmulator()
            await emulator.__aenter__()
            server = kmock.Server(emulator, host="127.0.0.1")
            await server.__aenter__()
            return emulator, server

        self.emulator, self._server = self._run(start())
        self.url = f"http://127.0.0.1:{self._server.port}"
        return self

    def stop_server(self) -> None:
        """Stop answering on the port (the API server goes down); objects stay readable."""
        if self._server is not None:
            server, self._server = self._server, None
            self._run(server.__aexit__(None, None, None))

    def close(self) -> None:
        self.stop_server()
        if self.emulator is not None:
            self._run(self.emulator.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # What the emulator holds -----------------------------------------------------------------

    def _key(self, kind: str, name: str):
        group_version = "v1" if kind in ("ConfigMap", "Service", "Pod") else (
            "apps/v1" if kind == "Deployment" else "serving.kserve.io/v1beta1")
        return (kmock.resource(f"{group_version}/{PLURALS[kind]}"), self.namespace, name)

    def get(self, kind: str, name: str) -> dict | None:
        """The stored object, or None if it does not exist (never created or deleted)."""
        key = self._key(kind, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return self.emulator.objects[key].raw

    def reconcile(self) -> None:
        """What the controllers write once the pods have started (the emulator runs none),
        at the generation of each spec.

        The pods' model server loads the plan mounted from its ConfigMap (``file://``
        artifacts through the model server's own loader; other artifacts are taken to
        load). KServe: the InferenceService is ready on a new revision; a revision whose
        model does not load fails (``RevisionFailed``) and the last ready one keeps
        serving. Deployments: ready, or past their progress deadline
        (``ProgressDeadlineExceeded``) when their model does not load."""
        for (resource, namespace, name), obj in list(self.emulator.objects.items()):
            if namespace != self.namespace or obj.deleted:
                continue
            if resource.plural == PLURALS["InferenceService"]:
                self._reconcile_inference_service(name, obj)
            elif resource.plural == PLURALS["Deployment"]:
                self._reconcile_deployment(name, obj)

    def _reconcile_inference_service(self, name: str, obj) -> None:
        generation = obj.raw["metadata"].get("generation", 1)
        revision = f"{name}-predictor-{generation:05d}"
        predictor = obj.raw["spec"]["predictor"]
        why = self.model_fails(predictor["volumes"][0]["configMap"]["name"], "plan.json")
        if not why:
            obj.patch({"status": {
                "observedGeneration": generation,
                "conditions": [{"type": "Ready", "status": "True"}],
                "components": {"predictor": {"latestCreatedRevision": revision,
                                             "latestReadyRevision": revision}}}})
            return
        failed = {"status": "False", "reason": "RevisionFailed",
                  "message": f'Revision "{revision}" failed with message: {why}.'}
        before = ((obj.raw.get("status") or {}).get("components") or {}).get("predictor") or {}
        obj.patch({"status": {
            "observedGeneration": generation,
            "conditions": [{"type": "PredictorReady", **failed}, {"type": "Ready", **failed}],
            "components": {"predictor": {
                "latestCreatedRevision": revision,
                "latestReadyRevision": before.get("latestReadyRevision")}}}})

    def _reconcile_deployment(self, name: str, obj) -> None:
        generation = obj.raw["metadata"].get("generation", 1)
        replicas = obj.raw["spec"].get("replicas", 1)
        volume = obj.raw["spec"]["template"]["spec"]["volumes"][0]["configMap"]
        why = self.model_fails(volume["name"], volume["items"][0]["key"])
        if not why:
            obj.patch({"status": {
                "observedGeneration": generation, "replicas": replicas,
                "updatedReplicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [{"type": "Available", "status": "True",
                                "reason": "MinimumReplicasAvailable"},
                               {"type": "Progressing", "status": "True",
                                "reason": "NewReplicaSetAvailable"}]}})
            return
        obj.patch({"status": {
            "observedGeneration": generation, "replicas": replicas,
            "updatedReplicas": replicas, "readyReplicas": None, "availableReplicas": None,
            "conditions": [{"type": "Available", "status": "False",
                            "reason": "MinimumReplicasUnavailable"},
                           {"type": "Progressing", "status": "False",
                            "reason": "ProgressDeadlineExceeded",
                            "message": f'ReplicaSet "{name}-5d8f7" has timed out '
                                       "progressing."}]}})

    def model_fails(self, config_map: str, key: str) -> str:
        """Why the model server cannot serve the plan at ``key`` of ``config_map`` (empty
        when it can); a verdict is kept per plan text: loading takes tens of ms."""
        text = ((self.get("ConfigMap", config_map) or {}).get("data") or {}).get(key)
        if text is None:
            return f"configmap {config_map!r} has no key {key!r}"
        if text not in self._verdicts:
            self._verdicts[text] = _load_failure(text)
        return self._verdicts[text]

    def names(self, kind: str) -> set[str]:
        """Names of the live objects of ``kind`` in the test namespace."""
        plural = PLURALS[kind]
        return {name for (resource, namespace, name), obj in self.emulator.objects.items()
                if resource.plural == plural and namespace == self.namespace
                and not obj.deleted}

    def versions(self) -> Iterator[tuple[str, dict]]:
        """Every state every object was in after each write: (kind, object)."""
        kinds = {plural: kind for kind, plural in PLURALS.items()}
        for (resource, _, _), obj in self.emulator.objects.items():
            for version in obj.history:
                if version is not None:
                    yield kinds.get(resource.plural, resource.plural), dict(version.raw)

    def add_pod(self, name: str, labels: dict, ready: bool = True,
                annotations: dict | None = None, containers: list[dict] | None = None) -> None:
        """A pod as a controller would have made it (the emulator runs none); ``containers``
        its ``containerStatuses``."""
        self.emulator.objects[self._key("Pod", name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace, "labels": labels,
                         "annotations": annotations or {}},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": str(ready)}],
                       "containerStatuses": containers or []},
        }

    def answer_proxy(self, pod: str, path: str, status: int = 200) -> list:
        """Answer POSTs through the API server's pod proxy to ``pod:8080`` at ``path``;
        returns the list the received bodies are appended to."""
        received = []

        def answer(request: kmock.Request):
            received.append(request.data)
            return kmock.Response(status=status, payload={"outputs": []})

        route = f"post /api/v1/namespaces/{self.namespace}/pods/{pod}:8080/proxy{path}"
        self.emulator[route] << answer
        return received

    def requests(self) -> list[kmock.Request]:
        return list(self.emulator)

    def writes(self) -> list[kmock.Request]:
        """Requests that could change state (create, patch, replace, delete)."""
        return [r for r in self.requests()
                if r.method in (kmock.method.POST, kmock.method.PATCH, kmock.method.PUT,
                                kmock.method.DELETE)]


def _load_failure(plan_text: str) -> str:
    """Why the model server would not load the plan (``file://`` artifacts only), or ''."""
    import tempfile

    from ops.plan import ServingPlan
    from ops.serving.exceptions import VariantLoadError
    from ops.serving.variants import BatchingOptions, load_variant

    for variant in ServingPlan.from_json(plan_text).variants:
        if not variant.artifact_uri.startswith("file://"):
            continue
        with tempfile.TemporaryDirectory(prefix="kube-emulator-") as work:
            try:
                load_variant(variant, base_dir=Path(work), executor=None,
                             batching=BatchingOptions())
            except VariantLoadError as e:
                return str(e)
    return ""


def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture()
def kube_cluster() -> Iterator[EmulatedCluster]:
    """A fresh, empty emulated cluster for one test."""
    cluster = EmulatedCluster().start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture()
def kserve_crd_path() -> Path:
    """KServe's InferenceService CRD, shared by the project (never copied into the repo)."""
    if not KSERVE_CRD.is_file():
        pytest.skip(f"KServe's CRD is not available at {KSERVE_CRD} (../shared is absent)")
    return KSERVE_CRD


@pytest.fixture()
def kubernetes_backend_factory(kube_cluster) -> Callable[..., KubernetesBackend]:
    """``factory(mode="kserve", **settings)`` -> a KubernetesBackend on the emulated cluster.

    Backends validate every manifest they send; InferenceServices against KServe's CRD
    when ``../shared`` is present.
    """

    from ops.backends.kubernetes import KubernetesBackend

    def factory(mode: str = "kserve", **settings) -> KubernetesBackend:
        options = {"namespace": kube_cluster.namespace, "image": TEST_IMAGE, "mode": mode,
                   "host": kube_cluster.url, "timeout": 5, "validate": True,
                   "crd_schema": str(KSERVE_CRD) if KSERVE_CRD.is_file() else None}
        options.update(settings)
        return KubernetesBackend(**options)

    return factory
