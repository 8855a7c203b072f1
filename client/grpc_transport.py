"""The gRPC transport: TensorFlow Serving's PredictionService over one channel, with keepalive and
optional round_robin load balancing over every address a name resolves to."""

from __future__ import annotations

import json

import numpy as np

from dfdetect.client.errors import ClientError
from dfdetect.client.metadata import ModelMetadata, checked_scores, metadata_from_grpc
from dfdetect.client.retries import AttemptFailed
from dfdetect.client.transport import LOAD_BALANCING, MAX_RESPONSE_BYTES, RetryingTransport
from dfdetect.contract import INPUT_BYTES, INPUT_PIXELS, OUTPUT_SCORE, SIGNATURE_BYTES, SIGNATURE_PIXELS

KEEPALIVE_MS = 30_000


class GrpcTransport(RetryingTransport):
    """TensorFlow Serving's PredictionService over one gRPC channel (thread-safe)."""

    kind = "grpc"

    def __init__(self, target: str, model_name: str, *, credentials=None, load_balancing: str = "pick_first",
                 **options):
        super().__init__(target, model_name, **options)
        import grpc

        from dfdetect.wire.services import PredictionServiceStub

        if load_balancing not in LOAD_BALANCING:
            raise ClientError("INVALID_ARGUMENT", f"load_balancing must be one of {', '.join(LOAD_BALANCING)}, "
                                                  f"got {load_balancing!r}")
        self.load_balancing = load_balancing
        channel_options = [("grpc.max_send_message_length", -1),
                           ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
                           # round_robin: one connection to every address the target resolves to
                           # (dns:///a headless Service name: every pod), requests spread over them.
                           ("grpc.service_config", json.dumps({"loadBalancingConfig": [{load_balancing: {}}]})),
                           # Pings keep idle connections alive through proxies and find dead peers;
                           # a peer's GOAWAY or loss makes the channel resolve the name again (new
                           # pods join when servers cap their connections' age).
                           ("grpc.keepalive_time_ms", KEEPALIVE_MS), ("grpc.keepalive_timeout_ms", 10_000),
                           ("grpc.dns_min_time_between_resolutions_ms", 5_000)]
        self.channel = (grpc.secure_channel(target, credentials, channel_options) if credentials is not None
                        else grpc.insecure_channel(target, channel_options))
        self.stub = PredictionServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _version_choice(self, version: int | None = None) -> dict:
        """The version a request asks for: the one given, else the client's pin or label."""
        return dict(version=version if version is not None else self.version,
                    version_label=None if version is not None else self.version_label)

    def _attempt(self, method, request, left: float, what: str):
        import grpc

        try:
            return method(request, timeout=left)
        except grpc.RpcError as e:
            code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
            details = (e.details() if callable(getattr(e, "details", None)) else None) or str(e)
            status = code.name
            if status == "UNAVAILABLE":
                message = f"model server {self.target} unavailable: {details}"
            elif status == "DEADLINE_EXCEEDED":
                message = f"{what}: no answer from {self.target} within the deadline of {self.timeout:g} s"
            else:
                message = f"{what}: {details}"
            # A request over the server's message limit fails the same way every time.
            too_large = status == "RESOURCE_EXHAUSTED" and "larger than max" in details
            if too_large:
                message += " (lower max_request_bytes so requests stay under the server's limit)"
            raise AttemptFailed(ClientError(status, message), retryable=False if too_large else None) from None

    def metadata(self) -> ModelMetadata:
        from dfdetect.wire.requests import metadata_request

        request = metadata_request(self.model_name, **self._version_choice())
        what = f"GetModelMetadata of {self.model_description}"
        response = self._call(what, lambda left: self._attempt(self.stub.GetModelMetadata, request, left, what))
        return metadata_from_grpc(response, self.model_name, what)

    def _predict(self, signature: str, alias: str, value: np.ndarray, count: int,
                 version: int | None) -> tuple[np.ndarray, int]:
        from dfdetect.wire.requests import predict_request
        from dfdetect.wire.tensors import make_ndarray

        request = predict_request(self.model_name, signature, {alias: value}, output_filter=[OUTPUT_SCORE],
                                  **self._version_choice(version))
        what = f"Predict ({signature}, {count} crops) on {self.model_description}"
        response = self._call(what, lambda left: self._attempt(self.stub.Predict, request, left, what))
        if OUTPUT_SCORE not in response.outputs:
            raise ClientError("FAILED_PRECONDITION", f"{what}: the answer has no {OUTPUT_SCORE} output "
                                                     f"(outputs: {', '.join(sorted(response.outputs)) or 'none'})")
        try:
            values = make_ndarray(response.outputs[OUTPUT_SCORE])
        except ValueError as e:
            raise ClientError("FAILED_PRECONDITION", f"{what}: the {OUTPUT_SCORE} output cannot be read: {e}") from None
        scores = checked_scores(values, count, what)
        return scores, int(response.model_spec.version.value)

    def predict_pixels(self, crops: np.ndarray, version: int | None = None) -> tuple[np.ndarray, int]:
        return self._predict(SIGNATURE_PIXELS, INPUT_PIXELS, np.ascontiguousarray(crops, dtype=np.uint8),
                             len(crops), version)

    def predict_bytes(self, images: list[bytes], version: int | None = None) -> tuple[np.ndarray, int]:
        value = np.empty(len(images), dtype=object)
        value[:] = list(images)
        return self._predict(SIGNATURE_BYTES, INPUT_BYTES, value, len(images), version)

    def item_bytes(self, raw_bytes: int, binary: bool) -> int:
        # A string element costs its length plus a tag and a length varint; pixels are raw.
        return raw_bytes + 6 if binary else raw_bytes
