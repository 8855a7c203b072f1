"""Classify, Regress and MultiInference: TensorFlow Serving's tf.Example APIs, protocol-neutral.

A classification signature (method ``tensorflow/serving/classify``) takes serialized
``tf.Example`` protos in its ``inputs`` tensor and answers ``classes`` (strings) and/or ``scores``
(floats), [examples, classes]; a regression signature (``tensorflow/serving/regress``) answers
``outputs``, one float per example. The gRPC and REST layers turn requests into serialized
examples and these results into their answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfdetect.serving.core import ServingCore, Spec
from dfdetect.serving.errors import invalid

CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"
INPUTS, CLASSES, SCORES, OUTPUTS = "inputs", "classes", "scores", "outputs"


@dataclass
class Classification:
    """A Classify answer: the model spec that answered, and per example its classes and/or scores."""

    name: str
    version: int
    signature: str
    classes: np.ndarray | None  # [examples, k] bytes
    scores: np.ndarray | None  # [examples, k] float

    def rows(self) -> list[list[tuple[str, float | None]]]:
        """Per example, its (label, score) pairs: label "" without classes, score None without scores."""
        shape = (self.scores if self.scores is not None else self.classes).shape
        return [[(_text(self.classes[i, k]) if self.classes is not None else "",
                  float(self.scores[i, k]) if self.scores is not None else None) for k in range(shape[1])]
                for i in range(shape[0])]


@dataclass
class Regression:
    """A Regress answer: the model spec that answered, and one value per example."""

    name: str
    version: int
    signature: str
    values: np.ndarray  # [examples] float


def serialized_examples(examples: list, context=None) -> list[bytes]:
    """tf.Example protos as their bytes; ``context`` (an Example) merged into each, as
    ``ExampleListWithContext`` asks."""
    if not examples:
        raise invalid("Input is empty")
    if context is None:
        return [e.SerializeToString() for e in examples]
    merged = []
    for example in examples:
        combined = type(example)()
        combined.CopyFrom(context)
        combined.MergeFrom(example)
        merged.append(combined.SerializeToString())
    return merged


def _check(core: ServingCore, sig, method: str, what: str) -> None:
    # As in TensorFlow Serving, the method name is checked only with --enable_signature_method_name_check.
    if core.check_method_names and sig.proto.method_name != method:
        raise invalid(f"Expected {what} signature method_name to be {method}. Was: {sig.proto.method_name}")
    if INPUTS not in sig.inputs:
        raise invalid(f"No {what} inputs found in SignatureDef: {sig.name} (expected the input {INPUTS!r})")


def classify(core: ServingCore, spec: Spec, examples: list[bytes], api: str = "grpc") -> Classification:
    """Serialized tf.Examples through a classification signature; INVALID_ARGUMENT when the signature
    or its outputs do not fit."""
    def outputs_of(sig):
        _check(core, sig, CLASSIFY, "classification")
        wanted = [name for name in (CLASSES, SCORES) if name in sig.outputs]
        if not wanted:
            raise invalid(f"Expected classification signature outputs to contain {CLASSES!r} and/or {SCORES!r}")
        return wanted

    result = core.predict(spec, {INPUTS: _string_tensor(examples)}, api=api, outputs_of=outputs_of)
    count = len(examples)
    classes = _per_example(result.outputs.get(CLASSES), count, CLASSES)
    scores = _per_example(result.outputs.get(SCORES), count, SCORES)
    if classes is not None and scores is not None and classes.shape != scores.shape:
        raise invalid(f"Tensors class and score should match in shape: {classes.shape} vs {scores.shape}")
    return Classification(result.name, result.version, result.signature, classes,
                          None if scores is None else scores.astype(np.float32))


def regress(core: ServingCore, spec: Spec, examples: list[bytes], api: str = "grpc") -> Regression:
    """Serialized tf.Examples through a regression signature; INVALID_ARGUMENT when the signature or
    its output does not fit."""
    def outputs_of(sig):
        _check(core, sig, REGRESS, "regression")
        if OUTPUTS not in sig.outputs:
            raise invalid(f"No regression outputs found in SignatureDef: {sig.name} (expected the output "
                          f"{OUTPUTS!r})")
        return [OUTPUTS]

    result = core.predict(spec, {INPUTS: _string_tensor(examples)}, api=api, outputs_of=outputs_of)
    values = _per_example(result.outputs[OUTPUTS], len(examples), OUTPUTS)
    if values.shape[1] != 1:
        raise invalid(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                      f"{list(result.outputs[OUTPUTS].shape)}")
    return Regression(result.name, result.version, result.signature, values[:, 0].astype(np.float32))


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _string_tensor(examples: list[bytes]) -> np.ndarray:
    tensor = np.empty(len(examples), dtype=object)
    tensor[:] = examples
    return tensor


def _per_example(value: np.ndarray | None, count: int, name: str) -> np.ndarray | None:
    if value is None:
        return None
    value = np.asarray(value)
    if value.ndim == 1:
        value = value[:, None]
    if value.ndim != 2 or value.shape[0] != count:
        raise invalid(f"Expected tensor {name} to be [batch_size, ...] with batch_size {count}, got "
                      f"{list(value.shape)}")
    return value
