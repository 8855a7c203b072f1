"""The local server against TensorFlow Serving's own client stubs and plain HTTP."""

import base64
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from conftest import generic_savedmodel, start_server
from dfdetect.errors import BadInputError
from dfdetect.export.exporter import encode_png, sample_crops
from dfdetect.modelsconfig import read_model_server_config
from dfdetect.serving.config import BatchingParameters, read_batching_parameters, read_monitoring_config
from dfdetect.runs import read_run_config

SERVING = __import__("pathlib").Path(__file__).resolve().parents[1] / "serving"


# --- fixtures and helpers -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crops(tiny_run):
    return sample_crops(read_run_config(tiny_run)["data"]["prepared"], 32)


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory):
    """The exported tiny model and a generic SavedModel, from one config file."""
    _, repository, _ = tiny_export
    generic = tmp_path_factory.mktemp("generic")
    generic_savedmodel(generic / "1")
    config = tmp_path_factory.mktemp("config") / "models.config"
    config.write_text(f"""model_config_list {{
  config {{ name: "deepfake" base_path: "{repository}/deepfake" model_platform: "tensorflow"
           version_labels {{ key: "stable" value: 1 }} }}
  config {{ name: "generic" base_path: "{generic}" model_platform: "tensorflow" }}
}}""")
    srv = start_server(model_config_file=str(config), monitoring_config_file=str(SERVING / "monitoring.config"))
    yield srv
    srv.stop()


def stubs(port):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return (prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel), channel)


def predict_request(name="deepfake", signature="", **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def http(port, method, path, body=None):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def rest(port, method, path, body=None):
    status, content_type, raw = http(port, method, path, body)
    assert content_type == "application/json"
    return status, json.loads(raw)


def grpc_error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value.code(), info.value.details()


# --- predict ---------------------------------------------------------------------------------------

def test_predict_both_signatures_of_the_exported_model(server, tiny_export, crops):
    result, _, _ = tiny_export
    predict, _, _ = stubs(server.grpc_port)
    response = predict.Predict(predict_request(images=crops))
    scores = tf.make_ndarray(response.outputs["fake_probability"])
    from dfdetect.export.savedmodel import LoadedModel

    np.testing.assert_allclose(scores, LoadedModel(result.path).pixels(crops), atol=1e-6)
    assert (response.model_spec.name, response.model_spec.version.value, response.model_spec.signature_name) == \
        ("deepfake", 1, "serving_default")
    response = predict.Predict(predict_request(signature="serve_image_bytes",
                                               image_bytes=np.array(encode_png(crops), dtype=object)))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["fake_probability"]), scores, atol=1e-5)
    assert response.model_spec.signature_name == "serve_image_bytes"


def test_version_and_label_in_the_model_spec(server, crops):
    predict, _, _ = stubs(server.grpc_port)
    request = predict_request(images=crops[:2])
    request.model_spec.version.value = 1
    assert predict.Predict(request).model_spec.version.value == 1
    request = predict_request(images=crops[:2])
    request.model_spec.version_label = "stable"
    assert predict.Predict(request).model_spec.version.value == 1


def test_a_generic_savedmodel_with_several_inputs_and_outputs(server):
    predict, _, _ = stubs(server.grpc_port)
    response = predict.Predict(predict_request("generic", x=np.array([[1.0], [4.0]], np.float32)))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [[2.5], [4.0]])
    response = predict.Predict(predict_request("generic", "mixed", a=np.array([1.5, 2.0], np.float32),
                                               text=np.array([b"ab", b"xyz"], dtype=object)))
    assert tf.make_ndarray(response.outputs["length"]).tolist() == [2, 3]
    assert sorted(response.outputs) == ["doubled", "echo_bytes", "length"]
    request = predict_request("generic", "mixed", a=np.array([1.0], np.float32), text=np.array([b"q"], dtype=object))
    request.output_filter.append("doubled")
    assert list(predict.Predict(request).outputs) == ["doubled"]


def test_rest_row_columnar_and_b64(server, crops):
    port = server.rest_port
    status, body = rest(port, "POST", "/v1/models/generic:predict", {"instances": [[1.0], [4.0]]})
    assert (status, body) == (200, {"predictions": [[2.5], [4.0]]})
    status, body = rest(port, "POST", "/v1/models/generic:predict", {"inputs": [[1.0], [4.0]]})
    assert (status, body) == (200, {"outputs": [[2.5], [4.0]]})
    status, body = rest(port, "POST", "/v1/models/generic:predict", {
        "signature_name": "mixed", "instances": [{"a": 1.0, "text": {"b64": base64.b64encode(b"hey").decode()}},
                                                 {"a": 2.0, "text": "four"}]})
    assert status == 200
    assert body["predictions"] == [{"doubled": 2.0, "echo_bytes": {"b64": base64.b64encode(b"hey").decode()},
                                    "length": 3},
                                   {"doubled": 4.0, "echo_bytes": {"b64": base64.b64encode(b"four").decode()},
                                    "length": 4}]
    status, body = rest(port, "POST", "/v1/models/generic:predict", {
        "signature_name": "mixed", "inputs": {"a": [1.0], "text": ["z"]}})
    assert status == 200 and body["outputs"]["length"] == [1] and body["outputs"]["doubled"] == [2.0]
    # Face crops as b64 JPEG/PNG through the bytes signature, and as pixels.
    b64 = [{"b64": base64.b64encode(b).decode()} for b in encode_png(crops[:3])]
    status, body = rest(port, "POST", "/v1/models/deepfake/versions/1:predict",
                        {"signature_name": "serve_image_bytes", "instances": b64})
    assert status == 200 and len(body["predictions"]) == 3
    status, pixels = rest(port, "POST", "/v1/models/deepfake/labels/stable:predict",
                          {"instances": crops[:3].tolist()})
    assert status == 200
    np.testing.assert_allclose(pixels["predictions"], body["predictions"], atol=1e-5)


