"""Load and check model artifacts without trusting them.

skops files are loaded with an explicit list of trusted types: anything else in the file
refuses to load. Pickle and joblib files can run arbitrary code when loaded, so they are
only loaded when the caller says the project's owner allowed them, and never in a process
that called ``refuse_unsafe_loading`` (the portal's web process does, at start-up).

A skops file is a zip archive that is read, never extracted to disk, but its table of
contents is checked before anything is read: member names that climb out of the archive
or are absolute, more than ``MAX_MEMBERS`` members, more than ``MODELGATE_MAX_UNPACKED_BYTES``
(2 GiB by default) once inflated, or a member that inflates more than ``MAX_RATIO`` times
(a decompression bomb) are refused. The sizes checked are the ones zipfile then enforces
while reading: it never inflates a member past its declared size.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ops import native
from ops.exceptions import ArtifactError, UnsafeArtifactError
from ops.native import LIGHTGBM, ONNX, XGBOOST
from ops.schema import Feature

SKOPS = "skops"
PICKLE = "pickle"
# Every format but PICKLE loads without running code (XGBoost, LightGBM, ONNX: ops.native).
FORMATS = (SKOPS, PICKLE, XGBOOST, LIGHTGBM, ONNX)
HEAD_BYTES = native.HEAD_BYTES

# Types outside skops' own defaults that scikit-learn's common estimators need. Anything
# not listed here (or in the caller's extra list) makes the load fail with its name.
TRUSTED_SKOPS_TYPES = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.IdentityLink",
)

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class ArtifactReport:
    """What the validator learned about a loadable artifact."""

    format: str
    estimator: str
    framework: str
    n_features: int | None
    feature_names: list[str] | None
    classes: list = field(default_factory=list)
    unsafe: bool = False


def detect_format(head: bytes) -> str:
    """Tell the artifact format from its first bytes (``HEAD_BYTES`` of them), without
    loading anything. The bytes decide, never a file name: a pickle called model.json is a
    pickle, and the unsafe-format policy applies to it."""
    if head.startswith(b"PK\x03\x04"):
        return SKOPS
    # Pickle protocol 2+ starts with PROTO (0x80); joblib's compressed files start with a
    # zlib header ("x") or joblib's own "ZF" marker.
    if head[:1] == b"\x80" or head[:2] in (b"x\x01", b"x\x5e", b"x\x9c", b"x\xda", b"ZF"):
        return PICKLE
    found = native.sniff(head)
    if found is not None:
        return found
    raise ArtifactError(
        "the file is neither a skops archive nor an XGBoost (JSON, UBJSON), LightGBM (text) "
        "or ONNX model, nor a pickle/joblib file", code="not_a_model"
    )


def detect_file_format(path: Path) -> str:
    with open(path, "rb") as handle:
        return detect_format(handle.read(HEAD_BYTES))


MAX_MEMBERS = 10_000
MAX_RATIO = 200  # inflated / compressed, for members of more than a megabyte
DEFAULT_MAX_UNPACKED_BYTES = 2 << 30

_unsafe_refused_in: str | None = None


def refuse_unsafe_loading(where: str) -> None:
    """From now on this process loads no pickle or joblib file, whatever a caller allows
    (``where`` names the process in the refusal)."""
    global _unsafe_refused_in
    _unsafe_refused_in = where


def check_archive(path: Path, max_unpacked_bytes: int | None = None) -> None:
    """Refuse a zip archive whose table of contents is hostile (see the module's doc)."""
    if max_unpacked_bytes is None:
        max_unpacked_bytes = int(os.environ.get("MODELGATE_MAX_UNPACKED_BYTES",
                                                DEFAULT_MAX_UNPACKED_BYTES))
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ArtifactError(f"the zip archive cannot be read: {e}",
                            code="corrupt_artifact") from e
    if len(members) > MAX_MEMBERS:
        raise ArtifactError(f"the archive holds {len(members):,} files (at most "
                            f"{MAX_MEMBERS:,})", code="unsafe_archive")
    total = 0
    for member in members:
        name = member.filename.replace("\\", "/")
        if (name.startswith("/") or ".." in PurePosixPath(name).parts
                or (len(name) > 1 and name[1] == ":")):
            raise ArtifactError(f"the archive holds a path outside itself: {member.filename!r}",
                                code="unsafe_archive")
        total += member.file_size
        if (member.file_size > 1 << 20
                and member.file_size > MAX_RATIO * max(member.compress_size, 1)):
            raise ArtifactError(
                f"{member.filename!r} inflates {member.file_size / max(member.compress_size, 1):,.0f} "
                f"times (at most {MAX_RATIO}): a decompression bomb", code="unsafe_archive")
    if total > max_unpacked_bytes:
        raise ArtifactError(f"the archive inflates to {total:,} bytes (at most "
                            f"{max_unpacked_bytes:,})", code="unsafe_archive")


def load_model(path: Path, *, allow_unsafe: bool = False, extra_trusted: tuple[str, ...] = ()):
    """Load an artifact, refusing unknown skops types and (unless allowed) pickles."""
    fmt = detect_file_format(path)
    if fmt == SKOPS:
        return _load_skops(path, extra_trusted)
    if fmt in native.NATIVE_FORMATS:
        return native.load_native(path, fmt)
    if _unsafe_refused_in:
        raise UnsafeArtifactError(
            f"pickle/joblib artifacts are never loaded in {_unsafe_refused_in}; a worker "
            "loads them")
    if not allow_unsafe:
        raise UnsafeArtifactError(
            "pickle/joblib artifacts can run code when loaded and are not loaded here (the "
            "portal converts accepted ones to skops in its sandbox); upload a skops file"
        )
    return _load_pickle(path)


def _load_skops(path: Path, extra_trusted: tuple[str, ...]):
    import skops.io as sio

    check_archive(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if "schema.json" not in archive.namelist():
                raise ArtifactError("the zip archive is not a skops file (no schema.json)",
                                    code="not_a_model")
        untrusted = sio.get_untrusted_types(file=path)
    except ArtifactError:
        raise
    except Exception as e:  # skops raises a variety of errors on corrupt archives
        raise ArtifactError(f"the skops file cannot be read: {e}", code="corrupt_artifact") from e
    allowed = set(TRUSTED_SKOPS_TYPES) | set(extra_trusted)
    refused = sorted(set(untrusted) - allowed)
    if refused:
        raise ArtifactError(
            "the skops file contains types that are not trusted: " + ", ".join(refused),
            code="untrusted_types",
        )
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as e:
        raise ArtifactError(f"the skops file failed to load: {e}", code="corrupt_artifact") from e


def _load_pickle(path: Path):
    import joblib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return joblib.load(path)
    except Exception as e:  # a pickle can raise anything while it is being loaded
        raise ArtifactError(
            f"the pickle failed to load: {type(e).__name__}: {e}", code="corrupt_artifact"
        ) from e


def inspect_model(
    model, *, task: str, input_schema: list[Feature], sample: np.ndarray | None = None,
    fmt: str = SKOPS,
) -> ArtifactReport:
    """Check a loaded estimator against its declared task and input schema.

    ``sample`` is a few rows in schema order used for a smoke prediction; when absent a
    row of zeros is used.
    """
    estimator = estimator_name(model)
    if hasattr(model, "check_task"):  # a native model knows what it computes
        model.check_task(task)
    if not callable(getattr(model, "predict", None)):
        raise ArtifactError(f"{estimator} has no predict method", code="not_a_model")
    if task == CLASSIFICATION and not callable(getattr(model, "predict_proba", None)):
        raise ArtifactError(
            f"{estimator} has no predict_proba method; a classification model needs one",
            code="schema_mismatch",
        )
    n_features = getattr(model, "n_features_in_", None)
    names = getattr(model, "feature_names_in_", None)
    names = [str(n) for n in names] if names is not None else None
    # A native model may store names its own way (LightGBM: "mean radius" as "mean_radius").
    stored_as = getattr(model, "feature_name_of", None)
    declared = [stored_as(f.name) if stored_as else f.name for f in input_schema]
    expected = ("; the model was fitted on " + _listed(names)) if names else ""
    if n_features is not None and int(n_features) != len(declared):
        raise ArtifactError(
            f"the model expects {int(n_features)} features but the input schema declares "
            f"{len(declared)}{expected}",
            code="schema_mismatch",
        )
    if names is not None and names != declared:
        missing = [n for n in names if n not in declared]
        extra = [n for n in declared if n not in names]
        if missing or extra:
            detail = "feature names differ from the input schema"
            if missing:
                detail += "; model has " + ", ".join(missing[:5])
            if extra:
                detail += "; schema has " + ", ".join(extra[:5])
        else:
            detail = ("the input schema lists the model's features in a different order: "
                      "the model expects " + _listed(names))
        raise ArtifactError(detail + " (leave the schema empty and the portal reads the "
                            "model's own feature names)", code="schema_mismatch")

    rows = sample if sample is not None else np.zeros((1, len(declared)))
    frame = _as_model_input(rows, names)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.predict(frame)
            if task == CLASSIFICATION:
                model.predict_proba(frame)
    except Exception as e:
        raise ArtifactError(
            f"the model failed to predict on {len(rows)} row(s) shaped like its input schema: "
            f"{type(e).__name__}: {e}",
            code="predict_failed",
        ) from e

    classes = getattr(model, "classes_", None)
    module = type(model).__module__.split(".")[0]
    return ArtifactReport(
        format=fmt,
        estimator=estimator,
        framework=getattr(model, "framework", None) or _framework(module),
        n_features=int(n_features) if n_features is not None else None,
        feature_names=names,
        classes=[_plain(c) for c in classes] if classes is not None else [],
        unsafe=fmt == PICKLE,
    )


def validate_artifact(
    path: Path, *, task: str, input_schema: list[Feature], allow_unsafe: bool = False,
    extra_trusted: tuple[str, ...] = (), sample: np.ndarray | None = None,
) -> ArtifactReport:
    """Load ``path`` safely and check it; raises ``ArtifactError`` with a readable reason."""
    fmt = detect_file_format(path)
    if fmt in native.NATIVE_FORMATS:  # loaded and predicted with in a child (``check_native``)
        return check_native(path, fmt, task=task, input_schema=input_schema, sample=sample)[1]
    model = load_model(path, allow_unsafe=allow_unsafe, extra_trusted=extra_trusted)
    return inspect_model(model, task=task, input_schema=input_schema, sample=sample, fmt=fmt)


def check_native(path: Path, fmt: str, *, task: str | None = None,
                 input_schema: list[Feature] | None = None,
                 sample: np.ndarray | None = None) -> tuple[list[str] | None, ArtifactReport | None]:
    """Load a native model file (XGBoost, LightGBM, ONNX) in a forked child
    (``ops.bounded``) and, given ``input_schema``, check it there as ``inspect_model``
    does: the feature names the file carries and the report (None without a schema).

    Their parsers are C++ reading the uploader's bytes: a file that makes one read past
    its buffer (SIGSEGV) or throw inside an OpenMP loop (SIGABRT) ends the child, never
    the worker that asked, and is refused as ``corrupt_artifact``. ``ArtifactError``s
    raised in the child are raised here as they were."""
    from ops.bounded import BoundExceeded, run_bounded

    try:
        return run_bounded(_check_native, Path(path), fmt, task, input_schema, sample)
    except BoundExceeded as e:
        raise ArtifactError(f"the {native.NAMES.get(fmt, fmt)} file crashed its parser: "
                            f"{e.detail}", code="corrupt_artifact") from e


def _check_native(path: Path, fmt: str, task: str | None, input_schema: list[Feature] | None,
                  sample: np.ndarray | None):
    _one_openmp_thread()
    model = native.load_native(path, fmt)
    names = getattr(model, "feature_names_in_", None)
    names = [str(n) for n in names] if names is not None else None
    if input_schema is None:
        return names, None
    return names, inspect_model(model, task=task or "", input_schema=input_schema,
                                sample=sample, fmt=fmt)


def _one_openmp_thread() -> None:
    """In a forked child: every OpenMP runtime the parent loaded runs one thread. GNU
    libgomp's thread pool does not survive a fork, so the first parallel region of a
    child whose parent already ran one (a LightGBM model loaded by an earlier task)
    waits forever for threads that are not there; one thread uses no pool."""
    import ctypes
    import sys

    lightgbm = sys.modules.get("lightgbm.basic")  # its own count, set by a model it trained
    if lightgbm is not None and hasattr(lightgbm._LIB, "LGBM_SetMaxThreads"):
        lightgbm._LIB.LGBM_SetMaxThreads(ctypes.c_int(1))
    try:
        with open("/proc/self/maps") as maps:
            fields = (line.split(maxsplit=5) for line in maps)
            libraries = {f[5].strip() for f in fields if len(f) == 6 and any(
                word in f[5].rsplit("/", 1)[-1] for word in ("libgomp", "libomp", "libiomp"))}
    except OSError:
        return
    for library in sorted(libraries):
        try:
            ctypes.CDLL(library).omp_set_num_threads(1)
        except (OSError, AttributeError):
            continue


def dump_skops(model) -> bytes:
    """Serialize an estimator to skops bytes (used by the demo and the tests)."""
    import skops.io as sio

    return sio.dumps(model)


def _listed(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f", … ({len(names)} in all)" if len(names) > most else "")


def _as_model_input(rows: np.ndarray, names: list[str] | None):
    if names is None:
        return np.asarray(rows)
    import pandas as pd

    return pd.DataFrame(np.asarray(rows), columns=names)


def public_name(qualified: str) -> str:
    """A class path as its library documents it: private modules dropped
    (``sklearn.ensemble._gb.GradientBoostingClassifier`` ->
    ``sklearn.ensemble.GradientBoostingClassifier``); steps in parentheses kept."""
    head, paren, steps = qualified.partition("(")
    parts = head.split(".")
    public = [p for p in parts[:-1] if not p.startswith("_")] + parts[-1:]
    return ".".join(public) + paren + steps


def estimator_name(model) -> str:
    """The estimator's public class path; a pipeline's steps follow in parentheses
    (``sklearn.pipeline.Pipeline(StandardScaler → LogisticRegression)``), at most 200
    characters as the version stores it. A native model names itself
    (``xgboost.Booster (binary:logistic)``)."""
    if isinstance(getattr(model, "estimator_name", None), str):
        return model.estimator_name[:200]
    name = public_name(f"{type(model).__module__}.{type(model).__qualname__}")
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        inner = " → ".join("passthrough" if step in (None, "passthrough")
                           else type(step).__qualname__ for _, step in steps)
        name = f"{name}({inner})"
    return name if len(name) <= 200 else name[:199] + "…"


def _framework(module: str) -> str:
    if module == "sklearn":
        import sklearn

        return f"scikit-learn {sklearn.__version__}"
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        return f"{module} {version(module)}"
    return module


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def read_head(fileobj: io.BufferedIOBase, size: int = HEAD_BYTES) -> bytes:
    """Read the first bytes of an open file and rewind it."""
    position = fileobj.tell()
    head = fileobj.read(size)
    fileobj.seek(position)
    return head
