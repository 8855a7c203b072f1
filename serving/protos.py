"""Conversions between the core's values and TensorFlow Serving's protos, shared by both APIs
(the REST API renders the same protos as JSON, so the two cannot disagree)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from dfdetect.serving.core import Spec
from dfdetect.serving.errors import invalid
from dfdetect.serving.models import VersionState
from dfdetect.serving.tensors import RAW_DTYPES

_STATE = get_model_status_pb2.ModelVersionStatus.State


def spec_from_proto(model_spec: model_pb2.ModelSpec, present: bool = True) -> Spec:
    """A request's ModelSpec as a Spec; INVALID_ARGUMENT when the request has none (``present`` False)."""
    if not present:
        raise invalid("Missing ModelSpec")
    choice = model_spec.WhichOneof("version_choice")
    return Spec(name=model_spec.name,
                version=model_spec.version.value if choice == "version" else None,
                label=model_spec.version_label if choice == "version_label" else None,
                signature=model_spec.signature_name)


# The typed field TensorFlow Serving answers each dtype in (Tensor::AsProtoField).
_VALUE_FIELDS = {np.dtype(t): field for t, field in (
    (np.float32, "float_val"), (np.float64, "double_val"), (np.int8, "int_val"), (np.int16, "int_val"),
    (np.int32, "int_val"), (np.uint8, "int_val"), (np.uint16, "int_val"), (np.int64, "int64_val"),
    (np.uint32, "uint32_val"), (np.uint64, "uint64_val"), (np.bool_, "bool_val"))}


def array_to_tensor(value: np.ndarray, tensor_content: bool = False):
    """An output as TensorFlow Serving answers it: every value in its typed field (``float_val``,
    ``int64_val``, ...), or with ``tensor_content`` (--enable_serialization_as_tensor_content)
    fixed-width numbers as raw bytes."""
    value = np.asarray(value)
    dtype = tf.as_dtype(value.dtype).as_datatype_enum if value.dtype.kind in "fiub" else None
    if dtype not in RAW_DTYPES:
        return tf.make_tensor_proto(value)
    proto = tensor_pb2.TensorProto(dtype=dtype)
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in value.shape)
    if tensor_content:
        proto.tensor_content = np.ascontiguousarray(value).tobytes()
    elif value.dtype == np.float16:
        proto.half_val.extend(value.reshape(-1).view(np.uint16).tolist())
    else:
        getattr(proto, _VALUE_FIELDS[value.dtype]).extend(value.reshape(-1).tolist())
    return proto


def status_response(states: list[VersionState]) -> get_model_status_pb2.GetModelStatusResponse:
    """Version states as a GetModelStatusResponse (error code UNKNOWN for a failed load)."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for st in states:
        entry = response.model_version_status.add(version=st.version, state=_STATE.Value(st.state))
        entry.status.error_code = 2 if st.error else 0  # UNKNOWN / OK (tensorflow.error.Code)
        entry.status.error_message = st.error
    return response


def signature_map(signature_defs) -> get_model_metadata_pb2.SignatureDefMap:
    """``{name: SignatureDef}`` as the SignatureDefMap metadata responses carry."""
    out = get_model_metadata_pb2.SignatureDefMap()
    for key, proto in signature_defs.items():
        out.signature_def[key].CopyFrom(proto)
    return out


def metadata_response(name: str, version: int, signature_defs) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """A GetModelMetadataResponse carrying the version's SignatureDefs."""
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = version
    response.metadata["signature_def"].Pack(signature_map(signature_defs))
    return response


def to_json(message) -> dict:
    """A proto as TensorFlow Serving's REST API prints it (proto field names, defaults shown)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def metadata_json(name: str, version: int, signature_defs) -> dict:
    """The REST API's metadata answer: the model spec and its SignatureDefs as JSON."""
    return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": to_json(signature_map(signature_defs))}}
