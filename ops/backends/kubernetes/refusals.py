"""Refusals: the cluster saying that the latest plan recorded for an endpoint will never
serve (``ObservedState.refused``), while what ran before keeps serving.

Only what the platform states counts, and only about the spec it has caught up with: a
condition that is ``Unknown``, ``False`` without a reason, or ``False`` for a reason a
rollout still under way also shows (``MinimumReplicasUnavailable``, ``Deploying``) is not
a refusal, and neither is a status older than the spec (``observedGeneration`` behind
``metadata.generation``). When in doubt nothing is refused, and the portal's serve timeout
restores the stable as before.

* Deployments mode: a Deployment of a variant that is not ready whose ``Progressing``
  condition is ``False`` with ``ProgressDeadlineExceeded``, or one of its pods (of the
  Deployment's current pod template) with a container waiting for a reason that does not
  pass by itself (``WAITING_REFUSALS``: a crash loop, an image that cannot be pulled, a
  container that cannot be configured).
* KServe mode: ``modelStatus.transitionStatus`` ``BlockedByFailedLoad`` or ``InvalidSpec``
  (with ``lastFailureInfo``), or ``PredictorReady``/``Ready`` ``False`` for one of Knative's
  failure reasons (``RevisionFailed``, ``ProgressDeadlineExceeded``, ``ContainerMissing``,
  ``ExitCode<n>``): the latest revision failed, and Knative keeps routing to the last one
  that was ready.

A model that does not load keeps the model server up but never ready (it exits on nothing),
so Kubernetes says so at the progress deadline (``progressDeadlineSeconds``, 600 s unless the
cluster's defaults differ); a crash loop or an image pull error is said within seconds.
"""

from __future__ import annotations

from ops.backends.kubernetes.names import CHECKSUM_ANNOTATION

# Why a container waits that no retry mends: the same image and spec will wait again.
WAITING_REFUSALS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull",
                              "InvalidImageName", "CreateContainerConfigError"})
# Knative's (and KServe's raw mode's) reasons for a revision that failed for good.
KSERVE_FAILURES = frozenset({"RevisionFailed", "ProgressDeadlineExceeded", "ContainerMissing"})
# KServe's model status when the latest predictor's model cannot be loaded or run.
KSERVE_BLOCKED = frozenset({"BlockedByFailedLoad", "InvalidSpec"})


def caught_up(obj: dict | None) -> bool:
    """Whether ``obj``'s status was written for its current spec (a refusal in an older
    status is about an older spec)."""
    meta = (obj or {}).get("metadata") or {}
    observed = ((obj or {}).get("status") or {}).get("observedGeneration")
    return observed is not None and observed >= (meta.get("generation") or 0)


def _said(reason: str | None, message: str | None) -> str:
    return f"{reason}: {message}" if reason and message else (reason or message or "")


# -- Deployments mode ---------------------------------------------------------------------


def deployment_refusal(deployment: dict | None) -> str:
    """Why the Deployment's controller gave up rolling out its current template, if it did."""
    if deployment is None or not caught_up(deployment):
        return ""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if (condition.get("type") == "Progressing" and condition.get("status") == "False"
                and condition.get("reason") == "ProgressDeadlineExceeded"):
            return (f"Deployment {deployment['metadata']['name']} is not progressing, "
                    + _said(condition.get("reason"), condition.get("message")))
    return ""


def pod_refusal(deployment: dict | None, pods: list[dict]) -> str:
    """Why a pod of the Deployment's current template cannot run, if one says so.

    Pods of an older template (the ReplicaSet still serving during a rolling update) are
    left out: their trouble is not the new plan's."""
    template = ((((deployment or {}).get("spec") or {}).get("template") or {})
                .get("metadata") or {}).get("annotations") or {}
    checksum = template.get(CHECKSUM_ANNOTATION)
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        meta = pod.get("metadata") or {}
        if checksum and (meta.get("annotations") or {}).get(CHECKSUM_ANNOTATION) != checksum:
            continue
        why = _container_refusal(pod.get("status") or {})
        if why:
            return f"pod {meta.get('name')} {why}"
    return ""


def _container_refusal(status: dict) -> str:
    containers = (status.get("initContainerStatuses") or []) + \
        (status.get("containerStatuses") or [])
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in WAITING_REFUSALS:
            continue
        why = (f"cannot run container {container.get('name')}, "
               + _said(waiting.get("reason"), waiting.get("message")))
        last = (container.get("lastState") or {}).get("terminated") or {}
        if last:
            why += (f" (it last exited with code {last.get('exitCode')}"
                    + (f", {_said(last.get('reason'), last.get('message'))})"
                       if last.get("reason") or last.get("message") else ")"))
        return why
    return ""


# -- KServe mode --------------------------------------------------------------------------


def inference_service_refusal(isvc: dict) -> str:
    """Why KServe will never serve the InferenceService's current spec, if it says so."""
    if not caught_up(isvc):
        return ""
    status = isvc.get("status") or {}
    model = status.get("modelStatus") or {}
    failure = model.get("lastFailureInfo") or {}
    if model.get("transitionStatus") in KSERVE_BLOCKED:
        said = _said(failure.get("reason"), failure.get("message"))
        return f"{model['transitionStatus']}, {said}" if said else model["transitionStatus"]
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for kind in ("PredictorReady", "Ready"):
        condition = conditions.get(kind) or {}
        reason = condition.get("reason") or ""
        if condition.get("status") == "False" and (
                reason in KSERVE_FAILURES or reason.startswith("ExitCode")):
            return f"{kind} is False, {_said(reason, condition.get('message'))}"
    return ""
