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
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from ops.backends import get_backend

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
