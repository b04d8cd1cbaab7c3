"""``modelgate``: the command line of the portal, for CI pipelines.

argparse (the standard library) rather than click: the package's one dependency stays the
HTTP client, and a pipeline installs it in a second.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext

from modelgate_cli import __version__, commands, credentials
from modelgate_cli.client import ApiError, Unreachable
from modelgate_cli.feedback import FeedbackFileError
from modelgate_cli.schema import SchemaInferenceError
from modelgate_cli.waiting import ERROR, EXIT_CODES, UNREACHABLE, USAGE

DESCRIPTION = """\
Register models, release them and wait for their rollouts on a Modelgate portal.

The portal's address: --url or MODELGATE_URL. The token: MODELGATE_TOKEN, else the file
MODELGATE_TOKEN_FILE names, else ~/.config/modelgate/token (written by `modelgate login`);
never an argument. The project: --project or MODELGATE_PROJECT (its slug)."""

SCOPES = """\
token scopes:
  read     versions, status, wait
  write    register, import-mlflow, release, rollback, feedback (and everything read
           allows)
  approve  promote, approve (an approver's acts; a contributor may roll back, not promote)
  `modelgate login` (a username and password) gets read and write. An approve token is
  made signed in: the portal's API tokens page, or POST /api/v1/tokens/ with
  {"scopes": ["read", "approve"]} from a session or another approve token."""

HINTS = {
    "scope_required": "this needs a token with another scope (promote and approve need "
                      "'approve'; see modelgate --help)",
    "authentication_failed": "the token was refused (expired or revoked?): run modelgate "
                             "login, or set MODELGATE_TOKEN",
    "not_authenticated": "no token reached the server: set MODELGATE_TOKEN",
    "role_required": "your role in the project does not allow this",
}


def _common(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Options every command takes, before or after its name (the top level sets the
    defaults; a command's own only what was given)."""
    def default(value):
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--url", default=default(os.environ.get("MODELGATE_URL",
                                                                 "http://127.0.0.1:8000")),
                        help="the portal's address (MODELGATE_URL)")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="print the result as a JSON document")
    parser.add_argument("--retry-for", type=float, default=default(None), metavar="SECONDS",
                        help="retry reads while the server is unreachable for this long "
                             "(backoff 0.5 s doubling to 8 s; default 30, and 300 for "
                             "wait and release --wait)")


def _project(parser) -> None:
    parser.add_argument("--project", default=os.environ.get("MODELGATE_PROJECT"),
                        help="the project's slug (MODELGATE_PROJECT)")


def _target(parser, model_required: bool = False) -> None:
    """Which release: a deployment, a request, or a model's latest in an environment."""
    _project(parser)
    parser.add_argument("--deployment", type=int, metavar="ID", help="a deployment's id")
    parser.add_argument("--request", type=int, metavar="ID", help="a release request's id")
    parser.add_argument("--model", required=model_required, help="the model's name")
    parser.add_argument("--environment", required=model_required,
                        help="the environment's name")


def _wait_options(parser, timeout: float = 3600.0) -> None:
    parser.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                        help="poll every SECONDS (default 5): the end is seen at most this "
                             "long after it happens")
    parser.add_argument("--timeout", type=float, default=timeout, metavar="SECONDS",
                        help=f"give up after SECONDS (default {timeout:g}), exit code 6")
    parser.add_argument("--through-pauses", action="store_true",
                        help="keep waiting while the rollout is paused or awaits a decision "
                             "(default: exit 5 at once)")


