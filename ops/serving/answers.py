"""What the model server answers to an inference request: predictions, errors, and who
answered.

Every inference answer, errors included, names what answered as far as it is known
(``Attribution``): the plan generation once a plan is loaded, the variant and its version
once one is chosen, as the headers ``X-Plan-Generation``, ``X-Variant`` and
``X-Model-Version`` and, in error bodies, as ``generation``, ``variant`` and
``model_version``. A failure can then be pinned on a version without a log search. The
version is the number people know (``4`` for v4), or the registry's id for a plan written
before plans carried numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import orjson

if TYPE_CHECKING:
    from ops.serving.inputs import ParsedRequest
    from ops.serving.plans import ServingState
    from ops.serving.variants import LoadedVariant, Prediction

JSON = b"application/json"
NUMPY_JSON = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who answers a request: ``None`` for what is not known yet."""

    generation: int | None = None
    variant: str | None = None
    version: str | None = None

    @classmethod
    def of(cls, state: ServingState | None, variant: LoadedVariant | None = None) -> Attribution:
        if state is None:  # no plan loaded: nothing answered for anyone
            return cls()
        if variant is None:  # refused before a variant was chosen
            return cls(generation=state.plan.generation)
        return cls(state.plan.generation, variant.name, str(variant.spec.version))

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = []
        if self.variant is not None:
            headers.append((b"x-variant", self.variant.encode()))
            headers.append((b"x-model-version", str(self.version).encode()))
        if self.generation is not None:
            headers.append((b"x-plan-generation", str(self.generation).encode()))
        return headers

    def fields(self) -> dict:
        """The same for an error body."""
        found = {}
        if self.variant is not None:
            found["variant"] = self.variant
            found["model_version"] = self.version
        if self.generation is not None:
            found["generation"] = self.generation
        return found


def error_body(code: str, detail: str, attribution: Attribution) -> bytes:
    return orjson.dumps({"error": detail, "code": code, **attribution.fields()})


def infer_answer(name: str, variant: LoadedVariant, prediction: Prediction,
                 parsed: ParsedRequest, base: str, ids: list[str], generation: int) -> dict:
    """The Open Inference Protocol answer."""
    rows = len(ids)
    wanted = parsed.outputs
    outputs = []
    if wanted is None or "predict" in wanted:
        outputs.append({"name": "predict", "shape": [rows], "datatype": variant.labels_datatype,
                        "data": _labels(prediction.labels)})
    if prediction.proba is not None and (wanted is None or "predict_proba" in wanted):
        proba = prediction.proba
        outputs.append({"name": "predict_proba", "shape": list(proba.shape),
                        "datatype": "FP64", "data": proba.ravel(),
                        "parameters": {"classes": variant.class_labels}})
    return {
        "model_name": name,
        "model_version": str(variant.spec.version),
        "id": parsed.request_id or base,
        "outputs": outputs,
        "parameters": {"variant": variant.name, "generation": generation,
                       "prediction_ids": ids},
    }


def invocation_answer(variant: LoadedVariant, prediction: Prediction, ids: list[str],
                      accept: str) -> tuple[bytes, bytes]:
    """SageMaker's answer: (content type, body), CSV when the caller accepts it."""
    if "text/csv" in accept:
        lines = [str(v) for v in _labels_list(prediction.labels)]
        return b"text/csv", ("\n".join(lines) + "\n").encode()
    answer = {"predictions": _labels(prediction.labels), "variant": variant.name,
              "model_version": str(variant.spec.version), "prediction_ids": ids}
    if prediction.proba is not None:
        answer["probabilities"] = prediction.proba
        answer["classes"] = variant.class_labels
    return JSON, orjson.dumps(answer, option=NUMPY_JSON)


def _labels(labels: np.ndarray):
    return labels if labels.dtype.kind in "biuf" else _labels_list(labels)


def _labels_list(labels: np.ndarray) -> list:
    return [v.item() if isinstance(v, np.generic) else v for v in labels.tolist()]
