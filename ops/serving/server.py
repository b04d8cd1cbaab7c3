"""Command line and process set-up of the model server.

``python -m ops.serving --plan PLAN.json --port P [--host 127.0.0.1]`` serves a plan file;
``--catalog CATALOG.json`` instead serves a multi-model endpoint (``multimodel_app``).
SageMaker starts containers as ``docker run IMAGE serve`` with ``SAGEMAKER_BIND_TO_PORT``
set (8080 when absent) and the model under ``/opt/ml/model``: in that mode the server binds
0.0.0.0 on that port and reads ``/opt/ml/model/plan.json`` unless ``--plan`` says otherwise.

One uvicorn worker on uvloop + httptools (uvicorn's protocol, sending each answer in one
write: ``protocol.py``): predictions run in a small thread pool, so the event loop keeps
accepting while a batch is computed, except a variant's batches that cost less CPU than
handing them to a thread and back (``--batch-inline-us``, ``batching.py``). Several uvicorn
workers would not share batches and (uvicorn 0.54) lose TCP_NODELAY on the listening
socket, adding ~48 ms to every answer; scale with more processes behind the platform's load
balancer instead.
"""

from __future__ import annotations

import argparse
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ops.serving import fastpath
from ops.serving.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_SHADOW_TOLERANCE, ModelServer
from ops.serving.ids import KEY_ENV, Signer
from ops.serving.metrics import ServerMetrics
from ops.serving.plans import PlanManager
from ops.serving.variants import BatchingOptions, silence_feature_name_warning

