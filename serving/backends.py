"""Backends: what runs a model version's signatures.

- ``tf``: any SavedModel, through its signatures; signatures, dtypes and shapes come from the
  model itself (its ``saved_model.pb``), so the server serves any model, not only ours. A
  TensorFlow 2 model's signatures are its functions; a TensorFlow 1 model runs in a session over
  its graph, by the signatures' tensor names, as TensorFlow Serving runs it.
- ``onnx``: a version's ONNX twin (``<base>-onnx/<version>/model.onnx``), with onnxruntime,
  exposed as the ``serving_default`` signature (the only one that converts).

Both describe their signatures with TensorFlow's ``SignatureDef`` protos, which metadata
requests return as they are.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from dfdetect.contract import ONNX_SUFFIX, SIGNATURE_PIXELS

log = logging.getLogger(__name__)

PREDICT_METHOD = "tensorflow/serving/predict"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature: its alias, dtype and shape (None for a free dimension)."""

    alias: str
    dtype: tf.DType
    shape: tuple[int | None, ...] | None  # None: unknown rank

    @property
    def batched(self) -> bool:
        """Whether the leading (batch) dimension is free, so requests' rows can be concatenated."""
        return bool(self.shape) and self.shape[0] is None


@dataclass
class Signature:
    """A signature's inputs and outputs by alias, with the SignatureDef proto they were read from."""

    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    proto: meta_graph_pb2.SignatureDef

    @property
    def batchable(self) -> bool:
        """Every input and output has a free leading (batch) dimension."""
        return all(t.batched for t in (*self.inputs.values(), *self.outputs.values()))


def _shape_text(shape) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]" if shape is not None else "<unknown>"


def shape_mismatch(spec: TensorSpec, value: np.ndarray) -> str | None:
    """How an input's shape disagrees with the signature's, or None."""
    if spec.shape is None:
        return None
    if value.ndim != len(spec.shape) or any(e is not None and e != a for e, a in zip(spec.shape, value.shape)):
        return (f"Input {spec.alias} has shape {_shape_text(value.shape)} but the signature expects "
                f"{_shape_text(spec.shape)}")
    return None


def _spec_from_info(alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
    shape = None if info.tensor_shape.unknown_rank else tuple(
        None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
    return TensorSpec(alias, tf.dtypes.as_dtype(info.dtype), shape)


def _signature(name: str, proto: meta_graph_pb2.SignatureDef) -> Signature:
    return Signature(name, {k: _spec_from_info(k, v) for k, v in proto.inputs.items()},
                     {k: _spec_from_info(k, v) for k, v in proto.outputs.items()}, proto)


class Runner:
    """A loaded model version: its signatures, and a way to run one."""

    signatures: dict[str, Signature]

    def run(self, signature: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run ``signature`` on ``inputs`` (alias -> array); the ``outputs`` named, as arrays."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the version holds (sessions, graphs)."""


def read_saved_model(path: str) -> tuple[meta_graph_pb2.MetaGraphDef, bool]:
    """A SavedModel's meta graph to serve (the one tagged ``serve``, else the first), and whether
    it was written by TensorFlow 2 (it has an object graph: functions to call)."""
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved = saved_model_pb2.SavedModel.FromString(f.read())
    graph = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags), saved.meta_graphs[0])
    return graph, bool(graph.object_graph_def.nodes)


def _served_signatures(graph: meta_graph_pb2.MetaGraphDef) -> dict[str, Signature]:
    return {name: _signature(name, proto) for name, proto in graph.signature_def.items()
            if not name.startswith("__")}  # __saved_model_init_op is not a signature


class TensorFlowRunner(Runner):
    """A TensorFlow 2 SavedModel: its signatures' functions, called eagerly."""

    def __init__(self, path: str, graph: meta_graph_pb2.MetaGraphDef):
        self._model = tf.saved_model.load(path, tags=list(graph.meta_info_def.tags) or None)
        self.signatures = _served_signatures(graph)
        self._functions = {name: self._model.signatures[name] for name in self.signatures}

    def run(self, signature, inputs, outputs):
        sig = self.signatures[signature]
        feed = {alias: tf.constant(value, dtype=sig.inputs[alias].dtype) for alias, value in inputs.items()}
        try:
            result = self._functions[signature](**feed)
        except (TypeError, ValueError) as e:  # the function refuses the inputs (their shapes): as the graph would
            raise tf.errors.InvalidArgumentError(None, None, str(e).strip()) from None
        return {name: result[name].numpy() for name in outputs}

    def close(self):
        self._functions.clear()
        self._model = None


class SessionRunner(Runner):
    """A TensorFlow 1 SavedModel, as TensorFlow Serving runs every SavedModel: a session over its
    meta graph, fed and fetched by the tensor names its SignatureDefs give. The graph decides
    what shapes it takes, so a signature whose declared shapes disagree with the graph (written
    by hand in TensorFlow 1) still serves what the graph computes."""

    def __init__(self, path: str, graph: meta_graph_pb2.MetaGraphDef):
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=tf.config.threading.get_intra_op_parallelism_threads(),
            inter_op_parallelism_threads=tf.config.threading.get_inter_op_parallelism_threads())
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)
        try:
            with self._graph.as_default():
                tf.compat.v1.saved_model.loader.load(self._session, list(graph.meta_info_def.tags), path)
        except Exception:
            self._session.close()
            raise
        self.signatures = _served_signatures(graph)

    def run(self, signature, inputs, outputs):
        sig = self.signatures[signature]
        feed = {self._tensor(sig.proto.inputs[alias].name): np.asarray(value, sig.inputs[alias].dtype.as_numpy_dtype)
                for alias, value in inputs.items()}
        fetch = [self._tensor(sig.proto.outputs[name].name) for name in outputs]
        # Fed as TensorFlow Serving feeds a session (C++): a fed tensor replaces the placeholder,
        # whatever shape the placeholder declares. Session.run would first refuse any shape
        # the declaration does not allow, which the C++ session never checks.
        return dict(zip(outputs, self._session._call_tf_sessionrun(None, feed, fetch, [], None)))

    def _tensor(self, name: str):
        return self._graph.get_tensor_by_name(name)._as_tf_output()

    def close(self):
        self._session.close()


