"""Prediction ids that carry the variant and plan generation that answered.

Feedback arrives days later with nothing but the id; reading the variant out of the id itself
means the A/B analysis never needs a lookup table (and never loses rows when one is purged).

Format: ``<variant>.<generation>.<32 hex>`` for a one-row request; a request of ``n > 1``
rows shares one random part and each row adds ``:<row index>``. Variant names may contain
dots, so the id is split from the right.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class PredictionId:
    variant: str
    generation: int
    request: str  # the 32-hex random part shared by the rows of one request
    row: int | None = None

    def __str__(self) -> str:
        base = f"{self.variant}.{self.generation}.{self.request}"
        return base if self.row is None else f"{base}:{self.row}"


def new_request_token() -> str:
    return os.urandom(16).hex()


def new_prediction_ids(variant: str, generation: int, rows: int,
                       token: str | None = None) -> tuple[str, list[str]]:
    """The request-level id and one id per row (equal to it when there is one row)."""
    base = f"{variant}.{generation}.{token or new_request_token()}"
    if rows == 1:
        return base, [base]
    return base, [f"{base}:{i}" for i in range(rows)]


def parse_prediction_id(text: str) -> PredictionId:
    """Recover variant, generation and row from a prediction id; ``ValueError`` if malformed."""
    if not isinstance(text, str):
        raise ValueError("a prediction id is a string")
    parts = text.rsplit(".", 2)
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"not a prediction id: {text!r}")
    variant, generation, rest = parts
    token, sep, row = rest.partition(":")
    if len(token) != 32 or any(c not in "0123456789abcdef" for c in token):
        raise ValueError(f"not a prediction id (random part): {text!r}")
    if not generation.isdigit():
        raise ValueError(f"not a prediction id (generation): {text!r}")
    if sep and not row.isdigit():
        raise ValueError(f"not a prediction id (row): {text!r}")
    return PredictionId(variant=variant, generation=int(generation), request=token,
                        row=int(row) if sep else None)
