"""Conversions between the core's values and TensorFlow Serving's protos, shared by both APIs
(the REST API renders the same protos as JSON, so the two cannot disagree)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from dfdetect.serving.core import Spec
from dfdetect.serving.errors import invalid
from dfdetect.serving.models import VersionState

_STATE = get_model_status_pb2.ModelVersionStatus.State


def spec_from_proto(model_spec: model_pb2.ModelSpec, present: bool = True) -> Spec:
    if not present:
        raise invalid("Missing ModelSpec")
    choice = model_spec.WhichOneof("version_choice")
    return Spec(name=model_spec.name,
                version=model_spec.version.value if choice == "version" else None,
                label=model_spec.version_label if choice == "version_label" else None,
                signature=model_spec.signature_name)


def tensor_to_array(alias: str, proto) -> np.ndarray:
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
        raise invalid(f"tensor parsing error: {alias} ({e})") from None


def array_to_tensor(value: np.ndarray):
    return tf.make_tensor_proto(value)


def status_response(states: list[VersionState]) -> get_model_status_pb2.GetModelStatusResponse:
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
    return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": to_json(signature_map(signature_defs))}}
