"""Requests to TensorFlow Serving, built in one place: the model spec, the inputs, the outputs wanted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dfdetect.wire.apis_pb2 import (GetModelMetadataRequest, GetModelStatusRequest, ModelSpec, PredictRequest)
from dfdetect.wire.tensor_pb2 import TensorProto
from dfdetect.wire.tensors import make_tensor_proto


def fill_model_spec(spec: ModelSpec, model_name: str, signature: str = "", version: int | None = None,
                    version_label: str | None = None) -> ModelSpec:
    """Name, signature and the version choice (a version number wins over a label; neither: the
    server's choice, its latest)."""
    spec.name = model_name
    spec.signature_name = signature
    if version is not None:
        spec.version.value = version
    elif version_label is not None:
        spec.version_label = version_label
    return spec


def predict_request(model_name: str, signature: str, inputs: Mapping[str, object], *,
                    output_filter: Iterable[str] = (), version: int | None = None,
                    version_label: str | None = None) -> PredictRequest:
    """A PredictRequest; ``inputs``: alias -> numpy array, list of bytes, or TensorProto."""
    request = PredictRequest()
    fill_model_spec(request.model_spec, model_name, signature, version, version_label)
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(value if isinstance(value, TensorProto) else make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    return request


def metadata_request(model_name: str, version: int | None = None,
                     version_label: str | None = None) -> GetModelMetadataRequest:
    """GetModelMetadata for the signatures (the only metadata TensorFlow Serving has)."""
    request = GetModelMetadataRequest(metadata_field=["signature_def"])
    fill_model_spec(request.model_spec, model_name, "", version, version_label)
    return request


def status_request(model_name: str, version: int | None = None,
                   version_label: str | None = None) -> GetModelStatusRequest:
    request = GetModelStatusRequest()
    fill_model_spec(request.model_spec, model_name, "", version, version_label)
    return request
