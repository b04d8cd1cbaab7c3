"""Turning request bodies into validated rows in the model's feature order.

Accepted shapes (all end as an ``(n, features)`` array):

- Open Inference Protocol: one tensor ``{"name": "input-0", "shape": [n, f], "datatype":
  "FP64", "data": [...]}`` with flat or nested data, or one tensor per feature named by the
  input schema (shape ``[n]``);
- the convenience ``{"instances": [[...], ...]}`` (rows as lists or as objects keyed by
  feature name) and ``{"inputs": [[...]]}`` / ``{"inputs": {feature: [...]}}``;
- SageMaker's ``text/csv`` rows (an optional header line of feature names).

Numbers are checked without a Python loop on the common path: numpy parses the nested lists
and only an ``object`` result (a ``null`` or a stray string somewhere) takes the slow path
that finds and names the offending value.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np
import orjson

from ops.schema import Feature
from ops.serving.exceptions import BadInput, UnsupportedMediaType

OIP_NUMERIC_TYPES = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                     "INT64", "FP16", "FP32", "FP64"}
OIP_TYPES = OIP_NUMERIC_TYPES | {"BYTES"}
NAN_WORDS = {"", "nan", "NaN", "NAN", "null", "NULL", "None", "NA"}


@dataclass(frozen=True)
class InputSpec:
    """The features a variant expects, in order, with what validation needs precomputed."""

    features: tuple[Feature, ...]
    names: tuple[str, ...] = field(init=False)
    index: dict = field(init=False)
    numeric: bool = field(init=False)
    required: np.ndarray = field(init=False)  # True where null is refused
    width: int = field(init=False)  # the number of features

    def __post_init__(self):
        object.__setattr__(self, "width", len(self.features))
        object.__setattr__(self, "names", tuple(f.name for f in self.features))
        object.__setattr__(self, "index", {f.name: i for i, f in enumerate(self.features)})
        object.__setattr__(self, "numeric", all(f.numeric for f in self.features))
        object.__setattr__(self, "required",
                           np.array([not f.nullable for f in self.features], dtype=bool))


@dataclass
class ParsedRequest:
    rows: np.ndarray
    unit_id: str | None = None
    request_id: str | None = None
    outputs: tuple[str, ...] | None = None  # OIP: only these outputs, when the client asks


def decode_json(body: bytes):
    if not body:
        raise BadInput("the request body is empty; send a JSON document", code="invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadInput(f"the request body is not JSON: {e}", code="invalid_json") from e


def parse_infer(document, spec: InputSpec) -> ParsedRequest:
    """An OIP ``infer`` body (or the ``instances`` convenience form)."""
    if not isinstance(document, dict):
        raise BadInput("the body must be a JSON object with \"inputs\" (or \"instances\")")
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadInput("\"parameters\" must be an object")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadInput("\"id\" must be a string")
    outputs = _requested_outputs(document.get("outputs"))
    if "instances" in document:
        rows = rows_from_instances(document["instances"], spec, "instances")
    elif "inputs" in document:
        inputs = document["inputs"]
        if isinstance(inputs, list) and inputs and _all_objects(inputs):
            rows = rows_from_tensors(inputs, spec)
        else:
            rows = rows_from_instances(inputs, spec, "inputs")
    else:
        raise BadInput("the body has no \"inputs\" (nor \"instances\")", code="invalid_input")
    return ParsedRequest(rows=rows, unit_id=_unit_id(parameters.get("unit_id")),
                         request_id=request_id, outputs=outputs)


def _all_objects(items: list) -> bool:
    for item in items:
        if not isinstance(item, dict):
            return False
    return True


def invocation_media(content_type: str) -> str:
    """``"csv"`` or ``"json"`` for a SageMaker ``/invocations`` content type."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("text/csv", "application/csv"):
        return "csv"
    if media in ("", "application/json", "application/jsonlines") or media.endswith("+json"):
        return "json"
    raise UnsupportedMediaType(
        f"content type {media!r} is not supported; send application/json or text/csv")


def parse_invocation_document(document, spec: InputSpec) -> ParsedRequest:
    """A decoded SageMaker JSON body: a bare list of rows, ``instances`` or ``inputs``."""
    if isinstance(document, list):
        return ParsedRequest(rows=rows_from_instances(document, spec, "body"))
    return parse_infer(document, spec)


