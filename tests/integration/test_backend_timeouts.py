"""A cloud API that accepts connections and never answers (a hung API server, a black-holed
network): every backend gives up within its timeout and says the backend is unavailable —
the error the rollout worker retries — instead of holding the worker forever."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from ops.backends.base import BackendUnavailable
from ops.backends.kubernetes import KubernetesBackend
from ops.backends.sagemaker import SageMakerBackend

pytestmark = pytest.mark.integration


@pytest.fixture
def black_hole():
    """A server that accepts every connection and reads, but never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    for connection in held:
        connection.close()
    listener.close()


def _gives_up(call, within: float) -> BackendUnavailable:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        call()
    assert time.monotonic() - started < within, "the backend waited past its timeout"
    return info.value


def test_kubernetes_gives_up_on_an_api_server_that_never_answers(black_hole):
    backend = KubernetesBackend(namespace="models", image="modelgate/model-server:test",
                                host=black_hole, timeout=1, validate=False)
    error = _gives_up(lambda: backend.observe("tumor-classifier"), within=15)
    assert "did not answer" in str(error) and "tumor-classifier" in str(error)


def test_sagemaker_gives_up_on_an_endpoint_that_never_answers(black_hole, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    backend = SageMakerBackend(region="us-east-1",
                               role_arn="arn:aws:iam::123456789012:role/modelgate",
                               image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1",
                               bucket="artifacts", endpoint_url=black_hole, max_attempts=2,
                               connect_timeout=1, read_timeout=1)
    error = _gives_up(lambda: backend.observe("tumor-classifier"), within=15)
    assert "could not reach the API" in str(error) and "timeout" in str(error), str(error)
