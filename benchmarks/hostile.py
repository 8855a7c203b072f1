"""Benchmark of hostile requests against `dfdetect serve`, at full size: time to the answer and
the server's memory (resident and peak) around each.

    python -m benchmarks.hostile      (make bench-hostile)

The server runs as its own process with its default limits, serving a model with the product's
two signatures (96 px uint8 crops, and encoded images decoded in the graph). Cases, from the
issue that asked for the limits: a 45-byte Predict declaring 1,000 crops with no values; a
42-byte float tensor of a billion elements on the uint8 input; a 148 MB REST batch of 2,000
crops; a 16000x16000 PNG (its header, as a bomb would be) on the bytes signature; int_val 300
for uint8; a GET whose body holds a second request; malformed Content-Lengths; and a SIGTERM
while keep-alive REST clients keep sending. Each row prints the answer, the milliseconds it
took, and the server's RSS after it and peak so far (MB). It prints figures and never fails.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MB = 1024 * 1024
SMUGGLED = b"GET /v1/models/other HTTP/1.1\r\nHost: x\r\n\r\n"


def build_model(path: Path) -> Path:
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 96, 96, 3], tf.uint8, name="images")])
        def pixels(self, images):
            return {"fake_probability": tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3]) / 255.0}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def encoded(self, image_bytes):
            decoded = tf.map_fn(lambda b: tf.image.resize(tf.io.decode_image(b, channels=3, expand_animations=False),
                                                          [96, 96]), image_bytes, fn_output_signature=tf.float32)
            return {"fake_probability": tf.reduce_mean(decoded, axis=[1, 2, 3]) / 255.0}

    module = Model()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.pixels,
                                                       "serve_image_bytes": module.encoded})
    return path


def memory(pid: int) -> tuple[float, float]:
    """(resident, peak resident) of a process, in MB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def raw_http(port: int, data: bytes, wait: float = 2.0) -> bytes:
    from dfdetect.tooling import http_exchange

    return http_exchange(port, data, wait)


def first_status(raw: bytes) -> str:
    lines = [line.decode("latin-1") for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    return f"{len(lines)} answer(s): " + ", ".join(line[9:] for line in lines) if lines else "closed, no answer"


def declared(dtype, shape, **fields):
    """A TensorProto that declares ``shape`` whatever values it carries."""
    from dfdetect.wire.tensor_pb2 import TensorProto

    proto = TensorProto(dtype=dtype, **fields)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto


def grpc_case(stub, signature: str, alias: str, proto) -> str:
    import grpc

    from dfdetect.wire.requests import predict_request

    request = predict_request("deepfake", signature, {alias: proto})
    size = request.ByteSize()
    try:
        stub.Predict(request, timeout=120)
        return f"({size} B) OK"
    except grpc.RpcError as e:
        return f"({size} B) {e.code().name}: {e.details()[:70]}"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--drain-seconds", type=float, default=30.0, help="the server's --drain_seconds")
    return parser.parse_args(argv)


def run(args) -> int:
    import grpc
    from dfdetect.wire.services import PredictionServiceStub
    from dfdetect.wire.tensor_pb2 import DataType

    from dfdetect.tooling import ModelServerProcess, NotReadyError, png_header

    with tempfile.TemporaryDirectory(prefix="dfdetect-bench-hostile-") as tmp:
        build_model(Path(tmp) / "deepfake" / "1")
        server = ModelServerProcess("deepfake", Path(tmp) / "deepfake", flags=[f"--drain_seconds={args.drain_seconds}"])
        grpc_port, rest_port = server.grpc_port, server.rest_port
        try:
            try:
                server.wait_until_available(120)
            except NotReadyError as e:
                print(e, file=sys.stderr)
                return 1
            stub = PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
            uint8, float32, string = DataType.DT_UINT8, DataType.DT_FLOAT, DataType.DT_STRING
            bomb = png_header(16000, 16000) + b"\0" * (1536 * 1024)
            batch_bytes = 148 * 1000 * 1000
            cases = [
                ("1,000 crops declared, no values", lambda: grpc_case(
                    stub, "", "images", declared(uint8, [1000, 96, 96, 3]))),
                ("float [1e9], one value, on uint8", lambda: grpc_case(
                    stub, "", "images", declared(float32, [1_000_000_000], float_val=[1.0]))),
                ("int_val 300 for uint8", lambda: grpc_case(
                    stub, "", "images", declared(uint8, [1, 96, 96, 3], int_val=[300]))),
                ("16000x16000 PNG, bytes signature", lambda: grpc_case(
                    stub, "serve_image_bytes", "image_bytes", declared(string, [1], string_val=[bomb]))),
                ("148 MB REST batch (2,000 crops)", lambda: first_status(raw_http(
                    rest_port, b"POST /v1/models/deepfake:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                    % batch_bytes + b'{"instances": [' + b"0," * 4096))),
                ("GET whose body is a request", lambda: first_status(raw_http(
                    rest_port, b"GET /v1/models/deepfake HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(SMUGGLED), SMUGGLED), wait=0.3))),  # (0.3 s of it: waiting for a second answer)
                ("Content-Length: abc", lambda: first_status(raw_http(
                    rest_port, b"POST /v1/models/deepfake:predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"))),
                ("Content-Length: -1", lambda: first_status(raw_http(
                    rest_port, b"POST /v1/models/deepfake:predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"))),
            ]
            rss, peak = memory(server.pid)
            print(f"server: dfdetect serve, default limits; at start RSS {rss:.0f} MB, peak {peak:.0f} MB\n")
            print(f"{'case':36s} {'ms':>8s} {'RSS MB':>7s} {'peak MB':>8s}  answer")
            for name, case in cases:
                t0 = time.perf_counter()
                answer = case()
                ms = (time.perf_counter() - t0) * 1000
                rss, peak = memory(server.pid)
                print(f"{name:36s} {ms:8.1f} {rss:7.0f} {peak:8.0f}  {answer}", flush=True)
            print(f"{'SIGTERM, 4 keep-alive REST clients':36s} {sigterm(server.process, rest_port, args.drain_seconds)}")
        finally:
            server.stop(10)
    return 0


def sigterm(server: subprocess.Popen, port: int, drain: float) -> str:
    """Keep-alive clients sending status requests in a loop; SIGTERM; seconds to exit, its code,
    and how many requests sent after the signal were answered 200 (before: until +65 s)."""
    import http.client

    stop = threading.Event()
    answered_after = [0]
    signalled = [0.0]

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                sent_after = bool(signalled[0])
                connection.request("GET", "/v1/models/deepfake")
                response = connection.getresponse()
                response.read()
                if sent_after and response.status == 200:
                    answered_after[0] += 1
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                time.sleep(0.05)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    signalled[0] = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(drain + 30)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - signalled[0]
    stop.set()
    return (f"exit {code} after {took:.1f} s (--drain_seconds {drain:g}); "
            f"{answered_after[0]} requests sent after the signal answered 200")


def main(argv=None) -> int:
    from benchmarks.common import run_benchmark

    return run_benchmark(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