def parse_invocation(body: bytes, content_type: str, spec: InputSpec) -> ParsedRequest:
    """A SageMaker ``/invocations`` body: JSON (instances or inputs) or CSV rows."""
    if invocation_media(content_type) == "csv":
        return ParsedRequest(rows=rows_from_csv(body, spec))
    return parse_invocation_document(decode_json(body), spec)


def unit_id_of(document) -> str | None:
    """``parameters.unit_id`` of a decoded body, when there is one."""
    if not isinstance(document, dict):
        return None
    parameters = document.get("parameters")
    if not isinstance(parameters, dict):
        return None
    return _unit_id(parameters.get("unit_id"))


def _unit_id(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadInput("parameters.unit_id must be a string or an integer")
    return str(value)


def _requested_outputs(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                              for o in value):
        raise BadInput("\"outputs\" must be a list of objects with a name")
    return tuple(o["name"] for o in value)


# -- one tensor, or one tensor per feature ---------------------------------------------------

def rows_from_tensors(tensors: list[dict], spec: InputSpec) -> np.ndarray:
    if len(tensors) == 1 and tensors[0].get("name") not in spec.index:
        return _rows_from_matrix_tensor(tensors[0], spec)
    return _rows_from_feature_tensors(tensors, spec)


def _tensor_parts(tensor: dict, where: str):
    name = tensor.get("name")
    if not isinstance(name, str):
        raise BadInput(f"{where}: every input needs a \"name\"")
    datatype = tensor.get("datatype", "FP64")
    if datatype not in OIP_TYPES:
        raise BadInput(f"input {name!r}: datatype {datatype!r} is not an Open Inference "
                       "Protocol type", code="invalid_type")
    if "data" not in tensor:
        raise BadInput(f"input {name!r} has no \"data\"")
    shape = tensor.get("shape")
    if shape is not None and not _is_shape(shape):
        raise BadInput(f"input {name!r}: shape must be a list of non-negative integers",
                       code="bad_shape")
    return name, datatype, shape, tensor["data"]


def _is_shape(shape) -> bool:
    """A list of integers, each -1 (any) or more."""
    if not isinstance(shape, list):
        return False
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < -1:
            return False
    return True


def _rows_from_matrix_tensor(tensor: dict, spec: InputSpec) -> np.ndarray:
    name, datatype, shape, data = _tensor_parts(tensor, "inputs")
    if datatype == "BYTES" and spec.numeric:
        raise BadInput(f"input {name!r}: datatype BYTES but the model's features are numeric",
                       code="invalid_type")
    array = _numbers(data, spec, name) if spec.numeric else _objects(data, name)
    if shape is not None:
        if -1 not in shape and array.size != (expected := math.prod(shape)):
            raise BadInput(f"input {name!r}: shape {shape} holds {expected} values but data has "
                           f"{array.size}", code="bad_shape")
        if len(shape) == 2 and shape[1] not in (-1, spec.width):
            raise _feature_count(shape[1], spec)
        if len(shape) not in (1, 2):
            raise BadInput(f"input {name!r}: shape {shape} must be [rows, features] or "
                           "[features]", code="bad_shape")
    if array.ndim == 1:
        if array.size % spec.width or array.size == 0:
            if shape is None or len(shape) == 1:
                raise _feature_count(array.size, spec)
            raise BadInput(f"input {name!r}: {array.size} values do not make rows of "
                           f"{spec.width} features", code="wrong_feature_count")
        array = array.reshape(-1, spec.width)
    elif array.ndim != 2:
        raise BadInput(f"input {name!r}: data must be a matrix of rows", code="bad_shape")
    elif array.shape[1] != spec.width:
        raise _feature_count(array.shape[1], spec)
    return _checked(array, spec)


def _rows_from_feature_tensors(tensors: list[dict], spec: InputSpec) -> np.ndarray:
    columns: dict[int, np.ndarray] = {}
    for tensor in tensors:
        name, datatype, shape, data = _tensor_parts(tensor, "inputs")
        position = _feature_position(name, spec, columns)
        columns[position] = _feature_column(name, datatype, shape, data,
                                            spec.features[position].numeric)
    missing = [spec.names[i] for i in range(spec.width) if i not in columns]
    if missing:
        raise BadInput("missing input(s) for feature(s): " + ", ".join(missing[:10]),
                       code="missing_feature")
    lengths = {len(c) for c in columns.values()}
    if len(lengths) != 1:
        raise BadInput("per-feature inputs have different numbers of rows", code="bad_shape")
    if spec.numeric:
        array = np.column_stack([columns[i] for i in range(spec.width)]).astype(np.float64)
    else:
        array = np.empty((lengths.pop(), spec.width), dtype=object)
        for i, column in columns.items():
            array[:, i] = column
    return _checked(array, spec)


def _feature_position(name: str, spec: InputSpec, seen: dict[int, np.ndarray]) -> int:
    """The position of the feature a per-feature input names, unless unknown or repeated."""
    position = spec.index.get(name)
    if position is None:
        raise BadInput(f"input {name!r} is not a feature of this model (expected one input "
                       f"per feature: {', '.join(spec.names[:8])}...)"
                       if spec.width > 8 else
                       f"input {name!r} is not a feature of this model (expected "
                       f"{', '.join(spec.names)})", code="unknown_feature")
    if position in seen:
        raise BadInput(f"input {name!r} appears twice", code="invalid_input")
    return position


def _feature_column(name: str, datatype: str, shape: list | None, data,
                    numeric: bool) -> np.ndarray:
    """One per-feature input's values, as one column."""
    if numeric:
        if datatype == "BYTES":
            raise BadInput(f"input {name!r}: datatype BYTES for a numeric feature",
                           code="invalid_type")
        column = _numbers(data, None, name)
    else:
        column = _objects(data, name)
    if column.ndim == 2 and column.shape[1] == 1:
        column = column[:, 0]
    if column.ndim != 1:
        raise BadInput(f"input {name!r}: a per-feature input has shape [rows]",
                       code="bad_shape")
    if shape is not None and math.prod(shape) != column.size:
        raise BadInput(f"input {name!r}: shape {shape} does not match {column.size} values",
                       code="bad_shape")
    return column


# -- rows as lists or objects ------------------------------------------------------------------

def rows_from_instances(instances, spec: InputSpec, where: str) -> np.ndarray:
    if isinstance(instances, dict):  # columnar: {feature: [values]}
        tensors = [{"name": k, "data": v, "datatype": "FP64" if _is_numeric(spec, k) else "BYTES"}
                   for k, v in instances.items()]
        return _rows_from_feature_tensors(tensors, spec)
    if not isinstance(instances, list) or not instances:
        raise BadInput(f"\"{where}\" must be a non-empty list of rows", code="invalid_input")
    if isinstance(instances[0], dict):
        return _rows_from_records(instances, spec, where)
    if not isinstance(instances[0], list):
        instances = [instances]  # a single row given flat
    array = _numbers(instances, spec, where) if spec.numeric else _objects(instances, where)
    if array.ndim != 2:
        raise BadInput(f"\"{where}\" must be a list of rows of equal length", code="bad_shape")
    if array.shape[1] != spec.width:
        raise _feature_count(array.shape[1], spec)
    return _checked(array, spec)


def _is_numeric(spec: InputSpec, name: str) -> bool:
    position = spec.index.get(name)
    return position is None or spec.features[position].numeric


def _rows_from_records(records: list, spec: InputSpec, where: str) -> np.ndarray:
    array = np.empty((len(records), spec.width), dtype=object)
    for r, record in enumerate(records):
        if not isinstance(record, dict):
            raise BadInput(f"\"{where}\"[{r}] is not an object like the first row",
                           code="bad_shape")
        unknown = [k for k in record if k not in spec.index]
        if unknown:
            raise BadInput(f"\"{where}\"[{r}]: unknown feature(s) " + ", ".join(unknown[:10]),
                           code="unknown_feature")
        missing = [n for n in spec.names if n not in record]
        if missing:
            raise BadInput(f"\"{where}\"[{r}]: missing feature(s) " + ", ".join(missing[:10]),
                           code="missing_feature")
        array[r] = [record[n] for n in spec.names]
    if spec.numeric:
        array = _numbers(array, spec, where)
    else:
        _check_object_types(array, spec, where)
    return _checked(array, spec)


def rows_from_csv(body: bytes, spec: InputSpec) -> np.ndarray:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadInput("the CSV body is not UTF-8 text", code="invalid_input") from e
    lines = [row for row in csv.reader(io.StringIO(text)) if row and any(c.strip() for c in row)]
    if lines and [c.strip() for c in lines[0]] == list(spec.names):
        lines = lines[1:]  # a header line naming the features
    if not lines:
        raise BadInput("the CSV body has no rows", code="invalid_input")
    array = np.empty((len(lines), spec.width), dtype=np.float64 if spec.numeric else object)
    for r, line in enumerate(lines):
        if len(line) != spec.width:
            raise BadInput(f"CSV line {r + 1} has {len(line)} values but the model expects "
                           f"{spec.width} features", code="wrong_feature_count")
        for c, cell in enumerate(line):
            cell = cell.strip()
            feature = spec.features[c]
            if not feature.numeric:
                array[r, c] = None if cell in NAN_WORDS else cell
            elif cell in NAN_WORDS:
                array[r, c] = np.nan
            else:
                try:
                    array[r, c] = float(cell)
                except ValueError:
                    raise BadInput(f"CSV line {r + 1}: feature {feature.name!r} expects a number, "
                                   f"got {cell[:40]!r}", code="invalid_type") from None
    return _checked(array, spec)


# -- conversions and checks ------------------------------------------------------------------

def _feature_count(got: int, spec: InputSpec) -> BadInput:
    return BadInput(f"rows have {got} values but the model expects {spec.width} features",
                    code="wrong_feature_count")


def _numbers(data, spec: InputSpec | None, where: str) -> np.ndarray:
    """A float64 array from nested lists; anything but numbers and nulls is refused."""
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as e:  # ragged rows
        raise BadInput(f"{where}: rows must all have the same length ({e})",
                       code="bad_shape") from e
    kind = array.dtype.kind
    if kind in "fiub":
        return array.astype(np.float64, copy=False)
    if kind != "O":  # numpy turned a mix of numbers and strings into strings: look again
        array = _objects(data, where)
    flat = array.ravel()
    for position, value in enumerate(flat):
        if value is not None and (not isinstance(value, int | float)):
            raise _type_error(value, position, array, spec, where)
    return np.array([np.nan if v is None else v for v in flat],
                    dtype=np.float64).reshape(array.shape)


def _type_error(value, position, array, spec, where) -> BadInput:
    feature = ""
    if spec is not None and array.ndim >= 1 and spec.width:
        column = position % array.shape[-1] if array.ndim == 2 else position % spec.width
        if column < spec.width:
            feature = f" (feature {spec.names[column]!r})"
    shown = repr(value)[:40]
    return BadInput(f"{where}: expected a number{feature}, got {type(value).__name__} {shown}",
                    code="invalid_type")


def _objects(data, where: str) -> np.ndarray:
    try:
        array = np.array(data, dtype=object)
    except (ValueError, TypeError) as e:
        raise BadInput(f"{where}: rows must all have the same length ({e})",
                       code="bad_shape") from e
    return array


def _check_object_types(array: np.ndarray, spec: InputSpec, where: str) -> None:
    for c, feature in enumerate(spec.features):
        column = array[:, c]
        for r, value in enumerate(column):
            if value is None:
                continue
            if feature.numeric:
                if isinstance(value, float) and math.isnan(value):
                    column[r] = None
                elif not isinstance(value, int | float):
                    raise BadInput(f"{where}: row {r}: feature {feature.name!r} expects a number, "
                                   f"got {type(value).__name__}", code="invalid_type")
            elif not isinstance(value, str):
                raise BadInput(f"{where}: row {r}: feature {feature.name!r} expects a string, "
                               f"got {type(value).__name__}", code="invalid_type")


def _checked(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Refuse infinities and nulls in features that are not nullable."""
    if array.shape[0] == 0:
        raise BadInput("the request has no rows", code="invalid_input")
    kind = array.dtype.kind
    if kind == "O":
        _check_object_types(array, spec, "inputs")
        nulls = np.array([[v is None for v in row] for row in array], dtype=bool)
        bad = nulls & spec.required
        if bad.any():
            raise _null_error(bad, spec)
        return array
    if np.isfinite(array).all():
        return array
    if np.isinf(array).any():
        column = int(np.argwhere(np.isinf(array))[0][1])
        raise BadInput(f"feature {spec.names[column]!r} has an infinite value",
                       code="invalid_value")
    bad = np.isnan(array) & spec.required
    if bad.any():
        raise _null_error(bad, spec)
    return array


def _null_error(bad: np.ndarray, spec: InputSpec) -> BadInput:
    columns = sorted({int(c) for c in np.argwhere(bad)[:, 1]})
    names = ", ".join(repr(spec.names[c]) for c in columns[:10])
    return BadInput(f"null/NaN value in feature(s) {names}, which the input schema does not "
                    "allow to be missing", code="null_value")
