"""The protocol-neutral core: predict, metadata and status over numpy arrays.

gRPC and REST are thin layers over it; every check and every error message lives here once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from dfdetect.serving.backends import Signature, TensorSpec, shape_mismatch
from dfdetect.serving.errors import Code, ServingError, invalid
from dfdetect.serving.limits import RequestLimits, wrong_dtype
from dfdetect.serving.models import LoadedVersion, ModelManager, VersionState, settings_from_config
from dfdetect.serving.tensors import tensor_to_array


@dataclass
class Spec:
    """What a request names: model, and optionally a version or a label, and a signature."""

    name: str
    version: int | None = None
    label: str | None = None
    signature: str = ""


@dataclass
class PredictResult:
    """What answered a predict (model, version, signature) and its outputs by alias."""

    name: str
    version: int
    signature: str
    outputs: dict[str, np.ndarray]


def check_input(spec: TensorSpec, value: np.ndarray, shape: bool = True) -> np.ndarray:
    """Dtype (and with ``shape``, shape) of one input against the signature; INVALID_ARGUMENT
    naming both. As in TensorFlow Serving, a shape is otherwise the graph's to accept or refuse:
    a SignatureDef may declare [?,1] over a graph that takes [1]."""
    expected = spec.dtype
    if expected == tf.string:
        if value.dtype.kind not in ("S", "O", "U"):
            raise invalid(f"Expected input {spec.alias} to be a string (DT_STRING) tensor, got {value.dtype}")
    else:
        if value.dtype != np.dtype(expected.as_numpy_dtype):
            actual = tf.dtypes.as_dtype(value.dtype).name if value.dtype.kind != "O" else "object"
            raise wrong_dtype(spec.alias, expected, actual)
    mismatch = shape_mismatch(spec, value) if shape else None
    if mismatch:
        raise invalid(mismatch)
    return value


class ServingCore:
    """Predict, metadata, status and config reload over the model manager, within the request limits."""

    def __init__(self, manager: ModelManager, metrics=None, check_method_names: bool = False,
                 limits: RequestLimits | None = None):
        self.manager = manager
        self.metrics = metrics
        self.limits = limits or RequestLimits()
        self.check_method_names = check_method_names  # Classify/Regress only on signatures of that method

    def predict(self, spec: Spec, inputs, output_filter=(), api: str = "grpc",
                outputs_of=None) -> PredictResult:
        """``inputs``: alias -> array, or alias -> TensorProto (gRPC), decoded only once the
        signature's dtypes and the limits allow it. ``outputs_of``: instead of ``output_filter``,
        a function of the resolved Signature giving the outputs to fetch (or raising
        ServingError): Classify and Regress check their signature on the very version that runs."""
        started = time.perf_counter()
        status, signature_name = "OK", spec.signature or "serving_default"
        try:
            with self.manager.acquire(spec.name, spec.version, spec.label) as loaded:
                sig = self.manager.signature(loaded, spec.signature)
                signature_name = sig.name
                feed = self._validated(sig, self._decoded(sig, inputs), batched=loaded.batches(sig.name))
                outputs = self._outputs(sig, outputs_of(sig) if outputs_of is not None else output_filter)
                result = self._run(loaded, sig, feed, outputs)
                return PredictResult(spec.name, loaded.version, sig.name, result)
        except ServingError as e:
            status = e.code_name
            raise
        finally:
            if self.metrics is not None:
                self.metrics.observe(spec.name or "", signature_name, api, status, time.perf_counter() - started)

    def _decoded(self, sig: Signature, inputs) -> dict[str, np.ndarray]:
        """The inputs as arrays, within the limits; TensorProtos checked before they are decoded."""
        self._check_aliases(sig, inputs)
        total = 0
        arrays = {}
        for alias, value in inputs.items():
            if isinstance(value, np.ndarray):
                total += self.limits.check_array(alias, value)
                arrays[alias] = value
            else:
                total += self.limits.check_proto(alias, value, sig.inputs[alias].dtype)
        self.limits.check_bytes(total)
        for alias, value in inputs.items():
            if alias not in arrays:
                arrays[alias] = tensor_to_array(alias, value)
        return arrays

    @staticmethod
    def _check_aliases(sig: Signature, inputs) -> None:
        expected = sorted(sig.inputs)
        if len(inputs) != len(sig.inputs):
            extra = sorted(set(inputs) - set(sig.inputs))
            missing = sorted(set(sig.inputs) - set(inputs))
            raise invalid(f"input size does not match signature: {len(inputs)}!={len(sig.inputs)} "
                          f"len({{{','.join(sorted(inputs))}}}) != len({{{','.join(expected)}}}). "
                          f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")
        unknown = sorted(set(inputs) - set(sig.inputs))
        if unknown:
            raise invalid(f"input tensor alias not found in signature: {unknown[0]}. "
                          f"Inputs expected to be in the set {{{','.join(expected)}}}.")

    @staticmethod
    def _validated(sig: Signature, inputs: dict[str, np.ndarray], batched: bool = False) -> dict[str, np.ndarray]:
        """Dtypes against the signature; shapes too where requests are batched together (they
        must concatenate), else the graph decides."""
        feed = {alias: check_input(sig.inputs[alias], value, shape=batched) for alias, value in inputs.items()}
        if batched:
            sizes = {len(v) for v in feed.values()}
            if len(sizes) > 1:
                raise invalid(f"Inputs of signature {sig.name} must share their first (batch) dimension, "
                              f"got {sorted(sizes)}")
        return feed

    @staticmethod
    def _outputs(sig: Signature, output_filter) -> list[str]:
        if not output_filter:
            return sorted(sig.outputs)
        if len(set(output_filter)) != len(output_filter):
            duplicate = next(n for n in output_filter if list(output_filter).count(n) > 1)
            raise invalid(f"duplicate output tensor alias: {duplicate}")
        for name in output_filter:
            if name not in sig.outputs:
                raise invalid(f"output tensor alias not found in signature: {name} Outputs expected to be in the "
                              f"set {{{','.join(sorted(sig.outputs))}}}.")
        return list(dict.fromkeys(output_filter))

    @staticmethod
    def _run(loaded: LoadedVersion, sig: Signature, feed, outputs) -> dict[str, np.ndarray]:
        try:
            return loaded.run(sig.name, feed, outputs)
        except ServingError:
            raise
        except tf.errors.InvalidArgumentError as e:
            message = e.message.strip().splitlines()[0] if e.message else str(e)
            # Where inputs disagree with the signature's shapes, that is the likely cause: say so first.
            why = [m for alias, value in feed.items() if (m := shape_mismatch(sig.inputs[alias], value))]
            raise invalid("; ".join(why + [message])) from None
        except tf.errors.OpError as e:
            raise ServingError(_op_code(e), e.message or str(e)) from None

    def metadata(self, spec: Spec):
        """(model name, version, {signature name: SignatureDef})."""
        with self.manager.acquire(spec.name, spec.version, spec.label) as loaded:
            return spec.name, loaded.version, {name: s.proto for name, s in loaded.signatures.items()}

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionState]:
        """The model's version states, newest first (one version's, or a label's); NOT_FOUND when there
        are none, INVALID_ARGUMENT for an unknown label."""
        return self.manager.status(name, version, label)

    def reload_config(self, config) -> None:
        """Serve the models of a ``ModelServerConfig`` from now on (HandleReloadConfigRequest):
        returns once the models it adds are loaded; INVALID_ARGUMENT for a config that cannot
        be served, UNKNOWN naming the models that loaded no version."""
        try:
            models = settings_from_config(config)
        except ValueError as e:
            raise invalid(str(e)) from None
        errors = self.manager.reconfigure(models)
        if errors:
            raise ServingError(Code.UNKNOWN, "; ".join(errors))


def _op_code(error: tf.errors.OpError):
    for code in Code:
        if code.value[0] == error.error_code:
            return code
    return Code.INTERNAL
