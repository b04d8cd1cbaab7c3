"""GitHub Actions: a ``workflow_dispatch`` of a workflow with inputs.

``POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches`` with ``ref`` and
two inputs the workflow must declare: ``trigger_id`` and ``evidence`` (JSON; inputs are
strings). ``return_run_details`` asks for the run's id and page (GitHub answers 200 with
them; a server that predates it answers 204, and the trigger then has no link). The
repository and the token are the operator's (``repository``, ``token``, ``api_url`` for
GitHub Enterprise Server); a rule chooses the workflow and the ref.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

from ops.retraining.base import Parameter, RunRequest, RunStarted, Target, TargetRefused, json_of

REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
API_VERSION = "2022-11-28"
MAX_INPUT_CHARS = 65535


class GitHubTarget(Target):
    kind = "github"
    SETTINGS = ("repository", "token", "api_url")
    PARAMETERS = (
        Parameter("workflow", "the workflow's file name or id, e.g. retrain.yml"),
        Parameter("ref", "the branch or tag to run it on, e.g. main"),
    )

    def __init__(self, settings: dict, session=None):
        super().__init__(settings, session)
        self.repository = str(settings.get("repository") or "")
        self.api_url = str(settings.get("api_url") or "https://api.github.com").rstrip("/")
        if not REPOSITORY.match(self.repository):
            raise TargetRefused("github target: repository is owner/name", code="bad_target")
        if not settings.get("token"):
            raise TargetRefused("github target: give a token that may dispatch workflows "
                                "(actions: write)", code="bad_target")

    def body(self, request: RunRequest) -> dict:
        evidence = json.dumps(request.evidence, separators=(",", ":"))
        if len(evidence) > MAX_INPUT_CHARS:
            evidence = json.dumps({"truncated": True, "trigger_id": request.trigger_id})
        return {"ref": request.params["ref"],
                "inputs": {"trigger_id": str(request.trigger_id), "evidence": evidence},
                "return_run_details": True}

    def start(self, request: RunRequest) -> RunStarted:
        owner, repo = self.repository.split("/")
        workflow = quote(request.params["workflow"], safe="")
        answer = self.post(
            f"{self.api_url}/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches",
            self.body(request),
            headers={"Authorization": f"Bearer {self.settings['token']}",
                     "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": API_VERSION},
            where=f"github {self.repository} {request.params['workflow']}")
        found = json_of(answer)
        run_id = found.get("workflow_run_id")
        return RunStarted(str(run_id) if run_id is not None else "",
                          str(found.get("html_url") or ""))
