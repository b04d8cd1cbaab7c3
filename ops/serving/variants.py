"""Loading one variant of a plan: verify, load safely, decide the fast input path, warm up.

Input path. scikit-learn estimators fitted on a DataFrame remember ``feature_names_in_`` and
warn when given a numpy array; building a DataFrame costs ~0.5-1 ms, several times the
prediction itself for a linear model. At load time the server predicts a probe batch both
ways: when the numpy result is identical, the variant is served from numpy (rows are already
in the schema's order, which ``inspect_model`` checked against ``feature_names_in_``) and the
name warning is silenced for this process; when it differs or fails (a ColumnTransformer
that selects columns by name), one DataFrame is built per BATCH, never per row.

Classifiers. When the final estimator's ``predict`` is by construction the arg-max of
``predict_proba`` (forests, trees, boosting, logistic regression, ...) and the probe agrees,
the server calls ``predict_proba`` once and derives the labels, halving a forest's cost.

Tree ensembles. A numpy-path forest or boosting model is compiled for onnxruntime when the
compiled predictor answers the probe and split-point rows as the model does
(``ops.serving.fastpath``, decision 63); ``predictor`` says which one serves, and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ops.artifacts import (
    CLASSIFICATION,
    REGRESSION,
    detect_file_format,
    inspect_model,
    load_model,
)
from ops.exceptions import ArtifactError, PermanentError, StorageError
from ops.plan import Variant
from ops.schema import Feature, SchemaError, parse_input_schema
from ops.serving import fastpath
from ops.serving.batching import MicroBatcher
from ops.serving.binning import DEFAULT_VALUE_EDGES, ClassCounter, FeatureBinner, ValueHistogram
from ops.serving.exceptions import NonFinitePrediction, PredictFailed, VariantLoadError
from ops.serving.inputs import InputSpec
from ops.storage import ChecksumMismatch, UnsupportedUri, open_artifact, open_verified

# Set by a model server's operator to let plans load pickle/joblib variants.
PICKLE_ENV = "MODELGATE_SERVER_ALLOW_PICKLE"
log = logging.getLogger("ops.serving")

NUMPY = "numpy"
FRAME = "frame"
FEATURE_NAME_WARNING = "X does not have valid feature names"
PROBE_ROWS = 16

# Final estimators whose predict() is classes_[argmax(predict_proba())] by construction.
ARGMAX_ESTIMATORS = (
    "sklearn.ensemble._forest.",
    "sklearn.tree._classes.",
    "sklearn.ensemble._gb.",
    "sklearn.ensemble._hist_gradient_boosting.",
    "sklearn.linear_model._logistic.",
    "sklearn.neighbors._classification.",
    "sklearn.naive_bayes.",
    "sklearn.discriminant_analysis.",
    "sklearn.neural_network._multilayer_perceptron.",
    "ops.native.",  # XGBoost, LightGBM, ONNX adapters: predict is that arg-max by design
)


def silence_feature_name_warning() -> None:
    """Numpy rows for a model fitted with names is a decision made per variant (see above)."""
    warnings.filterwarnings("ignore", message=FEATURE_NAME_WARNING, category=UserWarning)


@dataclass(frozen=True)
class BatchingOptions:
    timeout: float = 0.002
    max_batch_rows: int = 64
    max_queue_rows: int = 1024
    concurrency: int = 1
    idle_rounds: int = 3
    inline_below: float = 0.0


@dataclass(slots=True)
class Prediction:
    """The answer for one request's rows."""

    labels: np.ndarray  # class labels (classification) or values (regression)
    proba: np.ndarray | None  # (rows, classes) for classifiers


