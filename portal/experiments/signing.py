"""Keys of signed prediction ids: one per endpoint (environment and model), derived from
``MODELGATE_PREDICTION_ID_SECRET`` so nothing is stored and a server of one endpoint can
mint no id of another."""

from __future__ import annotations

import re

from django.conf import settings

from ops.serving.ids import Signer, derive_key

_KID = re.compile(r"e(\d+)m(\d+)")


def key_id(environment_id: int, model_id: int) -> str:
    return f"e{environment_id}m{model_id}"


def parse_key_id(kid: str) -> tuple[int, int] | None:
    match = _KID.fullmatch(kid or "")
    return (int(match[1]), int(match[2])) if match else None


def key_for(kid: str) -> bytes:
    return derive_key(settings.MODELGATE_PREDICTION_ID_SECRET.encode(), kid)


def signer_for(environment_id: int, model_id: int) -> Signer:
    kid = key_id(environment_id, model_id)
    return Signer(kid, key_for(kid))
