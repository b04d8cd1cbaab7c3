"""What each ``modelgate`` command does: ``run_<command>(args, client) -> exit code``.

The argument parser is ``modelgate_cli.cli``; the HTTP calls are the SDK's
(``modelgate_cli.client``). Results go to stdout (a JSON document with ``--json``, a line
or two of text without); progress and errors go to stderr.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path

from modelgate_cli import credentials, feedback, schema
from modelgate_cli.client import Client
from modelgate_cli.waiting import ERROR, OK, Waiter, progress


class UsageError(Exception):
    """Arguments that cannot work together; exit code 2 with the message."""


# Shared -----------------------------------------------------------------------------------

def emit(args, document, text: str) -> None:
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(text)


def client_for(args) -> Client:
    token, source = credentials.load_token()
    if source != credentials.TOKEN_ENV and credentials.loose_permissions(Path(source)):
        progress(f"warning: {source} is readable by others; chmod 600 it")
    return Client(args.url, token, retry_for=args.retry_for)


def project_of(args) -> str:
    if not args.project:
        raise UsageError("name the project: --project SLUG or MODELGATE_PROJECT")
    return args.project


def model_of(client: Client, args) -> dict:
    project = project_of(args)
    found = client.model(project, args.model)
    if found is None:
        raise UsageError(f"no model {args.model!r} in project {project!r} (or you are not a "
                         "member): register it with --create --task classification|regression")
    return found


def environment_of(client: Client, args) -> dict:
    project = project_of(args)
    found = client.environment(project, args.environment)
    if found is None:
        raise UsageError(f"no environment {args.environment!r} in project {project!r}")
    return found


def release_target(client: Client, args) -> tuple[int | None, int | None]:
    """(request id, deployment id) the arguments name: --deployment, --request, or the
    latest release of --model to --environment."""
    if args.deployment:
        return None, args.deployment
    if args.request:
        return args.request, None
    if not (args.model and args.environment):
        raise UsageError("name the release: --deployment ID, --request ID, or --model NAME "
                         "--environment NAME (its latest release there)")
    model, environment = model_of(client, args), environment_of(client, args)
    request = client.latest_request(model["id"], environment["id"])
    if request is not None:
        return request["id"], None
    deployment = client.latest_deployment(model["id"], environment["id"])
    if deployment is None:
        raise UsageError(f"{args.model} has no release to {args.environment}")
    return None, deployment["id"]


def deployment_of(client: Client, args) -> dict:
    request_id, deployment_id = release_target(client, args)
    if deployment_id is not None:
        return client.deployment(deployment_id)
    request = client.approval_request(request_id)
    found = client.deployment_of(request)
    if found is None:
        raise UsageError(f"release request {request_id} is {request['status']}: no rollout "
                         "has started")
    return client.deployment(found["id"])


def describe_deployment(d: dict) -> str:
    stable = f" (stable v{d['stable_version']})" if d.get("stable_version") else ""
    return (f"deployment {d['id']}: {d['model_name']} v{d['candidate_version']}{stable} on "
            f"{d['environment_name']}, {d['strategy']}, {d['status']}, step {d.get('step', 0)}")


def describe_request(r: dict) -> str:
    gates = "gates passed" if r.get("gates_passed") else "gates failed"
    return (f"release request {r['id']}: {r['model_name']} v{r['version_number']} to "
            f"{r['environment_name']} ({r['strategy']}), {gates}, {r['status']}")


# login, versions -------------------------------------------------------------------------

def run_login(args, client: Client | None) -> int:
    username = args.username or os.environ.get("MODELGATE_USERNAME") or input("Username: ")
    password = os.environ.get("MODELGATE_PASSWORD") or getpass.getpass("Password: ")
    answer = Client.login(args.url, username, password, name=args.name)
    path = credentials.save_token(answer["token"])
    emit(args, {"token_file": str(path), "name": answer["name"], "prefix": answer["prefix"],
                "scopes": ["read", "write"]},
         f"token {answer['prefix']}… saved to {path} (scopes read and write; promote, "
         "resume and approve need a token with the approve scope: see --help)")
    return OK


LIBRARIES = {"scikit_learn": "scikit-learn", "skops": "skops", "numpy": "numpy"}
# How much of each version must match: scikit-learn and skops read what the same minor
# release wrote; numpy arrays cross minor releases.
MATCH_PARTS = {"scikit_learn": 2, "skops": 2, "numpy": 1}


def compare_versions(server: dict) -> list[dict]:
    """Each library's version here and on the server, and whether they are compatible."""
    found = []
    for key, name in LIBRARIES.items():
        try:
            here = installed_version(name)
        except PackageNotFoundError:
            here = None
        there = server.get(key)
        parts = MATCH_PARTS[key]
        same = bool(here and there) and here.split(".")[:parts] == there.split(".")[:parts]
        found.append({"library": name, "here": here, "server": there,
                      "compatible": same if here else None})
    return found