# --- metadata and status -------------------------------------------------------------------------

def test_status_bodies(server):
    _, models, _ = stubs(server.grpc_port)
    response = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "deepfake"}))
    (entry,) = response.model_version_status
    assert entry.version == 1 and entry.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    status, body = rest(server.rest_port, "GET", "/v1/models/deepfake")
    assert (status, body) == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    assert rest(server.rest_port, "GET", "/v1/models/deepfake/versions/1")[1] == body
    status, body = rest(server.rest_port, "GET", "/v1/models/deepfake/versions/5")
    assert (status, body) == (404, {"error": "Could not find version 5 of model deepfake"})
    status, body = rest(server.rest_port, "GET", "/v1/models/nobody")
    assert (status, body) == (404, {"error": "Could not find any versions of model nobody"})


def test_metadata_bodies(server):
    predict, _, _ = stubs(server.grpc_port)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "deepfake"
    response = predict.GetModelMetadata(request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    pixels = signatures.signature_def["serving_default"].inputs["images"]
    assert pixels.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in pixels.tensor_shape.dim] == [-1, 32, 32, 3]
    status, body = rest(server.rest_port, "GET", "/v1/models/deepfake/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "deepfake", "signature_name": "", "version": "1"}
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert sig["inputs"]["images"]["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}, {"size": "32", "name": ""}, {"size": "32", "name": ""},
                {"size": "3", "name": ""}], "unknown_rank": False}
    assert sig["outputs"]["fake_probability"]["dtype"] == "DT_FLOAT"
    assert "serve_image_bytes" in body["metadata"]["signature_def"]["signature_def"]


# --- errors ------------------------------------------------------------------------------------------

def test_grpc_errors(server, crops):
    predict, models, _ = stubs(server.grpc_port)
    cases = [
        (predict_request("nobody", images=crops), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nobody)"),
        (predict_request(signature="nope", images=crops), grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
        (predict_request(pictures=crops), grpc.StatusCode.INVALID_ARGUMENT, "input tensor alias not found in signature: pictures. Inputs expected to be in the set {images}."),
        (predict_request(images=crops, extra=crops), grpc.StatusCode.INVALID_ARGUMENT, "input size does not match signature: 2!=1"),
        (predict_request(images=crops.astype(np.float32)), grpc.StatusCode.INVALID_ARGUMENT, "Expected input images to be of type uint8"),
        (predict_request("", images=crops), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ]
    for request, code, message in cases:
        got_code, details = grpc_error(predict.Predict, request)
        assert got_code == code and message in details, (code, message, got_code, details)
    request = predict_request(images=crops)
    request.model_spec.version_label = "beta"
    assert grpc_error(predict.Predict, request) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                   "Unrecognized servable version label: beta")
    request = predict_request(images=crops)
    request.model_spec.version.value = 9
    assert grpc_error(predict.Predict, request) == (grpc.StatusCode.NOT_FOUND,
                                                   "Servable not found for request: Specific(deepfake, 9)")
    request = predict_request(images=crops)
    request.output_filter.append("score")
    assert grpc_error(predict.Predict, request)[0] == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = grpc_error(models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "x"}))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = grpc_error(predict.Classify, __import__("tensorflow_serving.apis.classification_pb2",
                                                            fromlist=["x"]).ClassificationRequest())
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_rest_errors(server):
    port = server.rest_port
    cases = [
        ("/v1/models/generic:predict", b"{not json", 400, "JSON Parse error"),
        ("/v1/models/generic:predict", b"", 400, "JSON Parse error: The document is empty"),
        ("/v1/models/generic:predict", {"instances": [[1.0]], "inputs": [[1.0]]}, 400,
         "expecting only one of 'inputs' or 'instances' keys to exist"),
        ("/v1/models/generic:predict", {"signature_name": "serving_default"}, 400, "Missing 'inputs' or 'instances' key"),
        ("/v1/models/generic:predict", {"instances": []}, 400, "No values in 'instances' array"),
        ("/v1/models/generic:predict", {"instances": [[1.0], [2.0, 3.0]]}, 400, "instances"),
        ("/v1/models/generic:predict", {"instances": [["a"]]}, 400, "float"),
        ("/v1/models/nobody:predict", {"instances": [[1.0]]}, 404, "Servable not found for request: Latest(nobody)"),
        ("/v1/models/generic:predict", {"signature_name": "nope", "instances": [[1.0]]}, 400, 'Serving signature key "nope" not found.'),
        ("/v1/models/generic/versions/abc:predict", {"instances": [[1.0]]}, 400, "Malformed request: POST /v1/models/generic/versions/abc:predict"),
        ("/v1/models/generic/versions/7:predict", {"instances": [[1.0]]}, 404, "Specific(generic, 7)"),
        ("/v1/models/generic/labels/canary:predict", {"instances": [[1.0]]}, 400, "Unrecognized servable version label: canary"),
        ("/v1/models/generic:classify", {"examples": []}, 400, "'examples' key must be a non-empty list"),
        ("/v1/models/generic:predict", {"signature_name": "mixed", "instances": [{"a": 1.0, "text": {"b64": "!!"}}]}, 400, "Unable to base64 decode"),
    ]
    for path, body, status, message in cases:
        got_status, doc = rest(port, "POST", path, body)
        assert got_status == status and message in doc["error"], (path, body, got_status, doc)
    assert rest(port, "GET", "/v1/models/generic:predict")[0] == 400
    assert rest(port, "GET", "/v1/models")[1] == {"error": "Missing model name in request."}
    assert rest(port, "GET", "/v2/anything")[0] == 404


