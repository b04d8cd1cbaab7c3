"""ONNX models, run by onnxruntime.

Loading runs no code: onnxruntime executes the graph's operators from its own kernels, and
no custom-operator library is ever registered. A graph may point at *external data* (tensor
bytes in files beside it, by relative path): such a graph is refused before onnxruntime
sees it, so no model can make a worker or a server read a file of its choosing.

Inputs. Either one matrix (``[rows, features]``: no feature names in the graph) or one
input per feature (``[rows]`` or ``[rows, 1]``: the input names are the feature names, as
skl2onnx writes for a model converted from a DataFrame).

Outputs. A classifier has a probabilities output, a ``[rows, classes]`` tensor or
skl2onnx's ZipMap (a sequence of maps), and usually a label output; its class labels are
the ``classlabels_*`` attribute of its classifier operator, else 0..k-1. A regressor has
one value per row.
"""

from __future__ import annotations

import numpy as np

from ops.exceptions import ArtifactError, UnsafeArtifactError
from ops.native.base import CLASSIFICATION, REGRESSION, NativeModel, package_version

ELEMENT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(string)": np.object_,
    "tensor(bool)": np.bool_,
}
NUMERIC = ("tensor(float)", "tensor(double)")
CLASS_LABEL_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


def _rank(shape) -> int:
    return len(shape) if isinstance(shape, list | tuple) else -1


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxModel(NativeModel):
    native_format = "onnx"

    def __init__(self, session, graph, *, producer: str):
        import onnxruntime

        inputs = session.get_inputs()
        self.session = session
        self._columns = len(inputs) > 1 or (_rank(inputs[0].shape) == 1)
        for node_input in inputs:
            if node_input.type not in ELEMENT_TYPES:
                raise ArtifactError(f"the ONNX graph's input {node_input.name!r} is "
                                    f"{node_input.type}; the portal sends tensors of numbers "
                                    "or strings", code="onnx_inputs")
        if self._columns:
            self._check_column_inputs(inputs)
            names, n_features = [i.name for i in inputs], len(inputs)
        else:
            names, n_features = None, self._check_matrix_input(inputs[0])
        self._inputs = [(i.name, ELEMENT_TYPES[i.type]) for i in inputs]
        self._two_d = [_rank(i.shape) == 2 for i in inputs]
        outputs = session.get_outputs()
        self._output_names = [o.name for o in outputs]
        self._proba_index = next((k for k, o in enumerate(outputs) if _probabilities(o)), None)
        self._label_index = next((k for k, o in enumerate(outputs)
                                  if o.type in ("tensor(int64)", "tensor(string)")
                                  and _rank(o.shape) <= 1), None)
        if self._proba_index is None and self._label_index is not None:
            raise ArtifactError("the ONNX graph answers class labels but no probabilities; "
                                "convert it with its probabilities output",
                                code="not_a_model")
        kind = CLASSIFICATION if self._proba_index is not None else REGRESSION
        classes = _class_labels(graph, outputs[self._proba_index]) if kind == CLASSIFICATION \
            else None
        if kind == REGRESSION and outputs[0].type not in NUMERIC:
            raise ArtifactError(f"the ONNX graph's first output is {outputs[0].type}; a "
                                "regressor answers one number per row", code="not_a_model")
        super().__init__(kind=kind, estimator=f"onnx ({producer or 'unknown producer'})",
                         framework=f"onnxruntime {package_version('onnxruntime', onnxruntime)}",
                         n_features=n_features, names=names, classes=classes)

    @staticmethod
    def _check_column_inputs(inputs) -> None:
        for node_input in inputs:
            shape = node_input.shape
            if _rank(shape) not in (1, 2) or (_rank(shape) == 2 and shape[1] not in (1, None)
                                               and not isinstance(shape[1], str)):
                raise ArtifactError(
                    f"the ONNX graph has {len(inputs)} inputs, so each must be one feature "
                    f"([rows] or [rows, 1]); {node_input.name!r} is {shape}",
                    code="onnx_inputs")

    @staticmethod
    def _check_matrix_input(node_input) -> int | None:
        if _rank(node_input.shape) != 2:
            raise ArtifactError(f"the ONNX graph's input {node_input.name!r} has shape "
                                f"{node_input.shape}; the portal sends [rows, features]",
                                code="onnx_inputs")
        if node_input.type not in NUMERIC + ("tensor(int64)", "tensor(int32)"):
            raise ArtifactError(f"the ONNX graph's one input {node_input.name!r} is "
                                f"{node_input.type}: a matrix of numbers is needed",
                                code="onnx_inputs")
        return _static(node_input.shape[1])

    def _feeds(self, X) -> dict:
        if not self._columns:
            name, dtype = self._inputs[0]
            return {name: self.matrix(X, dtype=dtype)}
        if hasattr(X, "columns"):
            return {name: _column(X[name].to_numpy(), dtype, two_d)
                    for (name, dtype), two_d in zip(self._inputs, self._two_d, strict=True)}
        X = np.asarray(X)
        return {name: _column(X[:, k], dtype, two_d)
                for k, ((name, dtype), two_d) in enumerate(zip(self._inputs, self._two_d,
                                                               strict=True))}

    def _run(self, X, index: int):
        return self.session.run([self._output_names[index]], self._feeds(X))[0]

    def _predict_proba(self, X) -> np.ndarray:
        raw = self._run(X, self._proba_index)
        if isinstance(raw, list):  # ZipMap: one {class: probability} per row
            return np.array([[row[c] for c in self.classes_] for row in raw],
                            dtype=np.float64).reshape(len(raw), len(self.classes_))
        return np.asarray(raw, dtype=np.float64)

    def predict(self, X) -> np.ndarray:
        if self.kind == CLASSIFICATION and self._label_index is not None:
            return np.asarray(self._run(X, self._label_index)).reshape(-1)
        return super().predict(X)

    def _predict_values(self, X) -> np.ndarray:
        values = np.asarray(self._run(X, 0), dtype=np.float64)
        if values.ndim > 1 and values.shape[1] != 1:
            raise ArtifactError(f"the ONNX regressor answers {values.shape[1]} values per "
                                "row; one is served", code="not_a_model")
        return values.reshape(-1)