def run_versions(args, client: Client | None) -> int:
    server = client.about()
    lines = [f"{key.replace('_', '-'):<14}{value}" for key, value in server.items()]
    document = dict(server)
    code = OK
    if args.check:
        checks = compare_versions(server)
        document = {"server": server, "checks": checks}
        for check in checks:
            verdict = {True: "compatible", False: "INCOMPATIBLE",
                       None: "not installed here"}[check["compatible"]]
            lines.append(f"{check['library']}: {check['here']} here, {check['server']} on the "
                         f"server: {verdict}")
        code = ERROR if any(c["compatible"] is False for c in checks) else OK
    emit(args, document, "\n".join(lines))
    return code


# register --------------------------------------------------------------------------------

def _key_values(pairs, parse) -> dict:
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{pair!r}: expected NAME=VALUE")
        found[key] = parse(value)
    return found


def _json_or_text(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"metric {value!r} is not a number") from None


def metadata_of(args) -> dict:
    """The metadata file (if any) with the flags laid over it."""
    meta = json.loads(Path(args.metadata).read_text()) if args.metadata else {}
    if not isinstance(meta, dict):
        raise UsageError(f"{args.metadata}: the metadata is a JSON object")
    meta.setdefault("metrics", {}).update(_key_values(args.metric, _float))
    meta.setdefault("params", {}).update(_key_values(args.param, _json_or_text))
    if args.tag:
        meta["tags"] = [*meta.get("tags", []), *args.tag]
    if args.repository or args.commit:
        meta["code"] = {**meta.get("code", {}),
                        **({"repository": args.repository} if args.repository else {}),
                        **({"commit": args.commit} if args.commit else {})}
    for key in ("label", "description", "dataset", "parent"):
        if getattr(args, key) is not None:
            meta[key] = getattr(args, key)
    if getattr(args, "triggered_by", None) is not None:
        meta["triggered_by"] = args.triggered_by  # the metadata's key (decision 67)
    return meta


def _model_to_register(client: Client, args) -> dict:
    found = client.model(project_of(args), args.model)
    if found is not None:
        return found
    if not args.create:
        return model_of(client, args)  # says how to create it
    if not args.task:
        raise UsageError("--create needs --task classification or regression")
    project = client.project(project_of(args))
    if project is None:
        raise UsageError(f"no project {args.project!r} (or you are not a member)")
    return client.create_model(project["id"], args.model, args.task, args.model_description)


