"""What one request may ask of the server, checked before anything is allocated for it.

A request declares its tensors' dtypes and shapes; a 45-byte Predict can declare a thousand
images with no values (TensorFlow fills them in), a 42-byte one a float tensor of a billion
elements. These checks read only the declaration and the values sent, so a refusal costs
microseconds and no memory:

- the dtype is the signature's (before any conversion);
- a shape has no negative dimensions; its batch (first dimension) is at most ``max_batch``;
- the tensors decoded would take at most ``max_tensor_bytes`` together (RESOURCE_EXHAUSTED);
- values match the shape: raw ``tensor_content`` exactly, typed fields at most one per element
  (fewer are filled with the last one, as TensorFlow does); integers in their dtype's range;
- an encoded image in a string input declares at most ``max_image_pixels`` (read from its
  header: a 1.5 MB PNG can declare a gigabyte of pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from dfdetect.images import DEFAULT_MAX_PIXELS, too_many_pixels
from dfdetect.serving.errors import exhausted, invalid

DEFAULT_MAX_BATCH = 256  # rows in one request, where batching does not set max_batch_size
DEFAULT_MAX_TENSOR_BYTES = 512 * 1024 * 1024

# The typed field each dtype's values come in (TensorProto), for counting and range checks.
_FIELDS = {
    tf.float16: "half_val", tf.bfloat16: "half_val", tf.float32: "float_val", tf.float64: "double_val",
    tf.int8: "int_val", tf.int16: "int_val", tf.int32: "int_val", tf.uint8: "int_val", tf.uint16: "int_val",
    tf.int64: "int64_val", tf.uint32: "uint32_val", tf.uint64: "uint64_val", tf.bool: "bool_val",
    tf.string: "string_val", tf.complex64: "scomplex_val", tf.complex128: "dcomplex_val",
}
_PER_ELEMENT = {tf.complex64: 2, tf.complex128: 2}  # values per element in the typed field


def wrong_dtype(alias: str, expected: tf.DType, got: str):
    """The refusal of an input whose dtype is not the signature's (one wording for every path)."""
    return invalid(f"Expected input {alias} to be of type {expected.name} (DT_{expected.name.upper()}), got {got}")


@dataclass(frozen=True)
class RequestLimits:
    """The most one request may carry: rows, bytes of its decoded tensors, pixels an image declares."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
    max_image_pixels: int = DEFAULT_MAX_PIXELS

    def check_batch(self, alias: str, rows: int) -> None:
        """INVALID_ARGUMENT when an input has more than ``max_batch`` rows."""
        if rows > self.max_batch:
            raise invalid(f"Task size {rows} is larger than maximum input batch size {self.max_batch} "
                          f"(input {alias}; --max_request_batch_size)")

    def check_bytes(self, total: int) -> None:
        """RESOURCE_EXHAUSTED when the request's tensors would take more than ``max_tensor_bytes`` decoded."""
        if total > self.max_tensor_bytes:
            raise exhausted(f"The request's tensors would take {total} bytes, more than the limit of "
                            f"{self.max_tensor_bytes} bytes (--max_request_tensor_bytes)")

    def check_proto(self, alias: str, proto, expected: tf.DType) -> int:
        """One input's TensorProto against its signature's dtype and these limits, before it is
        decoded; the bytes it will take decoded."""
        if proto.dtype != expected.as_datatype_enum:
            try:
                got = tf.dtypes.as_dtype(proto.dtype).name
            except TypeError:
                got = f"an unknown dtype ({proto.dtype})"
            raise wrong_dtype(alias, expected, got)
        if proto.tensor_shape.unknown_rank:
            raise invalid(f"tensor parsing error: {alias} (its shape has an unknown rank)")
        dims = [d.size for d in proto.tensor_shape.dim]
        if any(d < 0 for d in dims):
            raise invalid(f"tensor parsing error: {alias} (shape [{','.join(map(str, dims))}] has a negative "
                          "dimension)")
        if dims:
            self.check_batch(alias, dims[0])
        elements = math.prod(dims)
        if expected == tf.string:
            values = proto.string_val
            if len(values) > elements:
                raise invalid(f"tensor parsing error: {alias} ({len(values)} values for shape "
                              f"[{','.join(map(str, dims))}] of {elements} elements)")
            size = sum(len(v) for v in values) + (elements - len(values)) * (len(values[-1]) if values else 0)
            for k, value in enumerate(values):
                refused = too_many_pixels(value, self.max_image_pixels)
                if refused:
                    raise invalid(f"Input {alias}[{k}]: {refused} (--max_image_pixels)")
            return size + 8 * elements
        itemsize = expected.size
        size = elements * itemsize
        if proto.tensor_content:
            if len(proto.tensor_content) != size:
                raise invalid(f"tensor parsing error: {alias} (tensor_content of {len(proto.tensor_content)} bytes "
                              f"for shape [{','.join(map(str, dims))}] of {expected.name}, which takes {size})")
            return size
        field = _FIELDS.get(expected)
        if field is None:
            raise invalid(f"tensor parsing error: {alias} (dtype {expected.name} is not supported)")
        values = getattr(proto, field)
        if len(values) > elements * _PER_ELEMENT.get(expected, 1):
            raise invalid(f"tensor parsing error: {alias} ({len(values)} values for shape "
                          f"[{','.join(map(str, dims))}] of {elements} elements)")
        if expected.is_integer and field == "int_val" and values:
            self.check_range(alias, np.asarray(values, np.int64), expected)
        return size

    @staticmethod
    def check_range(alias: str, values: np.ndarray, dtype: tf.DType) -> None:
        """INVALID_ARGUMENT when an integer value does not fit ``dtype``."""
        low, high = int(values.min()), int(values.max())
        if low < dtype.min or high > dtype.max:
            bad = low if low < dtype.min else high
            raise invalid(f"Input {alias}: value {bad} is out of range for {dtype.name} "
                          f"({dtype.min} to {dtype.max})")

    def check_array(self, alias: str, array: np.ndarray) -> int:
        """An input decoded from JSON: its batch, its images; its bytes."""
        if array.ndim:
            self.check_batch(alias, array.shape[0])
        if array.dtype == object:
            for k, value in enumerate(array.reshape(-1)):
                if isinstance(value, bytes):
                    refused = too_many_pixels(value, self.max_image_pixels)
                    if refused:
                        raise invalid(f"Input {alias}[{k}]: {refused} (--max_image_pixels)")
            return sum(len(v) for v in array.reshape(-1) if isinstance(v, bytes)) + 8 * array.size
        return array.nbytes