class LoadedVariant:
    """A variant's model ready to predict, with its batcher and its live distributions."""

    fast: fastpath.FastTreePredictor | None = None  # set by load_variant when proven exact
    predictor = fastpath.Choice(fastpath.MODEL, fastpath.NOT_A_TREE_ENSEMBLE)

    def __init__(self, spec: Variant, model, features: list[Feature], *, mode: str,
                 derive_labels: bool, load_seconds: float, executor: Executor | None,
                 batching: BatchingOptions):
        self.spec = spec
        self.name = spec.name
        self.model = model
        self.task = spec.task
        self.inputs = InputSpec(tuple(features))
        self.mode = mode
        self.derive_labels = derive_labels
        self.load_seconds = load_seconds
        self.fingerprint = variant_fingerprint(spec)
        self._last_failure_log = 0.0
        classes = getattr(model, "classes_", None) if self.task == CLASSIFICATION else None
        self.classes = np.asarray(classes) if classes is not None else None
        self.class_labels = [_plain(c) for c in self.classes] if self.classes is not None else []
        self._class_index = {c: i for i, c in enumerate(self.class_labels)}
        self.labels_datatype = _datatype(self.classes) if self.classes is not None else "FP64"
        baseline_features = (spec.baseline or {}).get("features", {}) or {}
        numeric_columns = {f.name: i for i, f in enumerate(features) if f.numeric}
        self.binner = FeatureBinner(
            {name: (profile or {}).get("edges") or [] for name, profile in
             baseline_features.items() if isinstance(profile, dict)},
            numeric_columns,
        )
        if self.task == CLASSIFICATION:
            self.class_counter = ClassCounter(self.class_labels)
            self.value_histogram = None
        else:
            edges = ((spec.baseline or {}).get("prediction") or {}).get("edges")
            self.class_counter = None
            self.value_histogram = ValueHistogram(edges or DEFAULT_VALUE_EDGES)
        self.batcher = MicroBatcher(
            self.predict_batch, executor, timeout=batching.timeout,
            max_batch_rows=batching.max_batch_rows, max_queue_rows=batching.max_queue_rows,
            concurrency=batching.concurrency, idle_rounds=batching.idle_rounds,
            inline_below=batching.inline_below, name=spec.name,
        )

    # -- prediction (in a worker thread, or on the event loop when cheap: batching.py) -------

    def predict_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (or values) and probabilities for a matrix of validated rows."""
        if self.fast is not None:
            return self.fast.predict(rows)
        features = self._model_input(rows)
        if self.task == CLASSIFICATION:
            proba = np.asarray(self.model.predict_proba(features), dtype=np.float64)
            if self.derive_labels:
                return self.classes[proba.argmax(axis=1)], proba
            return np.asarray(self.model.predict(features)), proba
        return np.asarray(self.model.predict(features), dtype=np.float64).ravel(), None

    def predict_batch(self, items: Sequence[np.ndarray]) -> list:
        """One predict call for the whole batch; one ``Prediction`` (or error) per item."""
        rows = items[0] if len(items) == 1 else np.concatenate(items)
        try:
            labels, proba = self.predict_rows(rows)
        except Exception as e:
            if len(items) == 1:
                return [self._failure(e)]
            # One request's rows broke the batch: answer the others, blame only that one.
            return [self._predict_alone(item) for item in items]
        return self._split(items, rows, labels, proba)

    def _predict_alone(self, rows: np.ndarray):
        try:
            labels, proba = self.predict_rows(rows)
        except Exception as e:
            return self._failure(e)
        return self._split([rows], rows, labels, proba)[0]

    def _split(self, items: Sequence[np.ndarray], rows: np.ndarray, labels: np.ndarray,
               proba: np.ndarray | None) -> list:
        """Each item's share of the batch's answer; an item with a NaN or infinite output
        fails alone (``NonFinitePrediction``) and is left out of the live distributions."""
        finite = _finite_rows(labels, proba)  # None: every row is finite (the usual case)
        kept = None if finite is None else np.zeros(len(rows), dtype=bool)
        results = []
        start = 0
        for item in items:
            stop = start + len(item)
            if finite is not None and not finite[start:stop].all():
                results.append(self._nonfinite(finite[start:stop]))
            else:
                results.append(Prediction(labels[start:stop],
                                          proba[start:stop] if proba is not None else None))
                if kept is not None:
                    kept[start:stop] = True
            start = stop
        if kept is None:
            self._observe(rows, labels, proba)
        elif kept.any():
            self._observe(rows[kept], labels[kept], proba[kept] if proba is not None else None)
        return results

    def _failure(self, error: Exception) -> PredictFailed:
        self._warn("failed to predict: %s: %s", type(error).__name__, error)
        return PredictFailed(f"variant {self.name} could not predict these rows: "
                             f"{type(error).__name__}: {str(error)[:300]}")

    def _nonfinite(self, finite: np.ndarray) -> NonFinitePrediction:
        bad = np.flatnonzero(~finite)
        self._warn("answered NaN or infinity for %d of %d rows", len(bad), len(finite))
        shown = ", ".join(str(i) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        return NonFinitePrediction(
            f"variant {self.name} answered NaN or infinity for {len(bad)} of the request's "
            f"{len(finite)} rows (row {shown}); no prediction is returned for this request")

    def _warn(self, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._last_failure_log >= 1.0:  # a broken model must not flood the log
            self._last_failure_log = now
            log.warning("variant %s " + message, self.name, *args)

    def _observe(self, rows: np.ndarray, labels: np.ndarray, proba: np.ndarray | None) -> None:
        self.binner.add(rows if rows.dtype != object else _numeric_view(rows))
        if self.class_counter is not None:
            if self.derive_labels and proba is not None:
                self.class_counter.add(proba.argmax(axis=1))
            else:
                index = self._class_index
                self.class_counter.add(np.array([index.get(_plain(v), 0) for v in labels],
                                                dtype=np.intp))
        elif self.value_histogram is not None:
            self.value_histogram.add(labels)

    def _model_input(self, rows: np.ndarray):
        if self.mode == NUMPY:
            return rows
        import pandas as pd

        frame = pd.DataFrame(rows, columns=list(self.inputs.names))
        if rows.dtype == object:
            for feature in self.inputs.features:
                if feature.numeric:
                    frame[feature.name] = pd.to_numeric(frame[feature.name])
        return frame

    # -- description ------------------------------------------------------------------------

    def describe(self) -> dict:
        return {
            "name": self.name,
            "version_id": self.spec.version_id,
            "version": str(self.spec.version),
            "task": self.task,
            "sha256": self.spec.sha256,
            "features": len(self.inputs.features),
            "classes": self.class_labels,
            "input_path": self.mode,
            "predictor": self.predictor.predictor,
            "predictor_reason": self.predictor.reason,
            "load_seconds": round(self.load_seconds, 4),
        }


def pickles_allowed(environ=os.environ) -> bool:
    """Whether this server's operator lets a plan's ``trusted_unsafe`` variants load as
    pickles. The portal never starts a server so (it sends skops conversions), so a plan
    written before that, or by anyone else, cannot make its servers unpickle."""
    return environ.get(PICKLE_ENV, "").strip().lower() in ("1", "true", "yes")


def variant_fingerprint(spec: Variant) -> str:
    """Everything that changes what a variant computes or counts (not its weight)."""
    material = json.dumps([spec.name, spec.version_id, spec.artifact_uri, spec.sha256,
                           spec.trusted_unsafe, spec.input_schema, spec.baseline, spec.task,
                           list(spec.trusted_types)],
                          sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()


@contextlib.contextmanager
def _artifact_errors(uri: str) -> Iterator[None]:
    """What cannot open an artifact, as the server reports it (a checksum passes through)."""
    try:
        yield
    except ChecksumMismatch:
        raise
    except UnsupportedUri as e:
        raise VariantLoadError(str(e), code="unsupported_uri") from e
    except (PermanentError, StorageError) as e:  # S3: the only store a server reads
        raise VariantLoadError(f"artifact {uri} cannot be read from S3: {e}",
                               code="artifact_missing") from e
    except ImportError as e:
        raise VariantLoadError(f"s3:// artifacts need boto3 in the server image: {e}",
                               code="unsupported_uri") from e
    except OSError as e:
        raise VariantLoadError(f"artifact {uri} cannot be read: {e.strerror or e}",
                               code="artifact_missing") from e


def read_artifact(uri: str, base_dir: Path) -> bytes:
    """The artifact's bytes: ``file://`` paths (relative ones from the plan's folder) or S3."""
    with _artifact_errors(uri), open_artifact(uri, base_dir=base_dir) as handle:
        return handle.read()


@contextlib.contextmanager
def _verified_copy(spec: Variant, base_dir: Path) -> Iterator[Path]:
    """A private copy of the variant's artifact whose sha256 is the plan's (``open_verified``);
    errors opening or checking it are ``VariantLoadError``, those of the block are not."""
    with contextlib.ExitStack() as stack:
        try:
            with _artifact_errors(spec.artifact_uri):
                path = stack.enter_context(
                    open_verified(spec.artifact_uri, spec.sha256, base_dir=base_dir))
        except ChecksumMismatch as e:
            raise VariantLoadError(
                f"variant {spec.name}: artifact sha256 is {e.actual}, the plan expects "
                f"{spec.sha256}; refusing to load a file that is not the approved one",
                code="sha256_mismatch") from e
        yield path


def load_variant(spec: Variant, *, base_dir: Path, executor: Executor | None,
                 batching: BatchingOptions) -> LoadedVariant:
    """Verify the checksum, load safely, check against the schema, pick the input path, warm."""
    started = time.perf_counter()
    if spec.task not in (CLASSIFICATION, REGRESSION):
        raise VariantLoadError(f"variant {spec.name}: task {spec.task!r} is neither "
                               "classification nor regression", code="invalid_plan")
    # Loaded from a private copy of the verified bytes, so the file that is loaded is the
    # file that was hashed even if the original is replaced in between.
    with _verified_copy(spec, base_dir) as path:
        try:
            fmt = detect_file_format(path)
            model = load_model(path, allow_unsafe=spec.trusted_unsafe and pickles_allowed(),
                               extra_trusted=spec.trusted_types)
            features = _features(spec, model)
            probe = _probe_rows(spec, features)
            inspect_model(model, task=spec.task, input_schema=features,
                          sample=probe, fmt=fmt)
        except ArtifactError as e:
            raise VariantLoadError(f"variant {spec.name}: {e.detail}", code=e.code) from e
    mode, derive = _choose_paths(spec, model, features, probe)
    variant = LoadedVariant(spec, model, features, mode=mode, derive_labels=derive,
                            load_seconds=0.0, executor=executor, batching=batching)
    variant.fast, variant.predictor = fastpath.choose_predictor(
        model, task=spec.task, probe=probe, derive_labels=derive, numpy_input=mode == NUMPY)
    try:
        variant.predict_rows(probe[:1])  # warm the single-row path
    except Exception as e:  # noqa: BLE001 - inspect_model proved it predicts; requests will tell
        log.warning("variant %s failed its warm-up prediction: %s", spec.name, e)
    variant.load_seconds = time.perf_counter() - started
    log.info("variant %s (version %s, id %s) loaded in %.3f s: %s input, %s labels, "
             "predictor %s (%s: %s)", spec.name, spec.version, spec.version_id,
             variant.load_seconds, mode, "derived" if derive else "predicted",
             variant.predictor.predictor, variant.predictor.reason,
             variant.predictor.detail or "-")
    return variant


def _features(spec: Variant, model) -> list[Feature]:
    if spec.input_schema:
        try:
            return parse_input_schema(spec.input_schema)
        except SchemaError as e:
            raise VariantLoadError(f"variant {spec.name}: input schema: {e}",
                                   code="invalid_plan") from e
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [Feature(name=str(n)) for n in names]
    count = getattr(model, "n_features_in_", None)
    if count is None:
        raise VariantLoadError(f"variant {spec.name}: the plan has no input schema and the "
                               "model does not say how many features it takes",
                               code="invalid_plan")
    return [Feature(name=f"f{i}") for i in range(int(count))]


def _probe_rows(spec: Variant, features: list[Feature]) -> np.ndarray:
    """Rows spread over the baseline's range (or around zero) to compare input paths."""
    rng = np.random.default_rng(0)
    profiles = (spec.baseline or {}).get("features", {}) or {}
    numeric = all(f.numeric for f in features)
    rows = np.empty((PROBE_ROWS, len(features)), dtype=np.float64 if numeric else object)
    for i, feature in enumerate(features):
        profile = profiles.get(feature.name) or {}
        if not feature.numeric:
            categories = list((profile.get("frequencies") or {}).keys()) or [""]
            rows[:, i] = [categories[j % len(categories)] for j in range(PROBE_ROWS)]
            continue
        edges = profile.get("edges") or []
        if len(edges) >= 2 and edges[-1] > edges[0]:
            column = rng.uniform(edges[0], edges[-1], PROBE_ROWS)
        else:
            column = rng.normal(size=PROBE_ROWS)
        if feature.type in ("integer", "boolean"):
            column = np.round(column)
            if feature.type == "boolean":
                column = np.clip(column, 0, 1)
        rows[:, i] = column
    return rows


