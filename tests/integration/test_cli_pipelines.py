"""Issue 15, item 2: the pipelines in docs/ci work as written.

Each file is parsed (YAML; the Jenkinsfile's ``sh '...'`` steps), and every ``modelgate``
command it contains runs, exactly as written, through bash, with the CLI pip-installed from
the repository path and the environment the pipeline would give it (its own variables, the
token as its secret store gives it, the CI system's build number and commit) against a
real portal. ``train.py`` (the user's training) is not run: its two files are given. A
thread plays the approver who approves the release in the portal, and the rollout worker.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml

from portal.accounts.services import create_token
from portal.releases import services as releases
from portal.releases.models import Deployment
from tests.cli.support import ROOT, Driver, install_cli
from tests.integration.local_fixtures import free_port
from tests.portal_fixtures import local_target

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CI = ROOT / "docs" / "ci"
COMMIT = "3f2a9c1d5e7b9a0c2e4f6a8b0c2d4e6f8a0b2c4d"
# What each CI system sets by itself (the build's number and commit).
CI_VARIABLES = {
    "github-actions.yml": {"GITHUB_RUN_NUMBER": "41", "GITHUB_SHA": COMMIT},
    "Jenkinsfile": {"BUILD_NUMBER": "42", "GIT_COMMIT": COMMIT},
    "buildspec.yml": {"CODEBUILD_BUILD_NUMBER": "43",
                      "CODEBUILD_RESOLVED_SOURCE_VERSION": COMMIT},
}


def github_actions(text: str) -> tuple[list[str], dict]:
    doc = yaml.safe_load(text)
    commands, env = [], dict(doc.get("env", {}))
    for job in doc["jobs"].values():
        env.update(job.get("env", {}))
        commands += [step["run"] for step in job["steps"] if "run" in step]
    return commands, env


def buildspec(text: str) -> tuple[list[str], dict]:
    doc = yaml.safe_load(text)
    assert doc["version"] == 0.2
    commands = [c for phase in doc["phases"].values() for c in phase.get("commands", [])]
    return commands, dict(doc["env"]["variables"])


def jenkinsfile(text: str) -> tuple[list[str], dict]:
    # sh 'command' and sh(script: 'command', returnStatus: true)
    commands = re.findall(r"\bsh\s*\(?\s*(?:script:\s*)?'([^']*)'", text)
    env = dict(re.findall(r"^\s*(MODEL\w*) = '([^']*)'", text, re.MULTILINE))
    return commands, env


PARSERS = {"github-actions.yml": github_actions, "Jenkinsfile": jenkinsfile,
           "buildspec.yml": buildspec}


def modelgate_commands(commands: list[str]) -> list[str]:
    """Each shell line that runs modelgate, in order (continuations joined)."""
    lines = []
    for block in commands:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("modelgate "):
                lines.append(line)
    return lines


@pytest.fixture(scope="module")
def cli_bin(tmp_path_factory):
    return install_cli(tmp_path_factory.mktemp("cli") / "venv")


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_each_pipeline_parses_and_does_what_a_pipeline_needs(name):
    text = (CI / name).read_text()
    commands, env = PARSERS[name](text)
    assert any("./clients/cli" in c and "pip install" in c for c in commands), \
        "installs the CLI from the repository path"
    lines = modelgate_commands(commands)
    verbs = [line.split()[1] for line in lines]
    assert verbs[:4] == ["versions", "register", "release", "wait"], verbs
    assert "--check" in lines[0] and "--timeout" in lines[3]
    assert {"MODELGATE_URL", "MODELGATE_PROJECT", "MODEL_NAME"} <= set(env)
    # The token comes from the CI system's secret store, never from an argument.
    assert "--token" not in text and "mg_" not in text
    assert re.search(r"secrets\.MODELGATE_TOKEN|credentials\('modelgate-token'\)|"
                     r"secrets-manager:\s*\n\s*MODELGATE_TOKEN", text)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_each_pipelines_commands_run_against_a_real_portal(name, cli_bin, live_server, users,
                                                           project, clf, settings, tmp_path,
                                                           skops_bytes):
    local_target(settings, free_port())
    releases.create_environment(users["owner"], project, name="staging")
    _, token = create_token(users["contributor"], f"{name} secret")
    # What train.py writes: the model and its metadata (no input schema: read from the model).
    (tmp_path / "model.skops").write_bytes(skops_bytes)
    (tmp_path / "metadata.json").write_text(json.dumps(
        {"metrics": {"roc_auc": 0.97}, "params": {"C": 1.0},
         "code": {"repository": "https://git.example.com/ml/cancer"}}))

    commands, pipeline_env = PARSERS[name]((CI / name).read_text())
    env = {"PATH": f"{cli_bin}:{os.environ['PATH']}", "HOME": str(tmp_path),
           **{k: str(v) for k, v in pipeline_env.items()}, **CI_VARIABLES[name],
           "MODELGATE_URL": live_server.url, "MODELGATE_TOKEN": token}
    ran = []
    with Driver(approver=users["approver"]):
        for line in modelgate_commands(commands):
            answer = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=300)
            ran.append((line, answer.returncode))
            assert answer.returncode == 0, f"{line}\n{answer.stdout}\n{answer.stderr}"
    assert [line.split()[1] for line, _ in ran] == ["versions", "register", "release", "wait",
                                                    "status"]
    deployment = Deployment.objects.get()
    build = next(v for k, v in CI_VARIABLES[name].items() if "NUMBER" in k)
    assert deployment.status == "succeeded" and deployment.candidate.label == f"1.0.{build}"
    print(f"{name}: " + "; ".join(f"{line.split()[1]} → {code}" for line, code in ran))