def _column(values: np.ndarray, dtype, two_d: bool) -> np.ndarray:
    column = values.astype(dtype if dtype is not np.object_ else str)
    if dtype is np.object_:
        column = column.astype(object)
    return column.reshape(-1, 1) if two_d else column


def _probabilities(output) -> bool:
    if output.type.startswith("seq(map("):
        return True
    return output.type in NUMERIC and _rank(output.shape) == 2 and \
        (_static(output.shape[1]) or 0) >= 2


def _class_labels(graph, output) -> list:
    """The classifier operator's class labels in output order, else 0..k-1."""
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name in CLASS_LABEL_ATTRIBUTES:
                if attribute.ints:
                    return [int(v) for v in attribute.ints]
                if attribute.strings:
                    return [v.decode("utf-8") for v in attribute.strings]
    columns = _static(output.shape[1]) if _rank(output.shape) == 2 else None
    if columns is None:
        raise ArtifactError("the ONNX graph's probabilities name no classes and their count "
                            "is not fixed", code="not_a_model")
    return list(range(columns))


def _external_tensors(model) -> list[str]:
    """Every tensor anywhere in the model that keeps its values in a file: initializers,
    sparse initializers (their values and indices), attributes, subgraphs. The whole
    message tree is walked, not onnx's own list of tensors, which leaves sparse ones out
    (and onnxruntime would read such a file, relative to the working directory)."""
    from onnx import TensorProto

    found, stack = [], [model]
    while stack:
        message = stack.pop()
        if isinstance(message, TensorProto) and (
                message.data_location == TensorProto.EXTERNAL or len(message.external_data)):
            found.append(message.name or "(unnamed)")
        for descriptor, value in message.ListFields():
            if descriptor.type != descriptor.TYPE_MESSAGE:
                continue
            if hasattr(value, "ListFields"):
                stack.append(value)
            else:  # a repeated field of messages
                stack.extend(value)
    return found


def load_onnx(data: bytes) -> OnnxModel:
    """Parse the graph, refuse external data, open an onnxruntime session (one thread)."""
    import onnx
    import onnxruntime

    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # DecodeError and friends
        raise ArtifactError(f"the ONNX model cannot be parsed: {str(e)[:300]}",
                            code="corrupt_artifact") from e
    external = _external_tensors(model)
    if external:
        raise UnsafeArtifactError(
            f"the ONNX graph reads {len(external)} tensor(s) from external files "
            f"({', '.join(external[:3])}); save it with its data inside "
            "(onnx.save_model(..., save_as_external_data=False); from MLflow, "
            "mlflow.onnx.log_model(..., save_as_external_data=False))")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(data, sess_options=options,
                                               providers=["CPUExecutionProvider"])
    except Exception as e:  # an operator onnxruntime does not have, an invalid graph
        raise ArtifactError(f"onnxruntime cannot run the graph: {str(e)[:300]}",
                            code="corrupt_artifact") from e
    producer = " ".join(filter(None, [model.producer_name, model.producer_version]))
    return OnnxModel(session, model.graph, producer=producer)