def _add(sub, name: str, handler, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    _common(parser, defaults=False)
    parser.set_defaults(handler=handler)
    return parser


def _add_register(sub) -> None:
    p = _add(sub, "register", commands.run_register,
             "Upload a model version: the artifact and its metadata (a file, flags, or both; "
             "the input schema is read from the model when none is given).")
    _project(p)
    p.add_argument("artifact", help="the model file (skops, XGBoost JSON/UBJSON, LightGBM "
                                    "text, ONNX; pickle/joblib if the project allows them)")
    p.add_argument("--model", required=True, help="the model's name")
    p.add_argument("--metadata", metavar="FILE", help="JSON metadata (docs/api.md § 3)")
    p.add_argument("--label", help="a semantic version, e.g. 1.4.0")
    p.add_argument("--description")
    p.add_argument("--metric", action="append", metavar="NAME=VALUE")
    p.add_argument("--param", action="append", metavar="NAME=VALUE")
    p.add_argument("--tag", action="append")
    p.add_argument("--dataset", help="the training dataset's id or name")
    p.add_argument("--parent", type=int, help="the version number it derives from")
    p.add_argument("--repository", help="the code's repository URL")
    p.add_argument("--commit", help="the code's git commit (at least 7 hex characters)")
    p.add_argument("--triggered-by", type=int, metavar="TRIGGER_ID",
                   help="the retraining trigger that started this training run (its id is in "
                        "the run's evidence as trigger_id): the version page then says which "
                        "alert it was retrained because of")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read a pickle/joblib artifact to infer its schema (runs its code)")
    p.add_argument("--create", action="store_true", help="create the model if it is missing")
    p.add_argument("--task", choices=["classification", "regression"],
                   help="the task of a model --create makes")
    p.add_argument("--model-description", default="", help="the description --create gives")
    p.add_argument("--no-wait", action="store_true",
                   help="do not wait for the portal's checks (status pending)")
    p.add_argument("--ready-timeout", type=float, default=600.0, metavar="SECONDS")


def _add_import_mlflow(sub) -> None:
    p = _add(sub, "import-mlflow", commands.run_import_mlflow,
             "Import a model version from MLflow (a registered model's version, or a run's "
             "model): the portal downloads it with its signature, metrics, parameters, git "
             "commit and datasets. The same MLflow version is never imported twice.")
    _project(p)
    p.add_argument("--model", required=True, help="the portal model to add the version to")
    p.add_argument("--name", help="the MLflow registered model")
    p.add_argument("--version", dest="mlflow_version", metavar="N", help="its version number")
    p.add_argument("--run-id", help="or: an MLflow run whose logged model to import")
    p.add_argument("--artifact-path", default="model",
                   help="the name the run logged its model under (default: model)")
    p.add_argument("--tracking-uri", help="the MLflow server (default: the portal's own, "
                                          "MLFLOW_TRACKING_URI on the server)")
    p.add_argument("--create", action="store_true", help="create the model if it is missing")
    p.add_argument("--task", choices=["classification", "regression"],
                   help="the task of a model --create makes")
    p.add_argument("--model-description", default="", help="the description --create gives")
    p.add_argument("--no-wait", action="store_true",
                   help="do not wait for the portal's checks once imported")
    p.add_argument("--ready-timeout", type=float, default=600.0, metavar="SECONDS")


def _add_release(sub) -> None:
    p = _add(sub, "release", commands.run_release,
             "Request a release of a version to an environment with a strategy; --wait "
             "then waits for its rollout as `wait` does.")
    _project(p)
    p.add_argument("--model", required=True)
    p.add_argument("--environment", required=True)
    p.add_argument("--version", default="latest",
                   help="a number, a label, or latest (the newest ready version; default)")
    p.add_argument("--strategy", default="canary",
                   choices=["direct", "canary", "ab", "bluegreen", "shadow"])
    p.add_argument("--params", metavar="JSON", help='strategy parameters, e.g. '
                   '\'{"failure_limit": 2}\' (docs/api.md § 10)')
    p.add_argument("--params-file", metavar="FILE", help="strategy parameters from a file")
    p.add_argument("--step", action="append", metavar="WEIGHT:BAKE_SECONDS",
                   help="a canary step, repeated: --step 0.1:300 --step 1.0:600")
    p.add_argument("--reason", default="", help="why this version should be released")
    p.add_argument("--breaking-change", action="store_true",
                   help="the inputs change on purpose (direct or bluegreen only)")
    p.add_argument("--wait", action="store_true", help="then wait for the rollout's end")
    _wait_options(p)


def _add_approve(sub) -> None:
    p = _add(sub, "approve", commands.run_approve,
             "Approve (or --reject) a release request: an approver other than the "
             "requester, with a token holding the approve scope.")
    _target(p)
    p.add_argument("--comment", required=True, help="why (required)")
    p.add_argument("--reject", action="store_true")
    p.add_argument("--acknowledge-breaking-change", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelgate", description=DESCRIPTION, epilog=f"{SCOPES}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"modelgate-cli {__version__}")
    _common(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add(sub, "login", commands.run_login,
             "Exchange a username and password (prompted, or MODELGATE_USERNAME and "
             "MODELGATE_PASSWORD) for a token, saved readable by you only.")
    p.add_argument("--username")
    p.add_argument("--name", default="modelgate-cli", help="the token's name")

    p = _add(sub, "versions", commands.run_versions,
             "What the server runs: the portal, Python, scikit-learn, skops, numpy.")
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless scikit-learn and skops here match the server's "
                        "(same minor release) and numpy its major release")

    _add_register(sub)
    _add_import_mlflow(sub)
    _add_release(sub)
    _add_approve(sub)

    p = _add(sub, "wait", commands.run_wait,
             "Wait until a release's rollout ends; the exit code says how (see below). "
             "Progress on stderr.")
    _target(p)
    _wait_options(p)

    p = _add(sub, "status", commands.run_status, "A release's rollout as it is now.")
    _target(p)
    p.add_argument("--events", action="store_true", help="with the deployment's log")

    p = _add(sub, "rollback", commands.run_rollback,
             "Roll a rollout back to the stable version (write scope).")
    _target(p)
    p = _add(sub, "promote", commands.run_promote,
             "Send all traffic to the candidate now (approve scope).")
    _target(p)

    p = _add(sub, "feedback", commands.run_feedback,
             "Send outcomes of predictions for A/B tests, from CSV (prediction_id,outcome) "
             "or JSON lines.")
    p.add_argument("file", help="the file, or - for stdin")
    p.add_argument("--format", choices=["csv", "jsonl"],
                   help="default: csv for *.csv, else JSON lines")
    p.add_argument("--batch-size", type=int, default=1000)
    return parser


def _fail(message: str, code: int) -> int:
    print(f"modelgate: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    secret = credentials.secret_in_arguments(argv)
    if secret:
        print(credentials.refusal(secret), file=sys.stderr)
        return USAGE
    try:
        args = build_parser().parse_args(argv)
        if args.retry_for is None:  # a wait outlives a restart of the portal
            waits = args.command == "wait" or getattr(args, "wait", False)
            args.retry_for = 300.0 if waits else 30.0
        # login is the one command without a token.
        with (commands.client_for(args) if args.command != "login" else nullcontext()) as c:
            return args.handler(args, c)
    except SystemExit as e:  # argparse: --help, --version, usage errors
        return e.code if isinstance(e.code, int) else USAGE
    except ApiError as e:
        hint = HINTS.get(e.code)
        return _fail(f"{e}" + (f"\n  {hint}" if hint else ""), ERROR)
    except Unreachable as e:
        return _fail(f"{e} (gave up after retrying)", UNREACHABLE)
    except commands.UsageError as e:
        return _fail(str(e), USAGE)
    except (credentials.CredentialsError, SchemaInferenceError, FeedbackFileError,
            OSError, ValueError) as e:
        return _fail(str(e), ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
