"""The server as a process: SIGTERM drains requests in flight; make deploy / make undeploy."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from dfdetect.tooling import ModelServerProcess, free_port

ROOT = Path(__file__).resolve().parents[1]


def _request(size=32):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "deepfake"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, size, size, 3), np.uint8)))
    return request


def test_sigterm_drains_requests_in_flight_and_exits_0(tiny_export, tmp_path):
    _, repository, _ = tiny_export
    params = tmp_path / "batching.config"
    # A request waits 3 s in the batch queue: it is surely in flight when SIGTERM arrives.
    params.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 3000000 }\n")
    server = ModelServerProcess("deepfake", repository / "deepfake", log=tmp_path / "server.log",
                                flags=["--enable_batching", f"--batching_parameters_file={params}"])
    grpc_port = server.grpc_port
    try:
        server.wait_until_available(120)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        stub.Predict(_request(), timeout=60)  # loaded and answering
        outcome = {}

        def in_flight():
            started = time.monotonic()
            try:
                outcome["response"] = stub.Predict(_request(), timeout=60)
            except grpc.RpcError as e:
                outcome["error"] = e
            outcome["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=in_flight)
        thread.start()
        time.sleep(1.0)
        server.process.send_signal(signal.SIGTERM)
        thread.join(60)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["response"].model_spec.version.value == 1 and outcome["seconds"] > 2.5
        assert server.process.wait(60) == 0
        log = server.log.read_text()
        assert "received SIGTERM" in log and "stopped" in log
    finally:
        server.stop(5)


def _make(*args, **env):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_make_deploy_and_undeploy(tiny_export, tmp_path):
    _, repository, _ = tiny_export
    grpc_port, rest_port, web_port = free_port(), free_port(), free_port()
    variables = [f"MODEL_REPOSITORY={repository}", f"GRPC_PORT={grpc_port}", f"REST_PORT={rest_port}",
                 f"WEB_PORT={web_port}", f"DEPLOY_STATE={tmp_path / 'state'}"]
    try:
        first = _make("deploy", *variables)
        assert first.returncode == 0, first.stderr + first.stdout
        assert "model deepfake version 1 is AVAILABLE" in first.stdout
        assert f"127.0.0.1:{grpc_port}" in first.stdout
        assert f"web   http://127.0.0.1:{web_port}/" in first.stdout
        again = _make("deploy", *variables)  # harmless while up
        assert again.returncode == 0
        assert "model server is already running" in again.stdout and "web page is already running" in again.stdout
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        assert stub.Predict(_request(), timeout=30).model_spec.version.value == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/readyz", timeout=10) as r:
            ready = json.loads(r.read())
        assert ready["status"] == "ready" and ready["model_version"] == 1
    finally:
        down = _make("undeploy", f"DEPLOY_STATE={tmp_path / 'state'}")
    assert down.returncode == 0, down.stderr + down.stdout
    assert "stopped the web page" in down.stdout and "stopped the local model server" in down.stdout
    for port in (rest_port, web_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
    assert "not running" in _make("undeploy", f"DEPLOY_STATE={tmp_path / 'state'}").stdout


def test_make_deploy_without_a_model_fails_clearly(tmp_path):
    result = _make("deploy", f"MODEL_REPOSITORY={tmp_path / 'empty'}", f"DEPLOY_STATE={tmp_path / 'state'}",
                   f"GRPC_PORT={free_port()}", f"REST_PORT={free_port()}")
    assert result.returncode != 0 and "run `make export` first" in result.stderr
