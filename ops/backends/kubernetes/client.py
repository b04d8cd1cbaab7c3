"""The Kubernetes API at arm's length: one namespace's objects, read, converged, deleted.

Writes are create-or-merge-patch of only what differs from the object read (applying the
same manifest twice writes nothing). An object labelled for another owner (environment) is
never patched or deleted. A ``guarded`` write is optimistic concurrency: it only succeeds on
the object as it was read (a patch carries the ``resourceVersion`` read, which the API
server checks; a create fails if the object appeared meanwhile) and raises ``WriteConflict``
otherwise, for the caller to read again and judge anew. Errors from the client never cross
the boundary: ``BackendUnavailable`` for what may pass (connection errors, timeouts, 5xx,
429, write conflicts), ``BackendError`` otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException, OpenApiException
from kubernetes.config.config_exception import ConfigException

from ops.backends.base import BackendError, BackendUnavailable
from ops.backends.kubernetes.manifests import contains, merge_patch_body, without_nones
from ops.backends.kubernetes.names import (
    ENDPOINT_LABEL,
    KSERVE_GROUP,
    KSERVE_PLURAL,
    KSERVE_VERSION,
    MANAGED_BY,
    OWNER_LABEL,
)

MERGE_PATCH = "application/merge-patch+json"
# What a request through the API server's pod proxy may raise (``KubeClient.post_to_pod``).
PROXY_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


class WriteConflict(BackendUnavailable):
    """A guarded write found the object changed since it was read (409): read it again."""

    code = "write_conflict"


def api_client(kubeconfig=None, context=None, in_cluster=False, host=None, verify_ssl=True,
               retries=1) -> k8s.ApiClient:
    """A client of the API at ``host`` (no credentials: ``kubectl proxy``, tests), of the
    pod's service account (``in_cluster``), or of a kubeconfig file and context."""
    configuration = k8s.Configuration()
    try:
        if host:
            configuration.host = host.rstrip("/")
        elif in_cluster:
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(config_file=kubeconfig, context=context,
                                        client_configuration=configuration)
    except (ConfigException, OSError, TypeError, ValueError) as e:
        raise BackendError(f"cannot configure the Kubernetes client: {e}") from e
    configuration.verify_ssl = verify_ssl
    configuration.retries = retries
    return k8s.ApiClient(configuration)


@dataclass(frozen=True)
class _Kind:
    """How to read, create, patch, delete and list one kind of object in a namespace."""

    name: str
    read: Callable
    create: Callable
    patch: Callable
    delete: Callable
    list: Callable


def _namespaced(kind: str, api, suffix: str, ns: str) -> _Kind:
    """A built-in kind, by the client's method names (``read_namespaced_<suffix>``...)."""
    verb = {v: getattr(api, f"{v}_namespaced_{suffix}")
            for v in ("read", "create", "patch", "delete", "list")}
    return _Kind(
        kind,
        read=lambda n, **kw: verb["read"](n, ns, **kw),
        create=lambda b, **kw: verb["create"](ns, b, **kw),
        patch=lambda n, b, **kw: verb["patch"](n, ns, b, **kw),
        delete=lambda n, **kw: verb["delete"](n, ns, **kw),
        list=lambda s, **kw: verb["list"](ns, label_selector=s, **kw))


def _kinds(api: k8s.ApiClient, ns: str) -> dict[str, _Kind]:
    core, apps, custom = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.CustomObjectsApi(api)
    isvc = (KSERVE_GROUP, KSERVE_VERSION, ns, KSERVE_PLURAL)
    kinds = [_namespaced("ConfigMap", core, "config_map", ns),
             _namespaced("Service", core, "service", ns),
             _namespaced("Secret", core, "secret", ns),
             _namespaced("Deployment", apps, "deployment", ns),
             _Kind(
                 "InferenceService",
                 read=lambda n, **kw: custom.get_namespaced_custom_object(*isvc, n, **kw),
                 create=lambda b, **kw: custom.create_namespaced_custom_object(*isvc, b, **kw),
                 patch=lambda n, b, **kw: custom.patch_namespaced_custom_object(
                     *isvc, n, b, **kw),
                 delete=lambda n, **kw: custom.delete_namespaced_custom_object(
                     *isvc, n, **kw),
                 list=lambda s, **kw: custom.list_namespaced_custom_object(
                     *isvc, label_selector=s, **kw))]
    return {kind.name: kind for kind in kinds}