def test_one_bad_request_does_not_disturb_others(server, crops):
    predict, _, _ = stubs(server.grpc_port)

    def call(i):
        if i % 2:
            return grpc_error(predict.Predict, predict_request(images=crops.astype(np.float32)))[0]
        return predict.Predict(predict_request(images=crops[:1])).model_spec.version.value

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(32)))
    assert results[0::2] == [1] * 16 and results[1::2] == [grpc.StatusCode.INVALID_ARGUMENT] * 16


def test_health_and_metrics(server, crops):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    predict, _, _ = stubs(server.grpc_port)
    predict.Predict(predict_request(images=crops[:1]))
    status, content_type, raw = http(server.rest_port, "GET", "/monitoring/prometheus/metrics")
    text = raw.decode()
    assert status == 200 and content_type.startswith("text/plain")
    assert 'dfdetect_serving_requests_total{api="grpc",model="deepfake",signature="serving_default",status="OK"}' in text
    assert "dfdetect_serving_request_latency_seconds_bucket" in text
    assert 'dfdetect_serving_versions_loaded{model="deepfake"} 1.0' in text


# --- versions ------------------------------------------------------------------------------------------

def _copy_version(repository, source: int, target: int, base="deepfake"):
    """Publish a version as export does: copy beside, then rename into place."""
    tmp = repository / base / f".tmp-{target}"
    shutil.copytree(repository / base / str(source), tmp)
    tmp.rename(repository / base / str(target))


def _wait(predicate, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_new_version_under_load_fails_no_request_and_a_broken_one_never_serves(tiny_export, tmp_path, crops):
    _, repository, _ = tiny_export
    repo = tmp_path / "repo"
    shutil.copytree(repository / "deepfake", repo / "deepfake")
    srv = start_server(model_base_path=str(repo / "deepfake"), file_system_poll_wait_seconds=1)
    try:
        predict, models, _ = stubs(srv.grpc_port)
        versions, failures, stop = [], [], threading.Event()

        def load():
            while not stop.is_set():
                try:
                    versions.append(predict.Predict(predict_request(images=crops[:4]), timeout=30).model_spec.version.value)
                except grpc.RpcError as e:
                    failures.append(e)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        _wait(lambda: len(versions) > 20)
        _copy_version(repo, 1, 2)

        def states():
            response = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "deepfake"}))
            return {s.version: s.state for s in response.model_version_status}

        A = get_model_status_pb2.ModelVersionStatus
        assert _wait(lambda: states() == {2: A.AVAILABLE, 1: A.END})
        seen_two = len(versions)
        _wait(lambda: len(versions) > seen_two + 20)
        stop.set()
        for t in threads:
            t.join()
        assert failures == [] and 1 in versions and 2 in versions
        assert versions.index(2) > 0 and 1 not in versions[versions.index(2) + 50:]

        # A broken version 3: reported with its error, never served.
        broken = repo / "deepfake" / ".tmp-3"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
        broken.rename(repo / "deepfake" / "3")
        assert _wait(lambda: states().get(3) == A.END)
        response = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": "deepfake", "version": {"value": 3}}))
        assert response.model_version_status[0].status.error_message
        assert predict.Predict(predict_request(images=crops[:1])).model_spec.version.value == 2
        request = predict_request(images=crops[:1])
        request.model_spec.version.value = 3
        assert grpc_error(predict.Predict, request)[0] == grpc.StatusCode.NOT_FOUND
    finally:
        srv.stop()


# --- batching ----------------------------------------------------------------------------------------

