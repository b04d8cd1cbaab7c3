"""The model server: one program serving one endpoint's variants with weighted routing.

Run it with ``python -m ops.serving --plan PLAN.json --port P``. This module stays light (no
numpy, no HTTP stack) so the portal can import ``parse_prediction_id`` to join feedback to the
variant that answered without pulling the server in.
"""

from ops.serving.ids import (
    PredictionId,
    Signer,
    derive_key,
    new_prediction_ids,
    parse_prediction_id,
    verify,
)

__all__ = ["PredictionId", "Signer", "derive_key", "new_prediction_ids",
           "parse_prediction_id", "verify"]
