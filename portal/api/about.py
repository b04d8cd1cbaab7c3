"""What the server runs: the portal's version and the libraries an uploaded artifact meets.

A pipeline that trains a model reads this before it trains (``modelgate versions``): a
skops or pickle artifact loads only where scikit-learn, skops and numpy are compatible
with those it was written with.
"""

from __future__ import annotations

import platform
import tomllib
from functools import cache
from importlib.metadata import PackageNotFoundError, version

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

# The distributions whose versions are shown, by the key the answer names them with.
LIBRARIES = {"scikit_learn": "scikit-learn", "skops": "skops", "numpy": "numpy",
             "scipy": "scipy", "pandas": "pandas", "joblib": "joblib"}


def _installed(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _portal_version() -> str:
    # The portal runs from its source tree (not pip-installed) in the image and the demo:
    # its pyproject.toml says the version then.
    found = _installed("modelgate")
    if found:
        return found
    try:
        with open(settings.BASE_DIR / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


@cache
def about() -> dict[str, str | None]:
    """The versions, read once per process (they change only with a new process)."""
    return {"modelgate": _portal_version(), "python": platform.python_version(),
            **{key: _installed(name) for key, name in LIBRARIES.items()}}


AboutSerializer = inline_serializer("About", {
    "modelgate": serializers.CharField(help_text="The portal's version"),
    "python": serializers.CharField(help_text="The Python version the portal runs on"),
    **{key: serializers.CharField(allow_null=True,
                                  help_text=f"The installed {name} version (null: not "
                                            "installed)")
       for key, name in LIBRARIES.items()},
})


class AboutView(APIView):
    """What the server runs: the portal, Python and the libraries that load artifacts.

    Train with compatible versions: an artifact written with another scikit-learn or skops
    may not load here (the version then becomes ``invalid``). Any token may read it.
    """

    @extend_schema(responses={200: AboutSerializer}, tags=["about"])
    def get(self, request):
        return Response(about())
