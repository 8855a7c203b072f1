"""Hostile input and faults against the local model server: small requests that declare huge
tensors, image bombs, HTTP desync attempts, slow clients, and a SIGTERM under load. Limits are
a few MB here; the same checks run at any size (make bench-hostile runs them at full size)."""

from __future__ import annotations

import base64
import signal
import socket
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from conftest import start_server
from dfdetect.tooling import ModelServerProcess, http_exchange as exchange, http_statuses as statuses, png_header
from test_serving import grpc_error, predict_request, rest, stubs


def hostile_savedmodel(path: Path) -> Path:
    """uint8 images -> their mean; encoded images -> their decoded sizes; a step count -> that
    many small matrix products (as slow as asked)."""
    class Hostile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.uint8, name="images")])
        def pixels(self, images):
            return {"mean": tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3])}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def decoded(self, image_bytes):
            sizes = tf.map_fn(lambda b: tf.size(tf.io.decode_image(b, channels=3, expand_animations=False)),
                              image_bytes, fn_output_signature=tf.int32)
            return {"size": sizes}

        @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="steps")])
        def slow(self, steps):
            m = tf.ones([64, 64]) / 64.0
            _, total = tf.while_loop(lambda i, a: i < steps, lambda i, a: (i + 1, a + tf.reduce_sum(tf.matmul(m, m))),
                                     (tf.constant(0, tf.int64), tf.constant(0.0)))
            return {"total": total}

    module = Hostile()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.pixels, "decoded": module.decoded,
                                                       "slow": module.slow})
    return path


LIMITS = dict(max_request_batch_size=16, max_request_tensor_bytes=1024 * 1024, max_image_pixels=1_000_000,
              rest_api_timeout_in_ms=1500, rest_api_max_body_bytes=2 * 1024 * 1024)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile") / "hostile"
    hostile_savedmodel(base / "1")
    srv = start_server(model_name="hostile", model_base_path=str(base), **LIMITS)
    yield srv
    srv.stop()


def declared(dtype, shape, **fields) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto


def predict_proto(alias="images", signature="", **proto_fields):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hostile"
    request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(declared(**proto_fields))
    return request


def test_declared_tensors_are_refused_before_anything_is_allocated(hostile):
    predict, _, _ = stubs(hostile.grpc_port)
    uint8, float32 = types_pb2.DT_UINT8, types_pb2.DT_FLOAT
    cases = [  # (request, code, words in the message)
        (predict_proto(dtype=uint8, shape=[17, 8, 8, 3]), grpc.StatusCode.INVALID_ARGUMENT,
         "Task size 17 is larger than maximum input batch size 16"),
        # 300 GB declared with no values: refused from the declaration (allocating it would fail the test).
        (predict_proto(dtype=uint8, shape=[1, 100_000, 1_000_000, 3]), grpc.StatusCode.RESOURCE_EXHAUSTED,
         "more than the limit of 1048576 bytes"),
        (predict_proto(dtype=float32, shape=[1_000_000_000], float_val=[1.0]), grpc.StatusCode.INVALID_ARGUMENT,
         "Expected input images to be of type uint8 (DT_UINT8), got float"),
        (predict_proto(dtype=uint8, shape=[1, 8, 8, 3], int_val=[300]), grpc.StatusCode.INVALID_ARGUMENT,
         "value 300 is out of range for uint8"),
        (predict_proto(dtype=uint8, shape=[1, -8, 8, 3]), grpc.StatusCode.INVALID_ARGUMENT, "negative dimension"),
        (predict_proto(dtype=uint8, shape=[1, 8, 8, 3], tensor_content=b"\x00" * 10), grpc.StatusCode.INVALID_ARGUMENT,
         "tensor_content of 10 bytes"),
        (predict_proto(dtype=uint8, shape=[1, 2], int_val=[1, 2, 3]), grpc.StatusCode.INVALID_ARGUMENT,
         "3 values for shape [1,2]"),
    ]
    for request, code, words in cases:
        got, details = grpc_error(predict.Predict, request)
        assert got == code and words in details, (got, details)
    # One value fills the shape, as TensorFlow fills it.
    filled = predict.Predict(predict_proto(dtype=uint8, shape=[2, 8, 8, 3], int_val=[5]))
    assert list(filled.outputs["mean"].float_val) == [5.0, 5.0]
    # JSON numbers for an integer input must be integers in range; 17 rows are refused unread.
    pixels = np.full((1, 8, 8, 3), 7).tolist()
    assert rest(hostile.rest_port, "POST", "/v1/models/hostile:predict", {"instances": pixels})[1] == \
        {"predictions": [7.0]}
    for value, words in ((1.5, "JSON Value: 1.5 Type: Number is not of expected type: uint8"),
                         (True, "JSON Value: true/false Type: Boolean is not of expected type: uint8"),
                         (300, "JSON Value: 300 Type: Number is out of range for type: uint8")):
        bad = np.full((1, 8, 8, 3), 7).astype(object)
        bad[0, 3, 3, 1] = value
        status, body = rest(hostile.rest_port, "POST", "/v1/models/hostile:predict", {"instances": bad.tolist()})
        assert status == 400 and words in body["error"], body
    status, body = rest(hostile.rest_port, "POST", "/v1/models/hostile:predict", {"instances": pixels * 17})
    assert status == 400 and "Task size 17 is larger than maximum input batch size 16" in body["error"]