def test_batching_merges_concurrent_requests(tiny_export, tmp_path, crops):
    _, repository, _ = tiny_export
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 50000 }\n"
                      "num_batch_threads { value: 1 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n")
    srv = start_server(model_base_path=str(repository / "deepfake"), enable_batching=True,
                       batching_parameters_file=str(params), monitoring_config_file=str(SERVING / "monitoring.config"))
    try:
        predict, _, _ = stubs(srv.grpc_port)
        single = predict.Predict(predict_request(images=crops[:1]))
        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(lambda i: predict.Predict(predict_request(images=crops[i:i + 1])), range(12)))
        scores = [float(tf.make_ndarray(r.outputs["fake_probability"])[0]) for r in responses]
        from dfdetect.export.savedmodel import LoadedModel

        np.testing.assert_allclose(scores, LoadedModel(str(repository / "deepfake" / "1")).pixels(crops[:12]), atol=1e-5)
        assert float(tf.make_ndarray(single.outputs["fake_probability"])[0]) == pytest.approx(scores[0], abs=1e-5)
        text = http(srv.rest_port, "GET", "/monitoring/prometheus/metrics")[2].decode()
        count = float(next(l.split()[-1] for l in text.splitlines() if l.startswith("dfdetect_serving_batch_size_count")))
        total = float(next(l.split()[-1] for l in text.splitlines() if l.startswith("dfdetect_serving_batch_size_sum")))
        assert count < 13 and total / count > 1  # concurrent requests shared model calls
        # Batched requests must concatenate: their shapes are checked against the signature.
        code, details = grpc_error(predict.Predict, predict_request(images=crops[:, :16]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "has shape [16,16,32,3] but the signature expects [?,32,32,3]" in details
        # Padding: every model call ran at an allowed size.
        assert 'dfdetect_serving_batch_size_bucket{le="4.0",model="deepfake"} 0.0' in text
    finally:
        srv.stop()


def test_a_full_batch_queue_answers_resource_exhausted():
    from dfdetect.serving.batching import BatchingOptions, BatchQueue
    from dfdetect.serving.errors import ServingError

    release = threading.Event()

    def slow(inputs):
        release.wait(10)
        return {"y": inputs["x"]}

    queue = BatchQueue(slow, ["y"], BatchingOptions(max_batch_size=2, max_enqueued_batches=2, num_batch_threads=1))
    futures = [queue.submit({"x": np.zeros((2, 1))})]
    time.sleep(0.2)  # the batch thread is now busy with the first batch
    futures += [queue.submit({"x": np.zeros((2, 1))}) for _ in range(2)]
    with pytest.raises(ServingError) as info:
        queue.submit({"x": np.zeros((1, 1))})
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and info.value.http_status == 429
    release.set()
    assert all(f.result(10)["y"].shape == (2, 1) for f in futures)
    queue.close()


def test_the_batch_timeout_counts_from_the_first_request_of_a_batch():
    """A request that waited out batch_timeout_micros while the only batch thread was busy goes
    out as soon as the thread is free, not after another full timeout (TensorFlow Serving's rule)."""
    from dfdetect.serving.batching import BatchingOptions, BatchQueue

    release = threading.Event()
    calls = []

    def run(inputs):
        calls.append(len(inputs["x"]))
        if len(calls) == 1:
            release.wait(10)
        return {"y": inputs["x"]}

    timeout = 1.0
    queue = BatchQueue(run, ["y"], BatchingOptions(max_batch_size=8, batch_timeout_micros=int(timeout * 1e6),
                                                   num_batch_threads=1))
    try:
        first = queue.submit({"x": np.zeros((1, 1))})
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:  # the first batch waits out its timeout, then runs
            time.sleep(0.01)
        assert calls == [1]
        waiting = queue.submit({"x": np.ones((2, 1))})
        time.sleep(timeout + 0.2)  # longer than the timeout, while the thread is busy
        released = time.monotonic()
        release.set()
        assert waiting.result(10)["y"].tolist() == [[1.0], [1.0]]
        assert time.monotonic() - released < timeout / 2, "the waiting request was held for a second timeout"
        assert first.result(10)["y"].shape == (1, 1) and calls == [1, 2]
    finally:
        release.set()
        queue.close()


def test_with_several_batch_threads_each_batch_waits_its_own_timeout():
    """One thread forms a batch at a time: a request arriving after a batch left starts a batch of
    its own, which waits its full timeout for company, not what is left of the previous one's."""
    from dfdetect.serving.batching import BatchingOptions, BatchQueue

    sent = []

    def run(inputs):
        sent.append((time.monotonic(), len(inputs["x"])))
        return {"y": inputs["x"]}

    timeout = 0.6
    queue = BatchQueue(run, ["y"], BatchingOptions(max_batch_size=2, batch_timeout_micros=int(timeout * 1e6),
                                                   num_batch_threads=2))
    try:
        time.sleep(0.2)  # both threads idle, waiting for work
        first = [queue.submit({"x": np.zeros((1, 1))})]  # a thread starts a batch and waits for company
        time.sleep(0.05)
        first.append(queue.submit({"x": np.zeros((1, 1))}))  # the batch is full: out at once
        assert all(f.result(10)["y"].shape == (1, 1) for f in first)
        time.sleep(timeout / 3)
        submitted = time.monotonic()
        late = queue.submit({"x": np.ones((1, 1))})
        assert late.result(10)["y"].tolist() == [[1.0]]
        left, rows = sent[-1]
        assert rows == 1 and left - submitted >= 0.9 * timeout, (
            f"a lone request left after {left - submitted:.2f} s, before its own {timeout} s timeout")
        assert [n for _, n in sent] == [2, 1]
    finally:
        queue.close()


def test_onnx_sessions_take_the_intra_op_thread_count(tiny_export):
    """--tensorflow_intra_op_parallelism reaches onnxruntime's sessions too (0: every core)."""
    from dfdetect.serving.models import ModelManager, ModelSettings

    _, repository, _ = tiny_export
    for threads in (1, 0):
        manager = ModelManager([ModelSettings("deepfake", str(repository / "deepfake"))], "onnx", model_threads=threads)
        manager.poll_once()
        try:
            with manager.acquire("deepfake") as loaded:
                options = loaded.runner._session.get_session_options()
                assert options.intra_op_num_threads == threads
        finally:
            manager.stop()


# --- backends and configuration -------------------------------------------------------------------------

def test_onnx_backend(tiny_export, tmp_path, crops):
    result, repository, _ = tiny_export
    srv = start_server(model_base_path=str(repository / "deepfake"), backend="onnx")
    try:
        predict, _, _ = stubs(srv.grpc_port)
        scores = tf.make_ndarray(predict.Predict(predict_request(images=crops)).outputs["fake_probability"])
        from dfdetect.export.savedmodel import LoadedModel

        np.testing.assert_allclose(scores, LoadedModel(result.path).pixels(crops), atol=1e-4)
        code, details = grpc_error(predict.Predict, predict_request(
            signature="serve_image_bytes", image_bytes=np.array(encode_png(crops[:1]), dtype=object)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        srv.stop()
    # A version without an ONNX twin is refused clearly and never serves.
    repo = tmp_path / "repo"
    shutil.copytree(repository / "deepfake", repo / "deepfake")
    srv = start_server(model_base_path=str(repo / "deepfake"), backend="onnx", file_system_poll_wait_seconds=0)
    try:
        status, body = rest(srv.rest_port, "GET", "/v1/models/deepfake")
        (entry,) = body["model_version_status"]
        assert entry["state"] == "END" and "no ONNX twin" in entry["status"]["error_message"]
        assert entry["status"]["error_code"] == "UNKNOWN"
    finally:
        srv.stop()


def test_project_config_files_parse_with_the_serving_messages():
    models = read_model_server_config(SERVING / "models.config")
    assert models.model_config_list.config[0].name == "deepfake"
    batching = read_batching_parameters(SERVING / "batching.config")
    assert batching.max_batch_size.value == 64 and list(batching.allowed_batch_sizes)[-1] == 64
    assert read_monitoring_config(SERVING / "monitoring.config").prometheus_config.enable
    # The CPU preset is the serving benchmark's one-core-per-op setting, whose figures its comments quote.
    from benchmarks.serve import ONE_CORE_PER_OP

    cpu = read_batching_parameters(SERVING / "batching_cpu.config")
    assert cpu.max_batch_size.value == ONE_CORE_PER_OP["max_batch_size"]
    assert cpu.batch_timeout_micros.value == 5000 and cpu.num_batch_threads.value == 2


def test_malformed_config_files_fail_at_start(tmp_path, tiny_export):
    _, repository, _ = tiny_export
    bad = tmp_path / "models.config"
    bad.write_text('model_config_list { config { name: "deepfake" base_pth: "/x" } }')
    with pytest.raises(BadInputError, match="Error parsing text-format tensorflow.serving.ModelServerConfig: .*base_pth"):
        start_server(model_config_file=str(bad))
    typo = tmp_path / "batching.config"
    typo.write_text("max_batch_size { value: 8 }\nbatch_timeout_micro { value: 1 }\n")
    with pytest.raises(BadInputError, match="batch_timeout_micro"):
        start_server(model_base_path=str(repository / "deepfake"), enable_batching=True,
                     batching_parameters_file=str(typo))
    with pytest.raises(BadInputError, match="either --model_config_file or --model_base_path"):
        start_server(model_config_file=str(bad), model_base_path="/x")
    assert text_format.Parse("max_batch_size { value: 8 }", BatchingParameters()).max_batch_size.value == 8


# --- as TensorFlow Serving does it ---------------------------------------------------------------

def matmul_savedmodel(path: Path) -> Path:
    """x [?,3] times a 3x1 matrix: the graph itself needs the width 3."""
    class Matmul(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.matmul(x, tf.ones([3, 1]))}

    module = Matmul()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_outputs_in_typed_fields_and_shapes_left_to_the_graph(server, tmp_path):
    predict, _, _ = stubs(server.grpc_port)
    # x of shape [1] to a signature declaring [?,1]: the graph takes it, as in TensorFlow Serving.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "generic"
    request.inputs["x"].dtype = tf.float32.as_datatype_enum
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    response = predict.Predict(request)
    y = response.outputs["y"]
    assert list(y.float_val) == [3.0] and not y.tensor_content, "outputs answer in float_val, not tensor_content"
    assert [d.size for d in y.tensor_shape.dim] == [1]
    status, body = rest(server.rest_port, "POST", "/v1/models/generic:predict", {"instances": [2.0, 3.0, 4.0]})
    assert (status, body) == (200, {"predictions": [3.0, 3.5, 4.0]})

    # Where the graph needs a shape, its refusal names the input and the signature's shape.
    matmul_savedmodel(tmp_path / "matmul" / "1")
    srv = start_server(model_name="matmul", model_base_path=str(tmp_path / "matmul"))
    try:
        predict, _, _ = stubs(srv.grpc_port)
        ok = predict.Predict(predict_request("matmul", x=np.ones((2, 3), np.float32)))
        assert list(ok.outputs["y"].float_val) == [3.0, 3.0]
        code, details = grpc_error(predict.Predict, predict_request("matmul", x=np.ones((2, 4), np.float32)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "Input x has shape [2,4] but the signature expects [?,3]" in details
    finally:
        srv.stop()


def test_tensor_content_answers_behind_the_flag(tiny_export, crops):
    _, repository, _ = tiny_export
    srv = start_server(model_base_path=str(repository / "deepfake"), enable_serialization_as_tensor_content=True)
    try:
        predict, _, _ = stubs(srv.grpc_port)
        scores = predict.Predict(predict_request(images=crops[:3])).outputs["fake_probability"]
        assert len(scores.tensor_content) == 3 * 4 and not scores.float_val
    finally:
        srv.stop()


def test_version_folders_are_numbers_and_a_failed_load_is_tried_again(tmp_path):
    base = tmp_path / "padded"
    generic_savedmodel(base / "00000007")
    srv = start_server(model_name="padded", model_base_path=str(base), file_system_poll_wait_seconds=1,
                       max_num_load_retries=2, load_retry_interval_micros=200_000)
    try:
        predict, models, _ = stubs(srv.grpc_port)
        response = predict.Predict(predict_request("padded", x=np.array([[1.0]], np.float32)))
        assert response.model_spec.version.value == 7 and list(response.outputs["y"].float_val) == [2.5]
        # A new version whose folder is not whole yet (no variables): it fails, then loads once copied.
        (base / "00000008").mkdir()
        shutil.copy(base / "00000007" / "saved_model.pb", base / "00000008" / "saved_model.pb")
        status = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "padded", "version": {"value": 8}})
        def failed():
            try:
                return models.GetModelStatus(status).model_version_status[0].status.error_message != ""
            except grpc.RpcError:  # not seen yet
                return False

        assert _wait(failed), "the half-copied version 8 was never reported as failed"
        shutil.rmtree(base / "00000008")
        generic_savedmodel(base / "00000008")
        assert _wait(lambda: predict.Predict(predict_request("padded", x=np.array([[1.0]], np.float32))
                                             ).model_spec.version.value == 8), "version 8 was not tried again"
        states = {s.version: s.state for s in models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "padded"})).model_version_status}
        assert states[8] == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    finally:
        srv.stop()


def test_every_tensorflow_model_server_flag_is_accepted(tmp_path, caplog):
    from dfdetect.cli import build_parser
    from dfdetect.serving.server import IGNORED_FLAGS, ServerOptions, grpc_channel_arguments

    generic_savedmodel(tmp_path / "m" / "1")
    socket_path = tmp_path / "tfs.sock"
    flags = ["serve", "--port=0", "--rest_api_port=0", f"--model_base_path={tmp_path / 'm'}", "--model_name=m",
             "--rest_api_timeout_in_ms=5000", f"--grpc_socket_path={socket_path}",
             "--grpc_channel_arguments=grpc.max_concurrent_streams=16,grpc.so_reuseaddr=1",
             "--model_config_file_poll_wait_seconds=0", "--max_num_load_retries=1",
             "--load_retry_interval_micros=1000", "--enable_model_warmup=false", "--num_request_iterations_for_warmup=2",
             "--prefer_tflite_model=true", "--rest_api_num_threads=4", "--saved_model_tags=serve",
             "--enable_batching=false", "--tensorflow_intra_op_parallelism=0"]
    args = build_parser().parse_args(flags)
    options = ServerOptions.from_args(args)
    assert options.ignored_flags == ("prefer_tflite_model",)  # saved_model_tags: default
    assert grpc_channel_arguments("a=1, b=x") == [("a", 1), ("b", "x")]
    with pytest.raises(Exception, match="is not key=value"):
        grpc_channel_arguments("nonsense")
    for name, (kind, default) in IGNORED_FLAGS.items():  # every one parses
        value = "true" if kind == "bool" else str(default if default != "" else "x")
        build_parser().parse_args(["serve", f"--{name}={value}"])
    with caplog.at_level("WARNING", logger="dfdetect.serving.server"):
        srv = start_server(**{k: v for k, v in vars(options).items() if k not in ("port", "rest_api_port", "host",
                                                                              "ignored_flags")},
                           ignored_flags=options.ignored_flags)
    try:
        assert "ignored (they change nothing in this server): --prefer_tflite_model" \
            in caplog.text
        channel = grpc.insecure_channel(f"unix:{socket_path}")  # gRPC on the Unix socket too
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            predict_request("m", x=np.array([[2.0]], np.float32)), timeout=30)
        assert list(response.outputs["y"].float_val) == [3.0]
        channel.close()
    finally:
        srv.stop()


