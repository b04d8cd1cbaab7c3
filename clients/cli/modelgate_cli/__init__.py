"""Modelgate's command-line client and Python SDK, for CI pipelines.

``Client(url, token)`` is a thin layer over the portal's REST API (``/api/v1/``); the
``modelgate`` command (``modelgate_cli.cli``) is built on it.
"""

from modelgate_cli.client import ApiError, Client, ClientError, Unreachable

__version__ = "0.1.0"
__all__ = ["ApiError", "Client", "ClientError", "Unreachable", "__version__"]