def test_image_bombs_are_refused_from_their_headers(hostile):
    predict, _, _ = stubs(hostile.grpc_port)
    import cv2

    ok, small = cv2.imencode(".png", np.zeros((20, 30, 3), np.uint8))
    answer = predict.Predict(predict_request("hostile", "decoded", image_bytes=np.array([small.tobytes()], object)))
    assert list(answer.outputs["size"].int_val) == [20 * 30 * 3]
    bomb = png_header(16000, 16000)
    code, details = grpc_error(predict.Predict, predict_request("hostile", "decoded",
                                                                 image_bytes=np.array([small.tobytes(), bomb], object)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "image_bytes[1]: a 16000x16000 image (256.0 megapixels) is over the limit of 1 megapixels" in details
    status, body = rest(hostile.rest_port, "POST", "/v1/models/hostile:predict", {
        "signature_name": "decoded", "instances": [{"b64": base64.b64encode(bomb).decode()}]})
    assert status == 400 and "16000x16000" in body["error"]


# --- HTTP -------------------------------------------------------------------------------------------

def test_http_requests_cannot_desync_or_hold_the_server(hostile):
    port = hostile.rest_port
    inner = b"GET /v1/models/nothere HTTP/1.1\r\nHost: x\r\n\r\n"
    # A GET's body is its body, never the next request.
    raw = exchange(port, b"GET /v1/models/hostile HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                   % (len(inner), inner))
    assert statuses(raw) == [200]
    # A chunked body likewise (it is parsed as the body it is: not JSON).
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
    raw = exchange(port, b"POST /v1/models/hostile:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + chunked)
    assert statuses(raw) == [400] and b"JSON Parse error" in raw
    # Malformed or missing lengths: 400 / 411, never a 500 with Python's words.
    for length in (b"abc", b"-1"):
        raw = exchange(port, b"POST /v1/models/hostile:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n{}"
                       % length)
        assert statuses(raw) == [400] and b"Traceback" not in raw and b"ValueError" not in raw
    raw = exchange(port, b"POST /v1/models/hostile:predict HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(raw) == [411]
    # Over the body limit: 413 unread, and the connection closed (its body is never a request).
    body = inner * (3 * 1024 * 1024 // len(inner))
    raw = exchange(port, b"POST /v1/models/hostile:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                   % len(body) + body[:4096])
    assert statuses(raw) == [413] and b"connection: close" in raw.lower()
    # Headers trickled for longer than --rest_api_timeout_in_ms: the connection is closed.
    started = time.monotonic()
    raw = exchange(port, b"GET /v1/models/hostile HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100, wait=5, pause=0.05)
    assert statuses(raw) == [] and time.monotonic() - started < 5.5
    # A body trickled for longer: 408.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/models/hostile:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        s.settimeout(5)
        assert statuses(s.recv(65536)) == [408]
    # An answer that takes longer than --rest_api_timeout_in_ms (1.5 s): 504 DEADLINE_EXCEEDED; others go
    # on. The step count is measured on this machine to take about 4 s (a fixed count ran in time on CI).
    started = time.monotonic()
    assert rest(port, "POST", "/v1/models/hostile:predict", {"signature_name": "slow", "inputs": 20_000})[0] == 200
    steps = max(200_000, int(20_000 * 4.0 / max(time.monotonic() - started, 1e-3)))
    status, body = rest(port, "POST", "/v1/models/hostile:predict", {"signature_name": "slow", "inputs": steps})
    assert status == 504 and "Deadline Exceeded" in body["error"]
    assert rest(port, "GET", "/v1/models/hostile")[0] == 200


def test_kept_alive_connections_send_answers_without_delay(hostile):
    """An answer's body goes out right after its headers (TCP_NODELAY on every accepted connection):
    without it, each answer on a kept-alive connection waited for the client's delayed ACK."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", hostile.rest_port, timeout=10)
    try:
        for _ in range(2):  # the second request on the same connection
            conn.request("GET", "/v1/models/hostile")
            response = conn.getresponse()
            assert response.status == 200 and response.read()
        local = conn.sock.getsockname()
        accepted = [c.transport.get_extra_info("socket") for c in hostile.rest._uvicorn.server_state.connections]
        ours = [s for s in accepted if s is not None and s.getpeername() == local]
        assert len(ours) == 1, f"the server's side of the connection was not found among {len(accepted)}"
        assert ours[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        conn.close()


def test_sigterm_drains_requests_in_flight_and_refuses_new_ones(tmp_path):
    base = hostile_savedmodel(tmp_path / "hostile" / "1").parent
    server = ModelServerProcess("hostile", base, flags=["--drain_seconds=20", "--rest_api_timeout_in_ms=60000"],
                                log=tmp_path / "server.log")
    proc, grpc_port, rest_port = server.process, server.grpc_port, server.rest_port
    try:
        server.wait_until_available(120)
        # A request of about 2 s, measured on this machine, in flight when SIGTERM comes.
        t0 = time.monotonic()
        rest(rest_port, "POST", "/v1/models/hostile:predict", {"signature_name": "slow", "inputs": 2000})
        steps = max(2000, int(2000 * 2.0 / max(time.monotonic() - t0, 1e-3)))
        in_flight = {}
        worker = threading.Thread(target=lambda: in_flight.update(answer=rest(
            rest_port, "POST", "/v1/models/hostile:predict", {"signature_name": "slow", "inputs": steps})))
        worker.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        health = health_pb2_grpc.HealthStub(channel)
        try:
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.NOT_SERVING
        except grpc.RpcError as e:  # or the port already refuses new calls
            assert e.code() == grpc.StatusCode.UNAVAILABLE
        predict = stubs(grpc_port)[0]
        with pytest.raises(grpc.RpcError) as refused:
            predict.Predict(predict_request("hostile", images=np.zeros((1, 8, 8, 3), np.uint8)), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        try:  # a new REST request: 503 with Connection: close, or no connection at all
            raw = exchange(rest_port, b"GET /v1/models/hostile HTTP/1.1\r\nHost: x\r\n\r\n")
            assert statuses(raw) in ([], [503])
        except ConnectionRefusedError:
            pass
        worker.join(30)
        assert in_flight["answer"][0] == 200, in_flight
        assert proc.wait(30) == 0
    finally:
        server.stop(5)