def examples_savedmodel(path: Path) -> Path:
    """Classify and regress signatures over serialized tf.Examples (feature x), y = x/2 + 2."""
    from tensorflow.core.protobuf import saved_model_pb2

    class Examples(tf.Module):
        def _y(self, serialized):
            return tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"] * 0.5 + 2.0

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs):
            y = self._y(inputs)
            return {"scores": y, "classes": tf.fill(tf.shape(y), "half")}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            return {"outputs": self._y(inputs)}

    module = Examples()
    tf.saved_model.save(module, str(path), signatures={"classify_x_to_y": module.classify,
                                                        "regress_x_to_y": module.regress,
                                                        "serving_default": module.regress})
    # tf.saved_model.save names every signature a predict one; the methods as TF1 exports have them.
    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    signatures = saved.meta_graphs[0].signature_def
    signatures["classify_x_to_y"].method_name = "tensorflow/serving/classify"
    signatures["regress_x_to_y"].method_name = "tensorflow/serving/regress"
    (path / "saved_model.pb").write_bytes(saved.SerializeToString())
    return path


def test_classify_regress_and_multi_inference_over_grpc_and_rest(tmp_path):
    from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

    examples_savedmodel(tmp_path / "examples" / "3")
    srv = start_server(model_name="examples", model_base_path=str(tmp_path / "examples"))
    try:
        predict, _, _ = stubs(srv.grpc_port)
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name, request.model_spec.signature_name = "examples", "classify_x_to_y"
        for x in (2.0, 4.0):
            request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
        response = predict.Classify(request)
        assert [[(c.label, c.score) for c in r.classes] for r in response.result.classifications] == \
            [[("half", 3.0)], [("half", 4.0)]]
        assert response.model_spec.version.value == 3 and response.model_spec.signature_name == "classify_x_to_y"

        regress = regression_pb2.RegressionRequest()
        regress.model_spec.name, regress.model_spec.signature_name = "examples", "regress_x_to_y"
        with_context = regress.input.example_list_with_context
        with_context.examples.add()
        with_context.context.features.feature["x"].float_list.value.append(6.0)  # the context gives x
        assert [r.value for r in predict.Regress(regress).result.regressions] == [5.0]

        multi = inference_pb2.MultiInferenceRequest()
        for signature, method in (("regress_x_to_y", "tensorflow/serving/regress"),
                                  ("classify_x_to_y", "tensorflow/serving/classify")):
            task = multi.tasks.add(method_name=method)
            task.model_spec.name, task.model_spec.signature_name = "examples", signature
        multi.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
        results = predict.MultiInference(multi).results
        assert results[0].regression_result.regressions[0].value == 3.0
        assert results[1].classification_result.classifications[0].classes[0].score == 3.0

        # A signature without classes or scores cannot classify; an empty input is refused.
        wrong = classification_pb2.ClassificationRequest()
        wrong.CopyFrom(request)
        wrong.model_spec.signature_name = "serving_default"
        assert grpc_error(predict.Classify, wrong) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Expected classification signature outputs to contain 'classes' "
                                              "and/or 'scores'")
        empty = classification_pb2.ClassificationRequest()
        empty.model_spec.name, empty.model_spec.signature_name = "examples", "classify_x_to_y"
        assert grpc_error(predict.Classify, empty) == (grpc.StatusCode.INVALID_ARGUMENT, "Input is empty")

        assert rest(srv.rest_port, "POST", "/v1/models/examples:classify",
                    {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}) == \
            (200, {"results": [[["half", 3.0]]]})
        assert rest(srv.rest_port, "POST", "/v1/models/examples/versions/3:regress",
                    {"signature_name": "regress_x_to_y", "context": {"x": 4.0}, "examples": [{}]}) == \
            (200, {"results": [4.0]})
        status, body = rest(srv.rest_port, "POST", "/v1/models/examples:regress", {"examples": [{"x": [True]}]})
        assert status == 400 and "booleans are not a tf.Example feature type" in body["error"]
    finally:
        srv.stop()
    # With --enable_signature_method_name_check, the method names count, as in TensorFlow Serving.
    srv = start_server(model_name="examples", model_base_path=str(tmp_path / "examples"),
                       enable_signature_method_name_check=True)
    try:
        predict, _, _ = stubs(srv.grpc_port)
        assert predict.Classify(request).result.classifications[0].classes[0].score == 3.0
        regress.model_spec.signature_name = "serving_default"
        assert grpc_error(predict.Regress, regress) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Expected regression signature method_name to be "
                                              "tensorflow/serving/regress. Was: tensorflow/serving/predict")
    finally:
        srv.stop()


