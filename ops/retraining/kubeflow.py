"""Kubeflow Pipelines: a run of a pipeline version (``POST /apis/v2beta1/runs``).

The pipeline receives two parameters, which it must declare: ``trigger_id`` (an integer)
and ``evidence`` (the evidence as a JSON string; KFP parameters are typed and an object
parameter would need a ``dict`` input). The body follows KFP's published v2beta1 spec
(tests/fixtures/retraining/kubeflow-v2beta1-openapi.json). ``token`` is sent as a bearer
(a service-account token behind the Kubeflow gateway).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from ops.retraining.base import Parameter, RunRequest, RunStarted, Target, TargetRefused, json_of


class KubeflowTarget(Target):
    kind = "kubeflow"
    SETTINGS = ("url", "token", "namespace")
    PARAMETERS = (
        Parameter("pipeline_id", "the pipeline's id"),
        Parameter("pipeline_version_id", "the id of the pipeline version to run"),
        Parameter("experiment_id", "the experiment the run belongs to (default: KFP's)",
                  required=False),
    )

    def __init__(self, settings: dict, session=None):
        super().__init__(settings, session)
        self.url = str(settings.get("url") or "").rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise TargetRefused("kubeflow target: url must be the http(s) address of the "
                                "KFP API", code="bad_target")

    def body(self, request: RunRequest) -> dict:
        params = request.params
        body = {
            "display_name": request.run_name,
            "description": f"Started by Modelgate retraining trigger {request.trigger_id}",
            "pipeline_version_reference": {"pipeline_id": params["pipeline_id"],
                                           "pipeline_version_id": params["pipeline_version_id"]},
            "runtime_config": {"parameters": {
                "trigger_id": request.trigger_id,
                "evidence": json.dumps(request.evidence, separators=(",", ":"))}},
        }
        if params.get("experiment_id"):
            body["experiment_id"] = params["experiment_id"]
        return body

    def start(self, request: RunRequest) -> RunStarted:
        headers = ({"Authorization": f"Bearer {self.settings['token']}"}
                   if self.settings.get("token") else {})
        answer = self.post(f"{self.url}/apis/v2beta1/runs", self.body(request), headers=headers,
                           where="kubeflow pipelines")
        run_id = str(json_of(answer).get("run_id") or "")
        url = f"{self.url}/#/runs/details/{quote(run_id, safe='')}" if run_id else ""
        return RunStarted(run_id, url)
