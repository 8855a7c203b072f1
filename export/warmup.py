"""SavedModel warm-up records, in the format TensorFlow Serving reads at load time.

``assets.extra/tf_serving_warmup_requests`` is a TFRecord file of ``PredictionLog`` protos;
the server replays them before the version takes traffic, so the first real request does not
pay for graph initialisation.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from dfdetect.contract import INPUT_BYTES, INPUT_PIXELS, SIGNATURE_BYTES, SIGNATURE_PIXELS
from dfdetect.wire.requests import predict_request


def warmup_logs(model_name: str, crops: np.ndarray, encoded: list[bytes], batch_sizes=(1, 8)):
    """PredictionLogs for both signatures at a few batch sizes, from sample crops."""
    logs = []
    for batch in batch_sizes:
        picks = [i % len(crops) for i in range(batch)]
        for signature, key, value in ((SIGNATURE_PIXELS, INPUT_PIXELS, np.ascontiguousarray(crops[picks], np.uint8)),
                                      (SIGNATURE_BYTES, INPUT_BYTES, [encoded[i] for i in picks])):
            log = prediction_log_pb2.PredictionLog()
            # The request built as every client builds it, in TensorFlow Serving's own message
            # (the same wire format) for the log record.
            log.predict_log.request.ParseFromString(
                predict_request(model_name, signature, {key: value}).SerializeToString())
            logs.append(log)
    return logs


def write_warmup(path: str, logs) -> None:
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def read_warmup(path: str) -> list[prediction_log_pb2.PredictionLog]:
    out = []
    for raw in tf.data.TFRecordDataset([path]):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(raw.numpy())
        out.append(log)
    return out
