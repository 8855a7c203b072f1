"""numpy arrays <-> TensorProto, as TensorFlow's make_tensor_proto and make_ndarray do them.

Arrays of more than one fixed-width number go in ``tensor_content`` (the array's bytes, the fast
path); single values, booleans, complex numbers and uint16 in their typed fields; strings in
``string_val``: the same choices as ``tf.make_tensor_proto``, so a request is byte for byte the
one TensorFlow would build (tests/test_wire.py). Reading takes either form, and TensorFlow Serving's repeated-value rule:
fewer values than elements repeat the last one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dfdetect.wire import tensor_pb2
from dfdetect.wire.tensor_pb2 import DataType, TensorProto

# numpy dtype <-> DataType, for the types a numpy array can hold.
_DATA_TYPES = {
    np.dtype(np.float16): DataType.DT_HALF,
    np.dtype(np.float32): DataType.DT_FLOAT,
    np.dtype(np.float64): DataType.DT_DOUBLE,
    np.dtype(np.int8): DataType.DT_INT8,
    np.dtype(np.int16): DataType.DT_INT16,
    np.dtype(np.int32): DataType.DT_INT32,
    np.dtype(np.int64): DataType.DT_INT64,
    np.dtype(np.uint8): DataType.DT_UINT8,
    np.dtype(np.uint16): DataType.DT_UINT16,
    np.dtype(np.uint32): DataType.DT_UINT32,
    np.dtype(np.uint64): DataType.DT_UINT64,
    np.dtype(np.bool_): DataType.DT_BOOL,
    np.dtype(np.complex64): DataType.DT_COMPLEX64,
    np.dtype(np.complex128): DataType.DT_COMPLEX128,
}
_NUMPY_TYPES = {data_type: dtype for dtype, data_type in _DATA_TYPES.items()}
# Those sent as raw bytes in tensor_content when there is more than one value (TensorFlow sends
# the others in their typed fields).
_CONTENT_TYPES = frozenset(_DATA_TYPES) - {np.dtype(t) for t in (np.bool_, np.complex64, np.complex128, np.uint16)}
# The typed field each DataType is read from.
_VALUE_FIELDS = {
    DataType.DT_HALF: "half_val", DataType.DT_FLOAT: "float_val", DataType.DT_DOUBLE: "double_val",
    DataType.DT_INT8: "int_val", DataType.DT_INT16: "int_val", DataType.DT_INT32: "int_val",
    DataType.DT_UINT8: "int_val", DataType.DT_UINT16: "int_val", DataType.DT_INT64: "int64_val",
    DataType.DT_UINT32: "uint32_val", DataType.DT_UINT64: "uint64_val", DataType.DT_BOOL: "bool_val",
    DataType.DT_COMPLEX64: "scomplex_val", DataType.DT_COMPLEX128: "dcomplex_val",
}


def data_type_name(data_type: int) -> str:
    """``DT_FLOAT`` for 1, ...; the number itself for one this package does not know."""
    try:
        return DataType.Name(data_type)
    except ValueError:
        return str(data_type)


def make_tensor_proto(values) -> TensorProto:
    """A TensorProto of a numpy array (any dtype above), or of bytes / str values (a string
    tensor: str is encoded as UTF-8). Other Python values go through ``np.asarray``."""
    if isinstance(values, (bytes, str)):
        values = np.array(values, dtype=object)
    elif not isinstance(values, np.ndarray):
        if isinstance(values, Sequence) and _all_text(values):
            array = np.empty(len(values), dtype=object)
            array[:] = list(values)
            values = array
        else:
            values = np.asarray(values)
    proto = TensorProto()
    proto.tensor_shape.dim.extend(tensor_pb2.TensorShapeProto.Dim(size=n) for n in values.shape)
    if values.dtype.kind in "OSU":
        proto.dtype = DataType.DT_STRING
        proto.string_val.extend(_as_bytes(v) for v in values.reshape(-1))
        return proto
    dtype = values.dtype.newbyteorder("=") if values.dtype.byteorder == ">" else values.dtype
    if dtype not in _DATA_TYPES:
        raise TypeError(f"cannot send a numpy array of dtype {values.dtype} as a tensor; expected one of "
                        f"{', '.join(sorted(str(d) for d in _DATA_TYPES))}, bytes or str")
    proto.dtype = _DATA_TYPES[dtype]
    if dtype in _CONTENT_TYPES and values.size > 1:
        proto.tensor_content = np.ascontiguousarray(values, dtype=dtype.newbyteorder("<")).tobytes()
        return proto
    flat = np.asarray(values, dtype=dtype).reshape(-1)
    if dtype == np.float16:
        proto.half_val.extend(flat.view(np.uint16).tolist())
    elif dtype.kind == "c":  # real and imaginary parts interleaved
        getattr(proto, _VALUE_FIELDS[proto.dtype]).extend(flat.view(flat.real.dtype).tolist())
    else:
        getattr(proto, _VALUE_FIELDS[proto.dtype]).extend(flat.tolist())
    return proto


def _all_text(values) -> bool:
    return len(values) > 0 and all(isinstance(v, (bytes, str)) for v in values)


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, np.bytes_):
        return bytes(value)
    raise TypeError(f"a string tensor takes bytes or str elements, got {type(value).__name__}")


def shape_of(proto: TensorProto) -> list[int]:
    if proto.tensor_shape.unknown_rank:
        raise ValueError("a tensor of unknown rank cannot be read as a numpy array")
    return [d.size for d in proto.tensor_shape.dim]


def make_ndarray(proto: TensorProto) -> np.ndarray:
    """The numpy array of a TensorProto: string tensors as object arrays of bytes.

    ValueError for a dtype numpy cannot hold (DT_RESOURCE, DT_VARIANT, bfloat16, quantized) or
    values that do not fit the shape."""
    shape = shape_of(proto)
    count = int(np.prod(shape, dtype=np.int64))
    if proto.dtype == DataType.DT_STRING:
        values = np.empty(len(proto.string_val), dtype=object)
        values[:] = list(proto.string_val)
        return _fill(values, shape, count)
    dtype = _NUMPY_TYPES.get(proto.dtype)
    if dtype is None:
        raise ValueError(f"a tensor of dtype {data_type_name(proto.dtype)} cannot be read as a numpy array")
    if proto.tensor_content:
        little = dtype.newbyteorder("<")
        if len(proto.tensor_content) != count * dtype.itemsize:
            raise ValueError(f"tensor_content has {len(proto.tensor_content)} bytes; a {data_type_name(proto.dtype)} "
                             f"tensor of shape {shape} takes {count * dtype.itemsize}")
        return np.frombuffer(proto.tensor_content, dtype=little).astype(dtype).reshape(shape)
    field = getattr(proto, _VALUE_FIELDS[proto.dtype])
    if proto.dtype == DataType.DT_HALF:
        values = np.array(field, dtype=np.uint16).view(np.float16)
    elif proto.dtype in (DataType.DT_COMPLEX64, DataType.DT_COMPLEX128):
        parts = np.array(field, dtype=np.float32 if proto.dtype == DataType.DT_COMPLEX64 else np.float64)
        if parts.size % 2:
            raise ValueError(f"a complex tensor takes pairs of values, got {parts.size}")
        values = parts.view(dtype)
    else:
        values = np.array(field, dtype=dtype)
    return _fill(values, shape, count)


def _fill(values: np.ndarray, shape: list[int], count: int) -> np.ndarray:
    if values.size == count:
        return values.reshape(shape)
    if values.size > count:
        raise ValueError(f"{values.size} values for a tensor of shape {shape} ({count} elements)")
    if values.size == 0:
        return np.zeros(shape, dtype=values.dtype) if values.dtype != object else np.full(shape, b"", dtype=object)
    return np.concatenate([values, np.repeat(values[-1:], count - values.size)]).reshape(shape)
