"""GrpcUser: TensorFlow Serving's gRPC API through the client's wire messages and stubs
(``dfdetect.wire``: no TensorFlow), each call timed and reported to locust (request type ``grpc``).

Task mix per user: Predict with one face crop (6), Predict with a batch of faces (3, default 16:
a video's worth), GetModelMetadata (1) and GetModelStatus (1). Crops are JPEG through
``serve_image_bytes`` or uint8 pixels through ``serving_default`` (``--signature``), cut at the
size S the model's metadata gives. Host: ``--grpc-host`` (default localhost:8500).
"""

# gRPC waits for its answers in C code that gevent cannot switch away from: unless gRPC is put on
# gevent before the first channel exists, each call stalls every other user, and they silently
# run one at a time.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import time  # noqa: E402

import gevent  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402
from locust import User, task  # noqa: E402

import _common  # noqa: E402
from dfdetect.client.errors import ClientError  # noqa: E402
from dfdetect.client.metadata import metadata_from_grpc  # noqa: E402
from dfdetect.client.transport import MAX_RESPONSE_BYTES  # noqa: E402
from dfdetect.contract import INPUT_BYTES, INPUT_PIXELS, OUTPUT_SCORE, SIGNATURE_BYTES  # noqa: E402
from dfdetect.wire.requests import metadata_request, predict_request, status_request  # noqa: E402
from dfdetect.wire.services import ModelServiceStub, PredictionServiceStub  # noqa: E402


class GrpcCallFailed(Exception):
    """A gRPC call that failed: its status and what the server said, as locust reports it."""


def _predict_request(model: str, signature: str, values):
    """A PredictRequest as the client builds it: the crops as one tensor, only the score back."""
    alias, tensor = (INPUT_BYTES, list(values)) if signature == SIGNATURE_BYTES else (INPUT_PIXELS, np.stack(values))
    return predict_request(model, signature, {alias: tensor}, output_filter=[OUTPUT_SCORE])


class GrpcUser(User):
    """Calls the model server's gRPC API as media backends do."""

    wait_time = _common.think_time

    def on_start(self):
        """Read the options, open the channel and read the model's metadata."""
        self.options = _common.settings(self.environment)
        self.channel = grpc.insecure_channel(self.options.grpc_host, [
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES)])
        self.predictions = PredictionServiceStub(self.channel)
        self.models = ModelServiceStub(self.channel)
        self.metadata_request = metadata_request(self.options.model_name)
        self.status_request = status_request(self.options.model_name)
        self.workload = None
        self.turn = 0
        self._ready()

    def on_stop(self):
        self.channel.close()

    # --- calls ----------------------------------------------------------------------------------

    def _call(self, name: str, method, request, check=None):
        """One call, reported to locust with its time, answer size and error; the answer, or None."""
        start = time.perf_counter()
        response, exception, length = None, None, 0
        try:
            response = method(request, timeout=self.options.request_timeout)
        except grpc.RpcError as e:
            code = e.code().name if callable(getattr(e, "code", None)) else "UNKNOWN"
            details = e.details() if callable(getattr(e, "details", None)) else str(e)
            exception = GrpcCallFailed(f"{code}: {details}")
        elapsed = time.perf_counter() - start
        if exception is None:
            length = response.ByteSize()
            try:
                if check is not None:
                    check(response)
            except GrpcCallFailed as e:
                exception = e
        self.environment.events.request.fire(
            request_type=_common.GRPC_TYPE, name=name, response_time=elapsed * 1000, response_length=length,
            exception=exception, context={"user": type(self).__name__, "host": self.options.grpc_host})
        return None if exception is not None else response

    def _ready(self) -> bool:
        """Read the model's metadata once (S and its signatures) and take this process's
        prepared requests for it; after a failure, pause and let the next task try again."""
        if self.workload is not None:
            return True
        metadata = []

        def check(response):
            try:
                metadata.append(metadata_from_grpc(response, self.options.model_name, "GetModelMetadata"))
            except ClientError as e:
                raise GrpcCallFailed(str(e)) from None

        if self._call(_common.METADATA, self.predictions.GetModelMetadata, self.metadata_request, check) is None:
            gevent.sleep(_common.SETUP_RETRY_SECONDS)
            return False
        meta = metadata[0]
        signature = _common.choose_signature(self.options.signature, meta.accepts_bytes)
        size = self.options.batch_size

        def build():
            payload = _common.FACES.payload(meta.crop_size, size)
            items = payload.jpegs if signature == SIGNATURE_BYTES else payload.pixels
            model = self.options.model_name
            return ([_predict_request(model, signature, [item]) for item in items],
                    _predict_request(model, signature, items))

        self.workload = _common.WORKLOADS.get(("grpc", self.options.model_name, signature, meta.crop_size, size),
                                              build)
        return True

    @staticmethod
    def _expect_scores(count: int):
        def check(response):
            if OUTPUT_SCORE not in response.outputs:
                raise GrpcCallFailed(f"the answer has no {OUTPUT_SCORE} output")
            scores = response.outputs[OUTPUT_SCORE]
            shape = [d.size for d in scores.tensor_shape.dim]
            if shape != [count]:
                raise GrpcCallFailed(f"{OUTPUT_SCORE} has shape {shape}, expected [{count}]")
        return check

    # --- tasks ----------------------------------------------------------------------------------

    @task(6)
    def predict_one_face(self):
        """Predict with one face crop (the next of the prepared ones)."""
        if self._ready():
            singles, _ = self.workload
            self.turn = (self.turn + 1) % len(singles)
            self._call(_common.SINGLE, self.predictions.Predict, singles[self.turn], self._expect_scores(1))

    @task(3)
    def predict_batch(self):
        """Predict with the batch of ``--batch-size`` crops."""
        if self._ready():
            _, batch = self.workload
            self._call(_common.batch_name(self.options.batch_size), self.predictions.Predict, batch,
                       self._expect_scores(self.options.batch_size))

    @task(1)
    def metadata(self):
        """GetModelMetadata of the model."""
        self._call(_common.METADATA, self.predictions.GetModelMetadata, self.metadata_request)

    @task(1)
    def status(self):
        """GetModelStatus of the model."""
        self._call(_common.STATUS, self.models.GetModelStatus, self.status_request)