def wait_until_checked(client: Client, version: dict, timeout: float) -> dict:
    """The version once the portal's checks ended (ready or invalid), or as it is at
    ``timeout``."""
    deadline = time.monotonic() + timeout
    while version["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(1.0)
        version = client.version(version["id"])
    return version


def run_register(args, client: Client | None) -> int:
    artifact = Path(args.artifact)
    if not artifact.is_file():
        raise UsageError(f"{artifact}: no such file")
    meta = metadata_of(args)
    if not meta.get("input_schema"):
        meta["input_schema"] = schema.infer_input_schema(artifact, args.allow_pickle)
        progress(f"input schema read from the model: {len(meta['input_schema'])} features")
    model = _model_to_register(client, args)
    version = client.register_version(model["id"], artifact, meta)
    progress(f"uploaded {model['name']} v{version['number']} (id {version['id']}), "
             f"sha256 {version['artifact']['sha256'][:12]}…")
    if not args.no_wait:
        version = wait_until_checked(client, version, args.ready_timeout)
    reason = f": {version['status_reason']}" if version.get("status_reason") else ""
    emit(args, version, f"{model['name']} v{version['number']} "
                        f"({version.get('label') or 'no label'}), id {version['id']}: "
                        f"{version['status']}{reason}")
    return ERROR if version["status"] == "invalid" else OK


def run_import_mlflow(args, client: Client | None) -> int:
    """Import an MLflow model version (decision 66): the portal's worker downloads it with
    its run's lineage and registers it; this waits for the import, then for the checks."""
    if bool(args.run_id) == bool(args.name):
        raise UsageError("name the MLflow model: --name NAME --version N, or --run-id ID")
    if args.name and not args.mlflow_version:
        raise UsageError("--name needs --version (the registered model's version number)")
    source = ({"run_id": args.run_id, "artifact_path": args.artifact_path} if args.run_id
              else {"name": args.name, "version": args.mlflow_version})
    if args.tracking_uri:
        source["tracking_uri"] = args.tracking_uri
    model = _model_to_register(client, args)
    item = client.import_mlflow(model["id"], source)
    progress(f"importing {item['source']} into {model['name']} (import {item['id']})")
    deadline = time.monotonic() + args.ready_timeout
    while item["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(1.0)
        item = client.mlflow_import(item["id"])
    if item["status"] != "done":
        emit(args, item, f"{item['source']}: {item['status']}"
                         + (f": {item['reason']}" if item.get("reason") else ""))
        return ERROR
    version = client.version(item["version"])
    if not args.no_wait:
        version = wait_until_checked(client, version, args.ready_timeout)
    reason = f": {version['status_reason']}" if version.get("status_reason") else ""
    emit(args, {"import": item, "version": version},
         f"{model['name']} v{version['number']} from {item['source']} (run "
         f"{item.get('run_id') or '-'}), id {version['id']}: {version['status']}{reason}")
    return ERROR if version["status"] == "invalid" else OK


# release, approve, wait --------------------------------------------------------------------

def _steps(specs) -> list[dict]:
    steps = []
    for spec in specs:
        weight, sep, bake = spec.partition(":")
        try:
            steps.append({"weight": float(weight), "bake_seconds": int(bake)})
        except ValueError:
            raise UsageError(f"--step {spec!r}: expected WEIGHT:BAKE_SECONDS, e.g. "
                             "0.1:300") from None
        if not sep:
            raise UsageError(f"--step {spec!r}: expected WEIGHT:BAKE_SECONDS")
    return steps


def strategy_params_of(args) -> dict:
    params = json.loads(Path(args.params_file).read_text()) if args.params_file else {}
    if args.params:
        try:
            params.update(json.loads(args.params))
        except ValueError as e:
            raise UsageError(f"--params is not JSON: {e}") from None
    if args.step:
        params["steps"] = _steps(args.step)
    return params


def waiter_for(client: Client, args, request_id=None, deployment_id=None) -> Waiter:
    return Waiter(client, request_id=request_id, deployment_id=deployment_id,
                  interval=args.interval, timeout=args.timeout, retry_for=args.retry_for,
                  through_pauses=args.through_pauses)


def finish_wait(args, waiter: Waiter) -> int:
    result = waiter.run()
    document = result.document()
    emit(args, document, f"{document['outcome']}: {document['model']} v{document['version']} "
                         f"on {document['environment']} (deployment {document['deployment']}, "
                         f"request {document['request']})")
    return result.code


def run_release(args, client: Client | None) -> int:
    model, environment = model_of(client, args), environment_of(client, args)
    version = client.find_version(model["id"], args.version)
    if version is None:
        raise UsageError(f"{model['name']} has no version {args.version!r}"
                         + (" that is ready" if args.version == "latest" else ""))
    request = client.request_release(version["id"], environment["id"], args.strategy,
                                     strategy_params_of(args), args.reason,
                                     args.breaking_change)
    if not args.wait:
        emit(args, request, describe_request(request))
        return OK
    progress(describe_request(request))
    return finish_wait(args, waiter_for(client, args, request_id=request["id"]))


def run_approve(args, client: Client | None) -> int:
    request_id, _ = release_target(client, args)
    if request_id is None:
        raise UsageError("name a release request: --request ID, or --model and --environment")
    decision = "reject" if args.reject else "approve"
    request = client.review(request_id, decision, args.comment,
                            args.acknowledge_breaking_change)
    emit(args, request, describe_request(request))
    return OK


def run_wait(args, client: Client | None) -> int:
    request_id, deployment_id = release_target(client, args)
    return finish_wait(args, waiter_for(client, args, request_id, deployment_id))


# status, rollback, promote ---------------------------------------------------------------

def run_status(args, client: Client | None) -> int:
    request_id, deployment_id = release_target(client, args)
    if deployment_id is None:
        request = client.approval_request(request_id)
        found = client.deployment_of(request)
        if found is None:
            emit(args, {"request": request, "deployment": None}, describe_request(request))
            return OK
        deployment_id = found["id"]
    deployment = client.deployment(deployment_id)
    if not args.events:
        deployment.pop("events", None)
    emit(args, deployment, describe_deployment(deployment))
    return OK


def _command(args, client: Client, name: str) -> int:
    deployment = deployment_of(client, args)
    answer = client.command(deployment["id"], name)
    answer.pop("events", None)
    emit(args, answer, describe_deployment(answer))
    return OK


def run_rollback(args, client: Client | None) -> int:
    return _command(args, client, "rollback")


def run_promote(args, client: Client | None) -> int:
    return _command(args, client, "promote")


# feedback --------------------------------------------------------------------------------

def run_feedback(args, client: Client | None) -> int:
    kind = args.format or ("csv" if args.file.lower().endswith(".csv") else "jsonl")
    if args.file == "-":
        items = feedback.read_items(sys.stdin, kind)
    else:
        with open(args.file, newline="", encoding="utf-8") as f:
            items = feedback.read_items(f, kind)
    totals = feedback.send(client, items, args.batch_size)
    text = (f"{totals['items']} outcomes: {totals['accepted']} accepted, "
            f"{totals['duplicates']} duplicates, {totals['rejected']} rejected")
    for error in totals["errors"][:10]:
        text += f"\n  item {error.get('index')}: {error.get('code')}: {error.get('detail')}"
    emit(args, totals, text)
    return ERROR if totals["rejected"] else OK