def _choose_paths(spec: Variant, model, features: list[Feature],
                  probe: np.ndarray) -> tuple[str, bool]:
    """(input path, derive labels from probabilities), both proven on the probe rows.

    A model that fails on the probe keeps the conservative choice (DataFrame when fitted with
    names, ``predict`` called): ``inspect_model`` already proved it can predict at all.
    """
    names = getattr(model, "feature_names_in_", None)
    if probe.dtype == object:
        mode = FRAME
    elif names is None:
        mode = NUMPY
    else:
        mode = FRAME
        try:
            reference = _outputs(model, spec.task, _frame(probe, features))
            with warnings.catch_warnings():
                silence_feature_name_warning()
                candidate = _outputs(model, spec.task, probe)
            if all(_same(a, b) for a, b in zip(reference, candidate, strict=True)):
                mode = NUMPY
        except Exception as e:  # noqa: BLE001 - any failure means "needs a DataFrame"
            log.info("variant %s is served from DataFrames: %s", spec.name, e)
    derive = False
    if spec.task == CLASSIFICATION:
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        qualified = f"{type(final).__module__}.{type(final).__qualname__}"
        if qualified.startswith(ARGMAX_ESTIMATORS):
            try:
                labels, proba = _outputs(model, spec.task,
                                         probe if mode == NUMPY else _frame(probe, features))
                classes = np.asarray(model.classes_)
                derive = bool(np.array_equal(classes[proba.argmax(axis=1)], labels))
            except Exception as e:  # noqa: BLE001
                log.info("variant %s: predict is called for labels: %s", spec.name, e)
    return mode, derive


