"""TensorFlow Serving's gRPC methods by their wire paths, with this package's messages.

gRPC finds a method by its path (``/tensorflow.serving.PredictionService/Predict``), not by the
names of the messages' Python classes, so these stubs reach TensorFlow Serving (and the local
server) exactly as its own ``prediction_service_pb2_grpc`` stubs do.
"""

from __future__ import annotations

from dfdetect.wire import apis_pb2

PREDICT = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
SIGNATURE_DEF_MAP_TYPE = "tensorflow.serving.SignatureDefMap"  # the Any in GetModelMetadata's answer


class PredictionServiceStub:
    """Predict and GetModelMetadata on a ``grpc.Channel``."""

    def __init__(self, channel):
        self.Predict = channel.unary_unary(PREDICT, request_serializer=apis_pb2.PredictRequest.SerializeToString,
                                           response_deserializer=apis_pb2.PredictResponse.FromString)
        self.GetModelMetadata = channel.unary_unary(
            GET_MODEL_METADATA, request_serializer=apis_pb2.GetModelMetadataRequest.SerializeToString,
            response_deserializer=apis_pb2.GetModelMetadataResponse.FromString)


class ModelServiceStub:
    """GetModelStatus on a ``grpc.Channel``."""

    def __init__(self, channel):
        self.GetModelStatus = channel.unary_unary(
            GET_MODEL_STATUS, request_serializer=apis_pb2.GetModelStatusRequest.SerializeToString,
            response_deserializer=apis_pb2.GetModelStatusResponse.FromString)


def signature_def_map(response: apis_pb2.GetModelMetadataResponse) -> apis_pb2.SignatureDefMap | None:
    """The SignatureDefMap in a GetModelMetadata answer; None when it carries none."""
    if "signature_def" not in response.metadata:
        return None
    packed = response.metadata["signature_def"]
    if packed.type_url.rsplit("/", 1)[-1] != SIGNATURE_DEF_MAP_TYPE:
        return None
    return apis_pb2.SignatureDefMap.FromString(packed.value)