class KubeClient:
    """One namespace of one cluster, as the backend sees it: every client error is
    translated here, and objects of another ``owner`` are never changed."""

    def __init__(self, api: k8s.ApiClient, namespace: str, timeout: float,
                 owner: str | None = None):
        self.api = api
        self.namespace = namespace
        self.timeout = timeout
        self.owner = owner
        self._kinds = _kinds(api, namespace)

    def call(self, what: str, fn: Callable, *args, missing_ok: bool = False,
             conflict_ok: bool = False, **kwargs) -> dict | None:
        """One API call; its JSON answer, or None for a 404 (409) allowed by the caller."""
        try:
            response = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            body = response.data
        except ApiException as e:
            if (e.status == 404 and missing_ok) or (e.status == 409 and conflict_ok):
                return None
            raise self.translate(what, e) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:  # refused, reset, timed out...
            raise BackendUnavailable(f"cannot {what}: the Kubernetes API at "
                                     f"{self.api.configuration.host} did not answer ({e})") from e
        except (OpenApiException, TypeError, ValueError) as e:  # incl. pydantic's errors
            raise BackendError(f"cannot {what}: the Kubernetes client refused the request "
                               f"({e})") from e
        try:
            return json.loads(body) if body else {}
        except ValueError as e:
            raise BackendUnavailable(f"cannot {what}: the Kubernetes API answered something "
                                     "that is not JSON") from e

    def translate(self, what: str, e: ApiException) -> BackendError | BackendUnavailable:
        try:
            message = json.loads(e.body or "{}").get("message") or e.reason
        except (ValueError, AttributeError):
            message = e.reason
        detail = f"cannot {what}: {e.status} {message}"
        if e.status in (409, 429) or (e.status or 0) >= 500:
            return BackendUnavailable(detail)  # a conflict or an overload may pass
        if e.status == 404:
            hint = (" (is KServe installed in the cluster?)" if "InferenceService" in what
                    else "")
            return BackendError(f"{detail}{hint}")
        return BackendError(detail)  # 400, 401, 403, 422, and 0 (TLS or client errors)

    def read(self, kind: str, name: str) -> dict | None:
        return self.call(f"read {kind} {name}", self._kinds[kind].read, name, missing_ok=True)

    def list(self, kind: str, endpoint_name: str) -> list[dict]:
        """Objects of ``kind`` labelled for the endpoint (filtered here too: some API
        emulators ignore label selectors)."""
        selector = f"{ENDPOINT_LABEL}={endpoint_name},{MANAGED_BY}=modelgate"
        answer = self.call(f"list {kind}s of {endpoint_name}", self._kinds[kind].list,
                           selector) or {}
        wanted = {ENDPOINT_LABEL: endpoint_name, MANAGED_BY: "modelgate"}
        return [item for item in answer.get("items") or []
                if contains((item.get("metadata") or {}).get("labels"), wanted)]

    def check_owner(self, existing: dict | None, what: str) -> None:
        """Refuse to touch an object another environment owns; adopt unlabelled ones."""
        labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
        found = labels.get(OWNER_LABEL)
        if self.owner and found and found != self.owner:
            raise BackendError(f"{what} in namespace {self.namespace} belongs to another "
                               "environment; refusing to change it (choose another namespace "
                               "or model name)")

    def foreign(self, existing: dict | None) -> bool:
        labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
        return bool(self.owner and labels.get(OWNER_LABEL, self.owner) != self.owner)

    def delete(self, kind: str, name: str) -> None:
        self.call(f"delete {kind} {name}", self._kinds[kind].delete, name, missing_ok=True,
                  propagation_policy="Background")

    def converge(self, manifest: dict, existing: dict | None, guarded: bool = False) -> str:
        """Create ``manifest`` or merge-patch what differs; 'created', 'patched' or
        'unchanged'. ``None`` values in ``manifest`` are keys to remove. ``guarded``: only
        onto ``existing`` as read, else ``WriteConflict`` (see the module's docstring)."""
        kind = self._kinds[manifest["kind"]]
        name = manifest["metadata"]["name"]
        what = f"{kind.name} {name}"
        self.check_owner(existing, what)
        if existing is None:
            created = self.call(f"create {what}", kind.create, without_nones(manifest),
                                conflict_ok=True)
            if created is not None:
                return "created"
            if guarded:
                raise WriteConflict(f"cannot create {what}: it was created meanwhile")
            existing = self.read(kind.name, name)  # another worker created it meanwhile
            if existing is None:
                raise BackendUnavailable(f"{what} was created and deleted meanwhile")
            self.check_owner(existing, what)
        if contains(existing, manifest):
            return "unchanged"
        body = merge_patch_body(manifest)
        if guarded:
            # A precondition, not a change: the API server refuses the patch with 409
            # Conflict unless the object still has this resourceVersion.
            version = (existing.get("metadata") or {}).get("resourceVersion")
            body["metadata"] = {**body["metadata"], "resourceVersion": version}
        patched = self.call(f"patch {what}", kind.patch, name, body, conflict_ok=guarded,
                            _content_type=MERGE_PATCH)
        if patched is None:
            raise WriteConflict(f"cannot patch {what}: it changed since it was read")
        return "patched"

    # -- pods: blue/green's check reaches one variant's pods through the API server --------

    def pods(self, wanted: dict[str, str]) -> list[dict]:
        """The pods carrying all the ``wanted`` labels (filtered here too: some API emulators
        ignore label selectors)."""
        selector = ",".join(f"{k}={v}" for k, v in wanted.items())
        core = k8s.CoreV1Api(self.api)
        listed = self.call("list pods", core.list_namespaced_pod, self.namespace,
                           label_selector=selector) or {}
        return [pod for pod in listed.get("items") or []
                if contains((pod.get("metadata") or {}).get("labels"), wanted)]

    def ready_pods(self, wanted: dict[str, str]) -> list[str]:
        """Names of the running, ready pods carrying all the ``wanted`` labels."""
        ready = []
        for pod in self.pods(wanted):
            meta, status = pod.get("metadata") or {}, pod.get("status") or {}
            conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
            if (status.get("phase") == "Running" and conditions.get("Ready") == "True"
                    and not meta.get("deletionTimestamp")):
                ready.append(meta["name"])
        return sorted(ready)

    def post_to_pod(self, pod: str, port: int, path: str, body: dict) -> int:
        """POST ``body`` as JSON to ``pod:port`` at ``path`` through the API server's pod
        proxy; the answer's HTTP status. Raises one of ``PROXY_ERRORS``."""
        # The generated connect_post_namespaced_pod_proxy_with_path sends no body.
        request = self.api.param_serialize(
            "POST", f"/api/v1/namespaces/{self.namespace}/pods/{pod}:{port}/proxy{path}",
            header_params={"Content-Type": "application/json",
                           "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"])
        response = self.api.call_api(*request, _request_timeout=self.timeout)
        response.read()
        return response.status