SAGEMAKER_PLAN = Path("/opt/ml/model/plan.json")
log = logging.getLogger("ops.serving")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.serving",
                                     description="Modelgate model server")
    parser.add_argument("command", nargs="?", choices=["serve"],
                        help="'serve': SageMaker mode (also when SAGEMAKER_BIND_TO_PORT is set)")
    parser.add_argument("--plan", type=Path, help="serving plan JSON file (watched for changes)")
    parser.add_argument("--catalog", type=Path, help="multi-model mode: the catalog JSON file "
                        "of the models to load on demand (watched; decision 68)")
    parser.add_argument("--port", type=int, help="port to listen on")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; "
                        "0.0.0.0 in SageMaker mode)")
    parser.add_argument("--max-batch", type=int,
                        default=_env_int("MODELGATE_MAX_BATCH", 64),
                        help="most rows in one predict call (default 64)")
    parser.add_argument("--batch-timeout-ms", type=float,
                        default=float(os.environ.get("MODELGATE_BATCH_TIMEOUT_MS", "2")),
                        help="longest wait for a batch to fill, from its oldest request "
                             "(default 2 ms; 0 disables waiting)")
    parser.add_argument("--max-queue", type=int, default=_env_int("MODELGATE_MAX_QUEUE", 1024),
                        help="rows queued per variant before answering 503 overloaded")
    parser.add_argument("--batch-concurrency", type=int, default=1,
                        help="batches of one variant predicted at the same time (default 1)")
    parser.add_argument("--batch-idle-rounds", type=int,
                        default=_env_int("MODELGATE_BATCH_IDLE_ROUNDS", 3),
                        help="end the window early after this many event-loop passes bring no "
                             "new request (default 3; 0 always waits the full window)")
    parser.add_argument("--batch-inline-us", type=float,
                        default=float(os.environ.get("MODELGATE_BATCH_INLINE_US", "200")),
                        help="predict a variant's batches on the event loop while they cost "
                             "less CPU than this on average, less than handing them to a "
                             "thread and back (default 200 µs; 0: always in the thread pool)")
    parser.add_argument("--threads", type=int, default=_env_int("MODELGATE_THREADS", 2),
                        help="prediction threads shared by all variants (default 2)")
    parser.add_argument("--max-body-bytes", type=int,
                        default=_env_int("MODELGATE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
    parser.add_argument("--poll-interval", type=float, default=0.5,
                        help="seconds between checks of the plan file (default 0.5)")
    parser.add_argument("--shadow-tolerance", type=float, default=DEFAULT_SHADOW_TOLERANCE,
                        help="relative difference under which a regressor's shadow agrees")
    parser.add_argument("--log-level", default=os.environ.get("MODELGATE_LOG_LEVEL", "info"))
    return parser.parse_args(argv)


def build_app(args: argparse.Namespace) -> ModelServer:
    import prometheus_client

    silence_feature_name_warning()
    fastpath.settings()  # a bad MODELGATE_FAST_TREES_* value stops the server here
    # No "_created" series: they double the exposition and no rule reads them.
    prometheus_client.disable_created_metrics()
    metrics = ServerMetrics()
    executor = ThreadPoolExecutor(max_workers=max(1, args.threads),
                                  thread_name_prefix="predict")
    batching = BatchingOptions(timeout=max(0.0, args.batch_timeout_ms) / 1000.0,
                               max_batch_rows=args.max_batch, max_queue_rows=args.max_queue,
                               concurrency=args.batch_concurrency,
                               idle_rounds=args.batch_idle_rounds,
                               inline_below=max(0.0, args.batch_inline_us) / 1e6)
    try:
        signer = Signer.from_environment()
    except (OSError, ValueError) as e:
        raise SystemExit(f"cannot read the prediction-id key: {e}") from e
    if signer is None:
        log.warning("no %s: prediction ids are unsigned and the portal refuses feedback on "
                    "them", KEY_ENV)
    multimodel = _multimodel_app(args, metrics, executor, batching, signer)
    if multimodel is not None:
        return multimodel
    manager = PlanManager(args.plan, metrics, executor, batching,
                          poll_interval=args.poll_interval)
    return ModelServer(manager, metrics, max_body_bytes=args.max_body_bytes,
                       shadow_tolerance=args.shadow_tolerance, signer=signer)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sagemaker = args.command == "serve" or "SAGEMAKER_BIND_TO_PORT" in os.environ
    if sagemaker:
        args.port = _env_int("SAGEMAKER_BIND_TO_PORT", args.port or 8080)
        args.host = args.host or "0.0.0.0"
        args.plan = args.plan or (None if _multi_model_mode(args) else SAGEMAKER_PLAN)
    if (args.plan is None and not _multi_model_mode(args)) or args.port is None:
        raise SystemExit("--plan and --port are required (or run 'serve' for SageMaker mode)")
    args.host = args.host or "127.0.0.1"
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    app = build_app(args)
    log.info("model server on %s:%s, %s %s%s", args.host, args.port,
             "plan" if args.plan else "catalog", args.plan or args.catalog or "(SageMaker's)",
             " (SageMaker mode)" if sagemaker else "")
    config = uvicorn.Config(
        app, host=args.host, port=args.port, workers=1, loop=_choice("uvloop", "asyncio"),
        http=_http_protocol(), lifespan="on", access_log=False,
        log_level=args.log_level.lower(), server_header=False, date_header=False,
        backlog=2048, timeout_keep_alive=75,
        # Nothing here reads the client's address or scheme: no X-Forwarded-* rewriting
        # middleware in front of every request.
        proxy_headers=False,
    )
    uvicorn.Server(config).run()


def _multi_model_mode(args: argparse.Namespace) -> bool:
    from ops.serving.multimodel_app import MODE_ENV

    return args.catalog is not None or os.environ.get(MODE_ENV) == "sagemaker"


def _multimodel_app(args, metrics, executor, batching, signer):
    """The multi-model server (decision 68) when ``--catalog`` or SageMaker's multi-model
    mode asks for it, else ``None``."""
    if not _multi_model_mode(args):
        return None
    from ops.serving.multimodel_app import MultiModelServer, sagemaker_catalog

    first = None if args.catalog is not None else sagemaker_catalog()
    return MultiModelServer(args.catalog, metrics, executor, batching,
                            poll_interval=args.poll_interval, signer=signer,
                            max_body_bytes=args.max_body_bytes, sagemaker_catalog=first)


def _http_protocol():
    """uvicorn's httptools protocol writing each answer in one write (``protocol.py``), or
    h11 where httptools is missing."""
    if _choice("httptools", "h11") == "h11":
        return "h11"
    from ops.serving.protocol import HttpToolsOneWrite

    return HttpToolsOneWrite


def _choice(preferred: str, fallback: str) -> str:
    try:
        __import__(preferred)
    except ImportError:
        return fallback
    return preferred
