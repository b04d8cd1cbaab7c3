"""Apache Airflow: a DAG run whose ``conf`` carries the evidence.

Airflow 3 (``api: "v2"``, the default): ``POST /api/v2/dags/{dag_id}/dagRuns`` with a JWT,
which the target gets from ``POST /auth/token`` with ``username`` and ``password`` (or is
given as ``token``). Airflow 2 (``api: "v1"``): ``POST /api/v1/dags/{dag_id}/dagRuns`` with
basic authentication (or ``token`` as a bearer). The run's id is the request's
``run_name``: a request repeated after a lost answer finds it (409) and counts as started.
Request bodies follow the published specs (tests/fixtures/retraining/airflow-v*.json).
"""

from __future__ import annotations

from urllib.parse import quote

from ops.retraining.base import (
    Parameter,
    RunRequest,
    RunStarted,
    Target,
    TargetRefused,
    json_of,
)


class AirflowTarget(Target):
    kind = "airflow"
    SETTINGS = ("url", "api", "token", "username", "password")
    PARAMETERS = (Parameter("dag_id", "the DAG to run, e.g. retrain_tumor_classifier"),)

    def __init__(self, settings: dict, session=None):
        super().__init__(settings, session)
        self.url = str(settings.get("url") or "").rstrip("/")
        self.api = settings.get("api", "v2")
        if not self.url.startswith(("http://", "https://")):
            raise TargetRefused("airflow target: url must be the http(s) address of the "
                                "Airflow API server", code="bad_target")
        if self.api not in ("v1", "v2"):
            raise TargetRefused('airflow target: api is "v2" (Airflow 3) or "v1" (Airflow 2)',
                                code="bad_target")
        if not settings.get("token") and not (settings.get("username")
                                              and settings.get("password")):
            raise TargetRefused("airflow target: give token, or username and password",
                                code="bad_target")

    def _auth(self) -> tuple[dict, object]:
        """(headers, requests auth) for the API call."""
        if self.settings.get("token"):
            return {"Authorization": f"Bearer {self.settings['token']}"}, None
        if self.api == "v1":
            return {}, (self.settings["username"], self.settings["password"])
        answer = self.post(f"{self.url}/auth/token",
                           {"username": self.settings["username"],
                            "password": self.settings["password"]},
                           where="airflow /auth/token")
        token = json_of(answer).get("access_token")
        if answer.status_code == 409 or not isinstance(token, str) or not token:
            raise TargetRefused("airflow /auth/token answered no access_token",
                                code="target_unauthorized")
        return {"Authorization": f"Bearer {token}"}, None

    def body(self, request: RunRequest) -> dict:
        conf = {"trigger_id": request.trigger_id, "evidence": request.evidence}
        note = f"Started by Modelgate retraining trigger {request.trigger_id}"
        if self.api == "v1":
            return {"dag_run_id": request.run_name, "conf": conf, "note": note}
        # logical_date is required (null: the run is not tied to a data interval).
        return {"dag_run_id": request.run_name, "logical_date": None, "conf": conf,
                "note": note}

    def start(self, request: RunRequest) -> RunStarted:
        dag_id = request.params["dag_id"]
        headers, auth = self._auth()
        answer = self.post(f"{self.url}/api/{self.api}/dags/{quote(dag_id, safe='')}/dagRuns",
                           self.body(request), headers=headers, auth=auth,
                           where=f"airflow DAG {dag_id}")
        run_id = json_of(answer).get("dag_run_id") or request.run_name
        url = (f"{self.url}/dags/{quote(dag_id, safe='')}/runs/{quote(str(run_id), safe='')}"
               if self.api == "v2" else
               f"{self.url}/dags/{quote(dag_id, safe='')}/grid?dag_run_id="
               f"{quote(str(run_id), safe='')}")
        return RunStarted(str(run_id), url, already=answer.status_code == 409)