def tf1_savedmodel(path: Path, offset: float) -> Path:
    """A TensorFlow 1 SavedModel computing y = a*x + offset (a = 0.5, a variable), whose
    SignatureDef declares x and y as [?,1] while the graph's placeholder is a vector: written
    by hand, as TensorFlow 1 exports were, with shapes the graph does not share."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=[None], name="x")
        a = tf.compat.v1.Variable(0.5, name="a")
        y = tf.identity(a * x + offset, name="y")
        declared = tf.TensorShape([None, 1]).as_proto()
        signature = tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
            inputs={"x": tf.compat.v1.saved_model.utils.build_tensor_info(x)},
            outputs={"y": tf.compat.v1.saved_model.utils.build_tensor_info(y)},
            method_name="tensorflow/serving/predict")
        signature.inputs["x"].tensor_shape.CopyFrom(declared)
        signature.outputs["y"].tensor_shape.CopyFrom(declared)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    return path


def test_a_tf1_savedmodel_runs_in_a_session_by_its_tensor_names(tmp_path):
    tf1_savedmodel(tmp_path / "half_plus_three" / "00000123", 3.0)
    srv = start_server(model_name="half_plus_three", model_base_path=str(tmp_path / "half_plus_three"))
    try:
        predict, _, _ = stubs(srv.grpc_port)
        # x of shape [1] (the graph's rank, not the signature's): fed as the C++ session takes it.
        request = predict_request("half_plus_three", x=np.array([2.0], np.float32))
        response = predict.Predict(request)
        assert response.model_spec.version.value == 123 and list(response.outputs["y"].float_val) == [4.0]
        assert list(predict.Predict(predict_request("half_plus_three", x=np.array([[2.0], [4.0]], np.float32))
                                    ).outputs["y"].float_val) == [4.0, 5.0]
        status, body = rest(srv.rest_port, "POST", "/v1/models/half_plus_three:predict", {"instances": [2.0, 3.0]})
        assert (status, body) == (200, {"predictions": [4.0, 4.5]})
        # The signature is served as declared; a wrong dtype is still refused before the graph.
        meta = rest(srv.rest_port, "GET", "/v1/models/half_plus_three/metadata")[1]
        x_info = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]
        assert [d["size"] for d in x_info["tensor_shape"]["dim"]] == ["-1", "1"]
        code, details = grpc_error(predict.Predict, predict_request("half_plus_three", x=np.array([2], np.int32)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "Expected input x to be of type float" in details
    finally:
        srv.stop()


def _config_text(models: dict[str, Path]) -> str:
    entries = "".join(f'  config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }}\n'
                      for name, path in models.items())
    return f"model_config_list {{\n{entries}}}\n"


def _config(models: dict[str, Path]):
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(_config_text(models), model_server_config_pb2.ModelServerConfig())


def _answer(predict, name, x=1.0):
    """y for x, from model ``name``, or the gRPC code it answers with."""
    try:
        return list(predict.Predict(predict_request(name, x=np.array([[x]], np.float32))).outputs["y"].float_val)
    except grpc.RpcError as e:
        return e.code()


def test_reload_config_adds_removes_and_renames_models(tmp_path):
    from tensorflow_serving.apis import model_management_pb2
    from tensorflow_serving.config import model_server_config_pb2

    generic, tf1 = generic_savedmodel(tmp_path / "generic" / "1").parent, tmp_path / "tf1"
    tf1_savedmodel(tf1 / "1", 3.0)
    config = tmp_path / "models.config"
    config.write_text(_config_text({"a": generic}))
    srv = start_server(model_config_file=str(config), model_name="")
    try:
        predict, models, _ = stubs(srv.grpc_port)
        assert _answer(predict, "a") == [2.5]
        # "a" renamed "b", and "c" added: both serve when the call returns; "a" is gone at once.
        reply = models.HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(config=_config({"b": generic, "c": tf1})))
        assert reply.status.error_code == 0 and not reply.status.error_message
        assert _answer(predict, "b") == [2.5] and _answer(predict, "c") == [3.5]
        assert _answer(predict, "a") == grpc.StatusCode.NOT_FOUND
        code, _ = grpc_error(models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "a"}))
        assert code == grpc.StatusCode.NOT_FOUND
        # Only a model list can be served; the models serve on.
        code, details = grpc_error(models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(
            config=model_server_config_pb2.ModelServerConfig()))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "Only ModelConfigList is currently supported" in details
        duplicate = _config({"b": generic})
        duplicate.model_config_list.config.append(duplicate.model_config_list.config[0])
        code, details = grpc_error(models.HandleReloadConfigRequest,
                                   model_management_pb2.ReloadConfigRequest(config=duplicate))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "Illegal to list model b multiple times" in details
        # A model whose only version cannot load is named in the error; the others are applied.
        broken = tmp_path / "broken" / "1"
        broken.mkdir(parents=True)
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        code, details = grpc_error(models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(
            config=_config({"b": generic, "d": broken.parent})))
        assert code == grpc.StatusCode.UNKNOWN and "model d: version 1" in details
        assert _answer(predict, "b") == [2.5] and _answer(predict, "c") == grpc.StatusCode.NOT_FOUND
    finally:
        srv.stop()


def test_the_model_config_file_is_polled(tmp_path, caplog):
    generic, tf1 = generic_savedmodel(tmp_path / "generic" / "1").parent, tmp_path / "tf1"
    tf1_savedmodel(tf1 / "1", 3.0)
    config = tmp_path / "models.config"
    config.write_text(_config_text({"a": generic}))
    srv = start_server(model_config_file=str(config), model_name="", model_config_file_poll_wait_seconds=1)
    try:
        predict, _, _ = stubs(srv.grpc_port)
        assert _answer(predict, "a") == [2.5]
        config.write_text(_config_text({"b": tf1}))
        assert _wait(lambda: _answer(predict, "b") == [3.5], 30), "the rewritten config file was not applied"
        assert _answer(predict, "a") == grpc.StatusCode.NOT_FOUND
        # A file that does not parse is reported, and the models serve on.
        with caplog.at_level("ERROR", logger="dfdetect.serving.server"):
            config.write_text('model_config_list { config { name: "x" base_pth: "/nowhere" } }')
            assert _wait(lambda: "Error parsing text-format tensorflow.serving.ModelServerConfig" in caplog.text, 30)
        assert _answer(predict, "b") == [3.5]
    finally:
        srv.stop()
