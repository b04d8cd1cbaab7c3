"""A moto server over HTTP and SageMaker backends pointed at it, for any test module.

A plugin of tests/conftest.py: ``moto_server`` (module scope) runs a ``ThreadedMotoServer``
on a free loopback port with dummy credentials in the process environment for as long as
the module runs; ``sagemaker_backend_factory`` resets moto, creates the artifact bucket and
returns ``make(**overrides) -> SageMakerBackend``, built through the backend registry
exactly as an environment's settings would build it.

Where moto 5.2 falls short of SageMaker, and what the backend or these fixtures do:

- ``UpdateEndpoint`` is not implemented (the server answers an HTML 500). Backends made here
  set ``allow_recreate=True``, so changing the set of variants deletes and recreates the
  endpoint; on AWS the backend always calls ``UpdateEndpoint`` and recreates nothing.
- Endpoints are ``InService`` the moment they are created or updated; there is no
  ``Creating``/``Updating`` phase, so waiting and "busy endpoint" paths are not exercised.
- ``InvokeEndpoint`` returns placeholders (results can be queued through
  ``POST /moto-api/static/sagemaker/endpoint-results``); no container ever runs the tarball.
- ``AddTags`` appends a second tag with the same key instead of replacing it (the backend
  reads the last value); ``ListModels`` ignores ``NameContains`` (the backend filters names
  itself); ``ShadowProductionVariants`` are ignored (the backend refuses shadow plans);
  a ProductionVariant with weight 0 has no ``CurrentWeight`` in ``DescribeEndpoint``.
- No container ever starts, so no model ever fails to load: ``HostingEmulation`` (a
  platform's ``reconcile`` in the contract suite) loads each endpoint's models from their
  tarballs with the model server's own loader and, for a config whose model does not load,
  writes into moto's state what SageMaker shows: an endpoint created on it ``Failed``, one
  updated to it rolled back to the config before, ``InService`` with a ``FailureReason``.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from ops.backends import get_backend

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
BUCKET = "modelgate-sagemaker-test"
ROLE_ARN = "arn:aws:iam::123456789012:role/modelgate-sagemaker"
IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelgate-serving:test"

FAKE_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata service
    "AWS_CONFIG_FILE": "/nonexistent/modelgate-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/modelgate-aws-credentials",
}
# Variables that would point boto3 somewhere else than the dummy credentials above.
CLEARED_ENVIRONMENT = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL",
                       "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SAGEMAKER",
                       "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                       "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
                       "AWS_ROLE_ARN")


@dataclass(frozen=True)
class MotoServer:
    url: str
    port: int
    _clients: dict = field(default_factory=dict, compare=False, repr=False)
    _backends: dict = field(default_factory=dict, compare=False, repr=False)

    def client(self, service: str):
        """A plain boto3 client on the server, for tests to look behind the backend (made
        once per service: building a client costs about 0.1 s)."""
        if service not in self._clients:
            self._clients[service] = boto3.session.Session(region_name=REGION).client(
                service, endpoint_url=self.url,
                config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
        return self._clients[service]

    def reset(self) -> None:
        """Forget every resource on the server (all services)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()


class HostingEmulation:
    """What SageMaker's hosting does with configs whose models do not load (module doc):
    call it once the backend has applied a plan, as a platform's controller would act."""

    def __init__(self, server: MotoServer):
        self.server = server
        self.served: dict[str, str] = {}  # endpoint -> the last config whose models load
        self._verdicts: dict[str, str] = {}  # model -> why it does not load ('' if it does)

    def __call__(self) -> None:
        from moto.sagemaker.models import sagemaker_backends

        backend = sagemaker_backends[ACCOUNT][REGION]
        for name, endpoint in list(backend.endpoints.items()):
            config = backend.endpoint_configs.get(endpoint.endpoint_config_name)
            if endpoint.endpoint_status != "InService" or config is None:
                continue
            why = next(filter(None, (self._fails(backend, v["ModelName"])
                                     for v in config.production_variants)), "")
            if not why:
                self.served[name] = endpoint.endpoint_config_name
                continue
            endpoint.failure_reason = (
                "The primary container for production variant did not pass the ping health "
                f"check: {why}")
            before = self.served.get(name)
            if before is None or before not in backend.endpoint_configs:
                endpoint.endpoint_status = "Failed"
                continue
            endpoint.endpoint_config_name = before  # rolled back, as UpdateEndpoint does
            endpoint.production_variants = endpoint._process_production_variants(
                backend.endpoint_configs[before].production_variants)

    def _fails(self, backend, model_name: str) -> str:
        if model_name not in self._verdicts:
            url = backend._models[model_name].primary_container["ModelDataUrl"]
            bucket, key = url.removeprefix("s3://").split("/", 1)
            tarball = self.server.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
            self._verdicts[model_name] = _load_failure(tarball)
        return self._verdicts[model_name]


def _load_failure(tarball: bytes) -> str:
    """Why the model server would not load the model in ``tarball`` ('' if it would)."""
    from ops.plan import ServingPlan
    from ops.serving.exceptions import VariantLoadError
    from ops.serving.variants import BatchingOptions, load_variant

    with tempfile.TemporaryDirectory(prefix="sagemaker-emulator-") as work:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
            tar.extractall(work, filter="data")
        plan = ServingPlan.from_json((Path(work) / "plan.json").read_text())
        try:
            load_variant(plan.variants[0], base_dir=Path(work), executor=None,
                         batching=BatchingOptions())
        except VariantLoadError as e:
            return str(e)
    return ""


def sagemaker_settings(url: str, **overrides) -> dict:
    """An environment's settings for the sagemaker backend, aimed at an emulator."""
    return {
        "region": REGION, "role_arn": ROLE_ARN, "image_uri": IMAGE_URI, "bucket": BUCKET,
        "prefix": "modelgate", "endpoint_url": url, "instance_type": "ml.m5.large",
        "allow_recreate": True,  # moto lacks UpdateEndpoint; see the module docstring
        "max_attempts": 1, "connect_timeout": 2, "read_timeout": 10,
        **overrides,
    }


@pytest.fixture(scope="module")
def moto_server():
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_ENVIRONMENT.items():
            patch.setenv(name, value)
        for name in CLEARED_ENVIRONMENT:
            patch.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield MotoServer(url=f"http://{host}:{port}", port=port)
        finally:
            server.stop()


@pytest.fixture
def sagemaker_backend_factory(moto_server):
    """``make(**settings_overrides)``: a SageMakerBackend on a freshly reset moto server."""
    moto_server.reset()
    moto_server.client("s3").create_bucket(Bucket=BUCKET)

    def make(**overrides):
        # A backend keeps no state of its own, so one per set of settings serves every test
        # of the module and saves building boto3 clients (0.1-0.5 s) for each.
        settings = sagemaker_settings(moto_server.url, **overrides)
        key = tuple(sorted(settings.items()))
        if key not in moto_server._backends:
            moto_server._backends[key] = get_backend("sagemaker", settings)
        return moto_server._backends[key]

    return make
