"""Tree ensembles through onnxruntime, chosen at load only when it answers as the model does.

A scikit-learn forest pays ~50 µs of Python and joblib per tree on every ``predict_proba``
call, whatever the rows: 5-8 ms for 100 trees, ten times the work of the trees themselves
at the server's batch sizes. The same forest converted by skl2onnx and run by onnxruntime
answers a batch of 32 rows in under 0.1 ms (decision 63).

Exact, or not at all. The conversion happens here, at load, from the model the server has
already loaded (nothing else is read, no pickle is opened). skl2onnx moves every threshold
so that ``float32(x) <= t`` splits as scikit-learn's trees split (they compare float32
features with float64 thresholds), so the rows are given as float32, as scikit-learn casts
them. What remains is float32 arithmetic on the leaves: probabilities and values within
``Tolerance``. The predictor is then checked against the model on the version's probe rows
and on rows placed on the ensemble's own split points (each split's float32 value and its
neighbours, where a precision mistake would show) and is used only when every label is equal
and every probability or value within the tolerance; otherwise the plain model serves and
the reason is logged and exported (``modelgate_variant_predictor``). While serving, a row
whose two best classes are closer than twice the tolerance, or that holds a value float32
cannot hold (NaN, infinity, too large), is answered by the model itself, so a label never
depends on float32 rounding.

Routes. ``ROUTES`` lists what can be compiled: scikit-learn's forests, extra trees,
gradient boosting and histogram gradient boosting (the last fails with skl2onnx 1.20,
which writes a boolean where ONNX wants an integer, and so falls back, saying so). XGBoost and
LightGBM models (``ops.native``) already predict in compiled code; a route for them (the
converters of onnxmltools registered with skl2onnx) joins the same check by being added to
``ROUTES``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("ops.serving")

ENABLED_ENV = "MODELGATE_FAST_TREES"  # "off" serves every model as it is
TOLERANCE_ENV = "MODELGATE_FAST_TREES_TOLERANCE"
THREADS_ENV = "MODELGATE_FAST_TREES_THREADS"

ONNXRUNTIME = "onnxruntime"
MODEL = "model"  # the loaded model itself

# Why a predictor was chosen: stable words, the ``reason`` label of the metric.
EXACT = "exact"
DISABLED = "disabled"
NOT_A_TREE_ENSEMBLE = "not_a_tree_ensemble"
UNSUPPORTED_INPUT = "unsupported_input"
TOO_LARGE = "too_large"
CONVERSION_FAILED = "conversion_failed"
OUTPUTS_DIFFER = "outputs_differ"

# skl2onnx converts ~30 µs a node; past this the load would take more than half a minute.
MAX_NODES = 1_000_000
EDGE_ROWS = 256


@dataclass(frozen=True)
class Tolerance:
    """How far the fast path may be from the model: labels never.

    ``probability`` is absolute, per class; ``value`` is relative to the largest magnitude
    among the check's values (at least 1), float32's seven digits with room to spare.
    """

    probability: float = 1e-5
    value: float = 1e-5


@dataclass(frozen=True)
class Route:
    """A family of models the fast path can compile, and how."""

    name: str
    accepts: Callable[[object], bool]
    compile: Callable[[object, int, int], Callable[[np.ndarray], list]]  # model, features, threads
    input_dtype: type  # what the model itself casts rows to before comparing them


@dataclass(frozen=True)
class Choice:
    """The predictor a variant serves with, and why (for the log, metrics and /v2/models)."""

    predictor: str
    reason: str
    detail: str = ""


def _qualified(model) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


SKLEARN_TREE_ENSEMBLES = frozenset({
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
})


def _compile_sklearn(model, n_features: int, threads: int) -> Callable[[np.ndarray], list]:
    """skl2onnx (float32 input, thresholds moved for scikit-learn) and one onnxruntime
    session; the returned function maps float32 rows to the session's outputs."""
    import onnxruntime
    from skl2onnx import to_onnx

    options = {"zipmap": False} if hasattr(model, "predict_proba") else None
    onx = to_onnx(model, np.zeros((1, n_features), dtype=np.float32), options=options)
    session_options = onnxruntime.SessionOptions()
    # The server's own threads run batches; onnxruntime's pool would compete with them (and
    # its spinning workers burn a core while waiting), measured slower on two cores.
    session_options.intra_op_num_threads = threads
    session_options.inter_op_num_threads = 1
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(onx.SerializeToString(), session_options,
                                           providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda rows: session.run(None, {input_name: rows})


ROUTES: tuple[Route, ...] = (
    Route("skl2onnx", lambda m: _qualified(m) in SKLEARN_TREE_ENSEMBLES, _compile_sklearn,
          np.float32),
)


class FastTreePredictor:
    """Labels and probabilities (or values) from the compiled ensemble; rows it cannot
    answer exactly are answered by the model."""

    def __init__(self, model, run: Callable[[np.ndarray], list], *, classification: bool,
                 classes: np.ndarray | None, input_dtype: type, tolerance: Tolerance):
        self.model = model
        self._run = run
        self._classification = classification
        self._classes = classes
        self._dtype = input_dtype
        self._margin = 2 * tolerance.probability

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        with np.errstate(over="ignore", invalid="ignore"):
            cast = np.ascontiguousarray(rows, dtype=self._dtype)
        if not np.isfinite(cast).all():  # the model's own answer (or its error) for these
            return self._plain(rows)
        outputs = self._run(cast)
        if not self._classification:
            return np.asarray(outputs[0], dtype=np.float64).ravel(), None
        proba = np.asarray(outputs[1], dtype=np.float64)
        best = proba.argmax(axis=1)
        labels = self._classes[best]
        if proba.shape[1] > 1:
            top = np.partition(proba, -2, axis=1)
            close = np.flatnonzero(top[:, -1] - top[:, -2] <= self._margin)
            if close.size:  # a near tie: the label must not hang on float32 rounding
                exact_labels, exact_proba = self._plain(rows[close])
                labels = labels.copy()
                labels[close] = exact_labels
                proba[close] = exact_proba
        return labels, proba

    def _plain(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if not self._classification:
            return np.asarray(self.model.predict(rows), dtype=np.float64).ravel(), None
        proba = np.asarray(self.model.predict_proba(rows), dtype=np.float64)
        return self._classes[proba.argmax(axis=1)], proba


def settings(environ=os.environ) -> tuple[bool, Tolerance, int]:
    """(enabled, tolerance, onnxruntime threads) from the server's environment."""
    enabled = environ.get(ENABLED_ENV, "on").strip().lower() not in ("0", "off", "false", "no")
    raw = environ.get(TOLERANCE_ENV, "").strip()
    try:
        tolerance = Tolerance(float(raw), float(raw)) if raw else Tolerance()
        threads = int(environ.get(THREADS_ENV, "").strip() or 1)
    except ValueError:
        raise SystemExit(f"{TOLERANCE_ENV} must be a number and {THREADS_ENV} an integer "
                         "(the server reads them at start)") from None
    return enabled, tolerance, max(1, threads)


def choose_predictor(model, *, task: str, probe: np.ndarray, derive_labels: bool,
                     numpy_input: bool = True, tolerance: Tolerance | None = None,
                     enabled: bool | None = None, threads: int | None = None,
                     ) -> tuple[FastTreePredictor | None, Choice]:
    """The fast predictor when it is proven exact on the check rows, else ``None``; and why.

    ``probe`` are the variant's probe rows in the schema's order; the model must take them
    as numpy rows (``numpy_input``), and a classifier's ``predict`` must be the arg-max of
    its probabilities (``derive_labels``).
    """
    env_enabled, env_tolerance, env_threads = settings()
    enabled = env_enabled if enabled is None else enabled
    tolerance = tolerance or env_tolerance
    if not enabled:
        return None, Choice(MODEL, DISABLED, f"{ENABLED_ENV} is off")
    route = next((r for r in ROUTES if r.accepts(model)), None)
    if route is None:
        return None, Choice(MODEL, NOT_A_TREE_ENSEMBLE, _qualified(model))
    classification = task == "classification"
    refusal = (_unsupported(model, probe, classification, derive_labels, numpy_input)
               or _narrower(model, route))
    if refusal:
        return None, Choice(MODEL, UNSUPPORTED_INPUT, refusal)
    nodes = _node_count(model)
    if nodes > MAX_NODES:
        return None, Choice(MODEL, TOO_LARGE, f"{nodes} nodes (at most {MAX_NODES})")
    try:
        run = route.compile(model, probe.shape[1], threads or env_threads)
    except Exception as e:  # noqa: BLE001 - any converter failure means "serve the model"
        return None, Choice(MODEL, CONVERSION_FAILED, _short(e))
    classes = np.asarray(model.classes_) if classification else None
    predictor = FastTreePredictor(model, run, classification=classification, classes=classes,
                                  input_dtype=route.input_dtype, tolerance=tolerance)
    rows = np.concatenate([probe.astype(np.float64), edge_rows(model, probe)])
    try:
        difference = compare(model, predictor, rows, classification, tolerance)
    except Exception as e:  # noqa: BLE001 - a predictor that cannot answer is not exact
        difference = _short(e)
    if difference:
        return None, Choice(MODEL, OUTPUTS_DIFFER, difference)
    return predictor, Choice(ONNXRUNTIME, EXACT,
                             f"{route.name}: {len(rows)} rows within {_describe(tolerance)}")


def compare(model, predictor: FastTreePredictor, rows: np.ndarray, classification: bool,
            tolerance: Tolerance) -> str:
    """'' when the predictor answers ``rows`` as the model does, else what differs."""
    labels, proba = predictor.predict(rows)
    if classification:
        expected = np.asarray(model.predict_proba(rows), dtype=np.float64)
        expected_labels = np.asarray(model.predict(rows))
        if not np.array_equal(labels, expected_labels):
            return f"{int((labels != expected_labels).sum())} of {len(rows)} labels differ"
        gap = float(np.abs(proba - expected).max())
        if gap > tolerance.probability:
            return f"probabilities differ by up to {gap:.3g} (tolerance {tolerance.probability:g})"
        return ""
    expected = np.asarray(model.predict(rows), dtype=np.float64).ravel()
    scale = max(1.0, float(np.abs(expected).max()))
    gap = float(np.abs(labels - expected).max())
    if gap > tolerance.value * scale:
        return (f"values differ by up to {gap:.3g} (tolerance {tolerance.value:g} x {scale:.3g})")
    return ""


def edge_rows(model, probe: np.ndarray, count: int = EDGE_ROWS) -> np.ndarray:
    """Rows whose every feature sits on one of the ensemble's split points: its float32
    value or the float32 next to it on either side, where float precision would show."""
    rng = np.random.default_rng(0)
    rows = probe[rng.integers(0, len(probe), count)].astype(np.float64)
    for feature, thresholds in _split_points(model, probe.shape[1]).items():
        t = rng.choice(thresholds, count).astype(np.float32)
        step = rng.integers(-1, 2, count)
        moved = np.where(step < 0, np.nextafter(t, np.float32(-np.inf)),
                         np.where(step > 0, np.nextafter(t, np.float32(np.inf)), t))
        rows[:, feature] = moved.astype(np.float64)
    return rows


def _split_points(model, n_features: int) -> dict[int, np.ndarray]:
    """Feature -> thresholds of every split of the ensemble's trees (scikit-learn's)."""
    points: dict[int, list] = {}
    for tree in _trees(model):
        internal = tree.feature >= 0
        for feature in np.unique(tree.feature[internal]):
            if feature < n_features:
                points.setdefault(int(feature), []).append(
                    tree.threshold[internal & (tree.feature == feature)])
    return {f: np.concatenate(t) for f, t in points.items()}


def _trees(model):
    estimators = getattr(model, "estimators_", None)
    if estimators is None:
        return []
    return [e.tree_ for e in np.ravel(np.asarray(estimators, dtype=object))
            if hasattr(e, "tree_")]


def _node_count(model) -> int:
    trees = _trees(model)
    if trees:
        return sum(int(t.node_count) for t in trees)
    predictors = getattr(model, "_predictors", None) or []  # histogram gradient boosting
    return sum(len(p.nodes) for iteration in predictors for p in iteration)


# Tree ensembles whose splits compare rows in float64 (scikit-learn's other trees cast rows
# to float32 first, so a float32 route sees what they see).
FLOAT64_SPLITS = frozenset(name for name in SKLEARN_TREE_ENSEMBLES if "_hist_gradient" in name)


def _narrower(model, route: Route) -> str:
    """Why a route cannot be exact for this model whatever the check rows: it reads rows
    in a narrower type than the model compares them in (a float64 threshold such as
    0.15000000000000002 and the row 0.15 are one float32)."""
    if _qualified(model) in FLOAT64_SPLITS and np.dtype(route.input_dtype).itemsize < 8:
        return (f"the model compares rows in float64; the {route.name} route reads "
                f"{np.dtype(route.input_dtype).name}")
    return ""


def _unsupported(model, probe: np.ndarray, classification: bool, derive_labels: bool,
                 numpy_input: bool) -> str:
    if probe.dtype.kind not in "fiu":
        return "the rows are not all numeric"
    if not numpy_input:
        return "the model is served from DataFrames"
    if int(getattr(model, "n_outputs_", 1)) != 1:
        return "several outputs"
    if classification and not derive_labels:
        return "predict is not the arg-max of predict_proba"
    return ""


def _describe(tolerance: Tolerance) -> str:
    return f"probability {tolerance.probability:g}, value {tolerance.value:g} relative"


def _short(error: Exception) -> str:
    """A converter's error as one short line (skl2onnx's can print a whole graph); the
    cause when there is one, which is where the reason is."""
    error = error.__cause__ or error
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:200]}"