def _same(reference: np.ndarray, candidate: np.ndarray) -> bool:
    """Equal labels, and probabilities equal up to float rounding.

    A DataFrame hands the model a column-major array, which changes the summation order of
    a dot product in the last bit; that is not a different answer.
    """
    if reference.shape != candidate.shape:
        return False
    if reference.dtype.kind == "f" and candidate.dtype.kind == "f":
        return bool(np.allclose(reference, candidate, rtol=1e-9, atol=1e-12))
    return bool(np.array_equal(reference, candidate))


def _outputs(model, task: str, features) -> tuple[np.ndarray, ...]:
    labels = np.asarray(model.predict(features))
    if task == CLASSIFICATION:
        return labels, np.asarray(model.predict_proba(features))
    return (labels,)


def _frame(rows: np.ndarray, features: list[Feature]):
    import pandas as pd

    frame = pd.DataFrame(rows, columns=[f.name for f in features])
    for feature in features:
        if feature.numeric and rows.dtype == object:
            frame[feature.name] = pd.to_numeric(frame[feature.name])
    return frame


def _numeric_view(rows: np.ndarray) -> np.ndarray:
    """Object rows as floats for binning (strings and nulls become NaN)."""
    out = np.full(rows.shape, np.nan)
    for index, value in np.ndenumerate(rows):
        if isinstance(value, int | float) and not isinstance(value, bool | str):
            out[index] = value
    return out


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _datatype(values: np.ndarray) -> str:
    kind = values.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    return "BYTES"


def _finite_rows(labels: np.ndarray, proba: np.ndarray | None) -> np.ndarray | None:
    """Which rows' outputs (values, probabilities) are all finite; ``None`` when every row's
    are, the usual case. Labels that are not numbers (class names) are finite."""
    finite = np.isfinite(labels) if labels.dtype.kind in "fc" else None
    if proba is not None:
        ok = np.isfinite(proba)
        ok = ok.all(axis=1) if ok.ndim > 1 else ok
        finite = ok if finite is None else finite & ok
    if finite is None or finite.all():
        return None
    return finite