def saved_model_runner(path: str) -> Runner:
    """The runner of a SavedModel: TensorFlow 2's functions, or TensorFlow 1's session."""
    graph, tf2 = read_saved_model(path)
    return (TensorFlowRunner if tf2 else SessionRunner)(path, graph)


_ONNX_TYPES = {
    "tensor(float)": types_pb2.DT_FLOAT, "tensor(double)": types_pb2.DT_DOUBLE, "tensor(uint8)": types_pb2.DT_UINT8,
    "tensor(int8)": types_pb2.DT_INT8, "tensor(int32)": types_pb2.DT_INT32, "tensor(int64)": types_pb2.DT_INT64,
    "tensor(bool)": types_pb2.DT_BOOL, "tensor(float16)": types_pb2.DT_HALF, "tensor(string)": types_pb2.DT_STRING,
}


def onnx_path(version_path: str) -> str:
    """Where a version's ONNX twin lives: ``<repo>/<name>-onnx/<version>/model.onnx``."""
    version_path = version_path.rstrip("/")
    base, version = os.path.split(version_path)
    return os.path.join(base + ONNX_SUFFIX, version, "model.onnx")


class OnnxRunner(Runner):
    """A version's ONNX twin on onnxruntime (CPU) as the ``serving_default`` signature;
    FileNotFoundError when the version has no twin."""

    def __init__(self, version_path: str, threads: int = 0):
        import onnxruntime as ort

        path = onnx_path(version_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"version has no ONNX twin at {path} (export it with ONNX, or serve --backend tf)")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle onnxruntime threads spin by default; beside batch threads and gRPC workers on a few
        # cores that spinning steals the CPU the model needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        proto = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
        for io, target in ((self._session.get_inputs(), proto.inputs), (self._session.get_outputs(), proto.outputs)):
            for t in io:
                info = target[t.name]
                info.name = f"{t.name}:0"
                info.dtype = _ONNX_TYPES.get(t.type, types_pb2.DT_INVALID)
                info.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
                    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d if isinstance(d, int) else -1) for d in t.shape]))
        self.signatures = {SIGNATURE_PIXELS: _signature(SIGNATURE_PIXELS, proto)}

    def run(self, signature, inputs, outputs):
        sig = self.signatures[signature]
        feed = {alias: np.asarray(value, dtype=sig.inputs[alias].dtype.as_numpy_dtype) for alias, value in inputs.items()}
        return dict(zip(outputs, self._session.run(outputs, feed)))

    def close(self):
        self._session = None


BACKENDS = ("tf", "onnx")


def load_runner(backend: str, version_path: str, threads: int = 0) -> Runner:
    """The runner of a version folder for ``backend`` (``tf`` or ``onnx``); ValueError for any other.
    ``threads``: onnxruntime's intra-op threads (0: every core); TensorFlow's are process-wide
    (``tf.config.threading``)."""
    if backend == "tf":
        return saved_model_runner(version_path)
    if backend == "onnx":
        return OnnxRunner(version_path, threads)
    raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
