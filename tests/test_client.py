"""The client against the local server (in process, real gRPC and REST) with the tiny exported model,
on generated videos and images of a real photographed face; retries and deadlines against
in-process servicers that misbehave; the `dfdetect predict` command line."""

from __future__ import annotations

import argparse
import contextlib
import http.server
import inspect
import json
import math
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from conftest import blank_frames, face_frames, start_server
from dfdetect.tooling import free_port
from dfdetect.client import ClientError, DeepfakeClient, RetryPolicy, connect
from dfdetect.client.cli import add_predict_parser, collect_inputs
from dfdetect.client.client import pack_requests
from dfdetect.contract import DEFAULT_CROP_MARGIN, MODEL_CARD_FILE
from dfdetect.errors import DfdetectError
from dfdetect.faces.aggregate import video_score
from dfdetect.faces.detection import faces_in_frames
from dfdetect.faces.frames import read_frames, write_video

FPS = 10.0
VIDEO_FRAMES = 6
FEW_FACES_FRAMES = 12  # few_faces.mp4: a face in its first 2 frames only
FAST_RETRY = RetryPolicy(retries=3, initial_backoff=0.01)  # retries that keep a test quick


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(model):
    _, _, base = model
    srv = start_server(model_base_path=str(base))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def media(tmp_path_factory, photos):
    """Generated inputs: videos and images of a real photographed face, a video without a face,
    and broken files."""
    root = tmp_path_factory.mktemp("media")
    write_video(root / "face.mp4", face_frames(photos["astronaut"], VIDEO_FRAMES), FPS)
    write_video(root / "blank.mp4", blank_frames(VIDEO_FRAMES), FPS)
    # A face in the first 2 of 12 frames only: a verdict on little evidence.
    write_video(root / "few_faces.mp4", face_frames(photos["astronaut"], 2) + blank_frames(FEW_FACES_FRAMES - 2), FPS)
    still = face_frames(photos["grace_hopper"], 1)[0]
    cv2.imwrite(str(root / "face.jpg"), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "face.png"), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not media")
    return root


@pytest.fixture(scope="module")
def client(server, model, detector):
    version_dir, _, _ = model
    with DeepfakeClient(f"127.0.0.1:{server.grpc_port}", model_card=version_dir, detector=detector) as c:
        yield c


def reference_scores(path, model, detector, jpeg: bool, frames=VIDEO_FRAMES):
    """Faces cut by the training code itself and scored by the exported model in process: as
    uint8 pixels, or as JPEG (quality 95, like the training records) through the bytes signature."""
    from dfdetect.export.savedmodel import LoadedModel
    from dfdetect.faces.crops import encode_jpeg

    version_dir, card, _ = model
    margin = card.get("crop_margin") or DEFAULT_CROP_MARGIN
    faces, _ = faces_in_frames(detector, list(read_frames(path, frames=frames)), margin, card["crop_size"])
    loaded = LoadedModel(str(version_dir))
    if jpeg:
        return faces, loaded.image_bytes([encode_jpeg(f.crop) for f in faces])
    return faces, loaded.pixels(np.stack([f.crop for f in faces]))


# --- servicers that misbehave -----------------------------------------------------------------------

class ProxyServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Forwards to the real server, after failing the first calls (or the calls numbered in
    ``fail_calls``, from 1) or taking its time (on every Predict, or on those in ``delay_calls``).
    With ``mark``, the real answer's scores are replaced by (call number * 10 + position) / 1000,
    so that a test can tell which score came from which request."""

    def __init__(self, upstream_port: int, fail_predict: int = 0, fail_metadata: int = 0,
                 code=grpc.StatusCode.UNAVAILABLE, delay: float = 0.0, fail_calls=(), delay_calls=None,
                 mark: bool = False):
        self.upstream = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{upstream_port}"))
        self.fail_predict, self.fail_metadata, self.code, self.delay = fail_predict, fail_metadata, code, delay
        self.fail_calls, self.delay_calls, self.mark = set(fail_calls), delay_calls, mark
        self.predict_calls = self.metadata_calls = 0
        self.requests = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def Predict(self, request, context):
        with self.lock:
            self.predict_calls += 1
            n = self.predict_calls
            self.requests.append(request)
        if n <= self.fail_predict or n in self.fail_calls:
            context.abort(self.code, "the server is busy, try again")
        if self.delay and (self.delay_calls is None or n in self.delay_calls):
            self.release.wait(self.delay)
        response = self.upstream.Predict(request, timeout=30)
        if self.mark:
            import tensorflow as tf

            count = tf.make_ndarray(response.outputs["fake_probability"]).size
            response.outputs["fake_probability"].CopyFrom(
                tf.make_tensor_proto(np.array([(n * 10 + i) / 1000 for i in range(count)], np.float32)))
        return response

    def GetModelMetadata(self, request, context):
        with self.lock:
            self.metadata_calls += 1
            n = self.metadata_calls
        if n <= self.fail_metadata:
            context.abort(self.code, "the server is starting")
        return self.upstream.GetModelMetadata(request, timeout=30)


@contextlib.contextmanager
def grpc_servicer(servicer, credentials=None):
    """An in-process gRPC server on a free loopback port; yields the port."""
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, srv)
    port = (srv.add_secure_port("127.0.0.1:0", credentials) if credentials
            else srv.add_insecure_port("127.0.0.1:0"))
    srv.start()
    try:
        yield port
    finally:
        getattr(servicer, "release", threading.Event()).set()
        srv.stop(0)


@contextlib.contextmanager
def flaky_rest_proxy(upstream_port: int, fail_posts: int, status: int = 503):
    """An HTTP server answering the first POSTs with ``status``, forwarding everything else."""
    state = {"posts": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _forward(self, body=None):
            request = urllib.request.Request(f"http://127.0.0.1:{upstream_port}{self.path}", data=body,
                                             method=self.command, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as r:
                    code, data = r.status, r.read()
            except urllib.error.HTTPError as e:
                code, data = e.code, e.read()
            self._send(code, data)

        def _send(self, code, data):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._forward()

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["posts"] += 1
            if state["posts"] <= fail_posts:
                return self._send(status, json.dumps({"error": "overloaded"}).encode())
            self._forward(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], state
    finally:
        httpd.shutdown()
        httpd.server_close()




# --- results --------------------------------------------------------------------------------------

def test_video_per_face_per_frame_and_per_video_results(client, media, model, detector):
    _, card, _ = model
    result = client.analyze_video(media / "face.mp4")
    assert (result.source, result.kind, result.model_name, result.model_version) == \
        (str(media / "face.mp4"), "video", "deepfake", 1)
    assert client.crop_size == card["crop_size"] == 32  # read from GetModelMetadata
    assert result.threshold == pytest.approx(card["threshold"]) and result.strategy == card["video_strategy"]
    assert [f.index for f in result.frames] == list(range(VIDEO_FRAMES))
    assert [f.timestamp for f in result.frames] == pytest.approx([i / FPS for i in range(VIDEO_FRAMES)])
    for frame in result.frames:
        assert frame.faces, f"no face found in frame {frame.index}"
        for face in frame.faces:
            x, y, w, h = face.box
            assert 0 <= x < 320 and 0 <= y < 240 and w > 20 and h > 20 and face.confidence >= 0.95
            assert 0.0 <= face.fake_probability <= 1.0
        assert frame.fake_probability == max(f.fake_probability for f in frame.faces)

    # The faces are those the training code cuts, scored as the exported model scores them.
    faces, expected = reference_scores(media / "face.mp4", model, detector, jpeg=True)
    got = [f for frame in result.frames for f in frame.faces]
    assert [f.box for f in got] == [f.box for f in faces]
    assert [f.confidence for f in got] == pytest.approx([f.confidence for f in faces])
    np.testing.assert_allclose([f.fake_probability for f in got], expected, atol=1e-5)

    frame_scores = [f.fake_probability for f in result.frames]
    assert result.fake_probability == pytest.approx(video_score(frame_scores, card["video_strategy"]))
    assert result.verdict == ("fake" if result.fake_probability >= result.threshold else "real")

    # One person, in every frame: one track, whose verdict rests on every frame.
    (track,) = result.tracks
    assert (track.id, track.frames, track.first_frame, track.last_frame) == (0, VIDEO_FRAMES, 0, VIDEO_FRAMES - 1)
    assert track.fake_probability == pytest.approx(video_score(frame_scores, card["video_strategy"]))
    assert {f.track for fr in result.frames for f in fr.faces} == {0}
    assert (result.frames_sampled, result.frames_with_face, result.low_evidence) == (VIDEO_FRAMES, VIDEO_FRAMES, False)

    doc = json.loads(json.dumps(result.to_dict()))
    assert list(doc) == ["source", "kind", "verdict", "fake_probability", "threshold", "model_name",
                         "model_version", "frames_sampled", "frames_with_face", "low_evidence", "tracks", "frames"]
    assert list(doc["frames"][0]) == ["index", "timestamp", "fake_probability", "faces"]
    assert list(doc["frames"][0]["faces"][0]) == ["box", "confidence", "fake_probability", "track", "rescued"]
    assert list(doc["tracks"][0]) == ["id", "verdict", "fake_probability", "frames", "first_frame", "last_frame"]
    assert doc["model_version"] == 1 and len(doc["frames"][0]["faces"][0]["box"]) == 4


def test_pixels_through_serving_default_match_the_model_exactly(server, model, media, detector):
    version_dir, _, _ = model
    with DeepfakeClient(f"127.0.0.1:{server.grpc_port}", model_card=version_dir, detector=detector,
                        input_format="pixels") as c:
        assert c.signature == "serving_default"
        result = c.analyze(media / "face.mp4", frames=VIDEO_FRAMES)
    _, expected = reference_scores(media / "face.mp4", model, detector, jpeg=False)
    np.testing.assert_allclose([f.fake_probability for fr in result.frames for f in fr.faces], expected, atol=1e-5)


def test_onnx_backend_without_the_bytes_signature_gets_pixels(model, media, detector, caplog):
    _, _, base = model
    srv = start_server(model_base_path=str(base), backend="onnx")
    try:
        with DeepfakeClient(f"127.0.0.1:{srv.grpc_port}", detector=detector) as c:
            assert c.metadata.signatures == ("serving_default",) and c.signature == "serving_default"
            assert c.crop_size == 32 and c.analyze(media / "face.jpg").model_version == 1
        assert "no usable serve_image_bytes signature" in caplog.text
    finally:
        srv.stop()


def test_image_from_a_file_bytes_or_an_array(client, media):
    from_file = client.analyze_image(media / "face.jpg")
    assert from_file.kind == "image" and from_file.verdict in ("fake", "real")
    assert [(f.index, f.timestamp) for f in from_file.frames] == [(0, 0.0)] and from_file.faces >= 1
    from_bytes = client.analyze_image((media / "face.jpg").read_bytes(), source="upload-17")
    rgb = cv2.cvtColor(cv2.imread(str(media / "face.jpg")), cv2.COLOR_BGR2RGB)
    from_array = client.analyze_image(rgb)
    assert (from_bytes.source, from_array.source) == ("upload-17", "<array>")
    for other in (from_bytes, from_array):
        assert other.fake_probability == pytest.approx(from_file.fake_probability, abs=1e-6)
        assert other.frames[0].faces[0].box == from_file.frames[0].faces[0].box
    assert client.analyze(media / "face.png").kind == "image"


def test_one_client_serves_several_threads(client, media):
    expected = client.analyze(media / "face.mp4").fake_probability
    with futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(client.analyze, [media / "face.mp4"] * 4 + [media / "face.jpg"] * 4))
    assert [r.fake_probability for r in results[:4]] == pytest.approx([expected] * 4, abs=1e-6)
    assert len({r.fake_probability for r in results[4:]}) == 1


def test_a_video_without_a_face_is_no_face(client, media):
    result = client.analyze(media / "blank.mp4")
    assert (result.verdict, result.fake_probability, result.model_version) == ("no_face", None, None)
    assert len(result.frames) == VIDEO_FRAMES and all(not f.faces for f in result.frames)
    doc = result.to_dict()
    assert "fake_probability" not in doc and doc["verdict"] == "no_face"
    assert doc["frames"][0] == {"index": 0, "timestamp": 0.0, "faces": []}


def test_sampling_per_second_and_frame_count(client, media):
    assert len(client.analyze_video(media / "face.mp4", frames=3).frames) == 3
    # 6 frames at 10 fps: under one second, one sampled frame.
    assert [f.index for f in client.analyze_video(media / "face.mp4", per_second=True).frames] == [0]


# --- people and evidence ----------------------------------------------------------------------------

PEOPLE_FRAMES = 8  # frames of the two-person video, all of them sampled
PEOPLE_SIZE = (640, 360)
BRIGHTNESS_GAIN = 60.0  # logit per unit of mean crop brightness (0..1) away from the midpoint


def brightness_model(midpoint: float, gain: float, size: int = 32):
    """A Keras model (no training) whose logit is ``(mean crop brightness / 255 - midpoint) * gain``:
    its score for a face is known in advance, so a test can decide which person looks fake."""
    import keras

    inputs = keras.Input((size, size, 3), dtype="uint8", name="images")
    x = keras.layers.Rescaling(1 / 255, name="to_unit")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="brightness")(x)
    dense = keras.layers.Dense(1, name="logit")
    model = keras.Model(inputs, dense(x))
    dense.set_weights([np.full((3, 1), gain / 3, np.float32), np.array([-gain * midpoint], np.float32)])
    return model


@pytest.fixture(scope="module")
def two_people(tmp_path_factory):
    """The generated two-person video (astronaut on the left, Grace Hopper on the right) as mp4,
    its true face boxes, and the mean brightness of each person's true-box crop per frame."""
    from dfdetect.faces.crops import crop_face
    from dfdetect.samples import footage

    made = footage("two_people", frames=PEOPLE_FRAMES, size=PEOPLE_SIZE, seed=0)
    path = tmp_path_factory.mktemp("two-people") / "two_people.mp4"
    write_video(path, made.frames, FPS)
    crops = np.array([[crop_face(frame, box, DEFAULT_CROP_MARGIN, 32) for box in boxes]
                      for frame, boxes in zip(made.frames, made.faces)])  # [frame, person, S, S, 3]
    return path, made, crops


@pytest.fixture(scope="module")
def people_server(two_people, tmp_path_factory):
    """One server with two brightness models: ``bright`` (a bright face is fake) and ``dark`` (a
    dark one is). Yields the server and, per model, each person's mean score on the true-box crops
    (as the exported model scores them in process)."""
    from dfdetect.export.savedmodel import LoadedModel, write_savedmodel

    _, made, crops = two_people
    brightness = crops.reshape(*crops.shape[:2], -1).mean(axis=2)  # [frame, person]
    astronaut, hopper = brightness[:, 0], brightness[:, 1]
    # The astronaut's crop (white background in the margin) is clearly brighter than Grace Hopper's.
    assert astronaut.min() - hopper.max() > 15, (astronaut, hopper)
    midpoint = (astronaut.mean() + hopper.mean()) / 2 / 255
    repo = tmp_path_factory.mktemp("people-repo")
    config = repo / "models.config"
    config.write_text("model_config_list { " + " ".join(
        f'config {{ name: "{name}" base_path: "{repo / name}" model_platform: "tensorflow" }}'
        for name in ("bright", "dark")) + " }\n")
    expected = {}
    for name, gain in (("bright", BRIGHTNESS_GAIN), ("dark", -BRIGHTNESS_GAIN)):
        write_savedmodel(brightness_model(midpoint, gain), 1.0, str(repo / name / "1"))
        scores = LoadedModel(str(repo / name / "1")).pixels(crops.reshape(-1, 32, 32, 3))
        expected[name] = np.asarray(scores).reshape(len(made.frames), 2).mean(axis=0)  # per person
    srv = start_server(model_config_file=str(config), model_name="")
    yield srv, expected
    srv.stop()


def person_of(face, true_boxes) -> int:
    """The person whose true face box is nearest the detected face (and near it)."""
    x, y, w, h = face.box
    distances = [math.hypot(x + w / 2 - (bx + bw / 2), y + h / 2 - (by + bh / 2)) for bx, by, bw, bh in true_boxes]
    person = int(np.argmin(distances))
    assert distances[person] < 0.3 * true_boxes[person][2], (face.box, true_boxes)
    return person


@pytest.mark.parametrize("model_name, fake_person", [("bright", 0), ("dark", 1)])
def test_a_video_with_two_people_says_which_face_is_fake(people_server, two_people, detector, model_name,
                                                          fake_person):
    path, made, _ = two_people
    srv, expected_scores = people_server
    expected = expected_scores[model_name]
    assert abs(expected[0] - expected[1]) > 0.7, expected  # the model tells the two people apart
    threshold = float(expected.mean())  # halfway between the two people's scores
    assert made.faces[0][0][0] < PEOPLE_SIZE[0] / 2 < made.faces[0][1][0]  # astronaut left, Grace Hopper right
    with DeepfakeClient(connect(f"127.0.0.1:{srv.grpc_port}", model_name), threshold=threshold,
                        frames=PEOPLE_FRAMES, detector=detector) as c:
        result = c.analyze(path)

    assert (result.kind, result.model_name, result.model_version) == ("video", model_name, 1)
    assert [f.index for f in result.frames] == list(range(PEOPLE_FRAMES))
    assert (result.frames_sampled, result.frames_with_face, result.low_evidence) == (PEOPLE_FRAMES,) * 2 + (False,)
    assert len(result.tracks) == 2 and [t.id for t in result.tracks] == [0, 1]

    # Every face lies on one person's true box, and its track is that person's in every frame.
    person_by_track: dict[int, int] = {}
    scores = {0: [], 1: []}  # per person, per frame
    for frame in result.frames:
        assert len(frame.faces) == 2, f"frame {frame.index}: {frame.faces}"
        people = [person_of(face, made.faces[frame.index]) for face in frame.faces]
        assert sorted(people) == [0, 1], f"frame {frame.index}: both faces on one person"
        for face, person in zip(frame.faces, people):
            assert person_by_track.setdefault(face.track, person) == person, f"frame {frame.index}: track switched"
            assert not face.rescued and face.confidence >= 0.95  # clean footage: every face confident
            scores[person].append(face.fake_probability)
        # The frame is as suspicious as its most suspicious face: the fake person's.
        assert frame.fake_probability == max(f.fake_probability for f in frame.faces)
        assert frame.fake_probability == scores[fake_person][-1]
    assert sorted(person_by_track) == [0, 1] and sorted(person_by_track.values()) == [0, 1]

    tracks = {person_by_track[t.id]: t for t in result.tracks}
    for person in (0, 1):
        track = tracks[person]
        assert track.verdict == ("fake" if person == fake_person else "real"), (person, track)
        assert (track.frames, track.first_frame, track.last_frame) == (PEOPLE_FRAMES, 0, PEOPLE_FRAMES - 1)
        assert track.fake_probability == pytest.approx(video_score(scores[person], result.strategy))
        # Detected boxes and JPEG crops differ a little from the true-box crops, not by much.
        assert track.fake_probability == pytest.approx(expected[person], abs=0.15)
    # The video is fake: its frames' scores are the fake person's.
    assert result.verdict == "fake"
    assert result.fake_probability == pytest.approx(tracks[fake_person].fake_probability)

    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["tracks"] == [t.to_dict() for t in result.tracks] and len(doc["tracks"]) == 2
    assert {t["verdict"] for t in doc["tracks"]} == {"fake", "real"}
    assert [[face["track"] for face in frame["faces"]] for frame in doc["frames"]] == \
        [[face.track for face in frame.faces] for frame in result.frames]
    assert all(face["rescued"] is False for frame in doc["frames"] for face in frame["faces"])


def test_few_frames_with_a_face_are_low_evidence(server, media, detector):
    target = f"127.0.0.1:{server.grpc_port}"
    with DeepfakeClient(target, detector=detector, frames=FEW_FACES_FRAMES) as c:
        result = c.analyze(media / "few_faces.mp4")
        assert [f.index for f in result.frames] == list(range(FEW_FACES_FRAMES))
        assert [bool(f.faces) for f in result.frames] == [True, True] + [False] * (FEW_FACES_FRAMES - 2)
        assert (result.frames_sampled, result.frames_with_face, result.min_evidence) == (FEW_FACES_FRAMES, 2, 0.25)
        assert result.verdict in ("fake", "real") and result.low_evidence is True  # 2 < 0.25 * 12
        (track,) = result.tracks
        assert (track.frames, track.first_frame, track.last_frame) == (2, 0, 1)
        doc = result.to_dict()
        assert (doc["frames_sampled"], doc["frames_with_face"], doc["low_evidence"]) == (FEW_FACES_FRAMES, 2, True)
        # Enough evidence when every frame has a face; a video without a face has no verdict to doubt.
        assert c.analyze(media / "face.mp4").low_evidence is False
        blank = c.analyze(media / "blank.mp4")
        assert (blank.verdict, blank.frames_with_face, blank.low_evidence) == ("no_face", 0, False)
        assert blank.to_dict()["low_evidence"] is False
    with DeepfakeClient(target, detector=detector, frames=FEW_FACES_FRAMES, min_evidence=0.1) as c:
        lenient = c.analyze(media / "few_faces.mp4")
    assert (lenient.frames_with_face, lenient.low_evidence) == (2, False)  # 2 >= 0.1 * 12
    assert lenient.fake_probability == pytest.approx(result.fake_probability, abs=1e-6)
    with DeepfakeClient(target, detector=detector, min_evidence=1.0) as c:  # every frame must show a face
        assert c.analyze(media / "blank.mp4").low_evidence is False
    for bad in (1.5, -0.1, True, "a lot"):
        with pytest.raises(ClientError) as info:
            DeepfakeClient(target, detector=detector, min_evidence=bad)
        assert info.value.status == "INVALID_ARGUMENT" and "min_evidence" in info.value.message, info.value


# --- bad input --------------------------------------------------------------------------------------

def test_bad_input_is_refused_before_anything_is_sent(server, model, media, detector):
    version_dir, _, _ = model
    proxy = ProxyServicer(server.grpc_port)
    with grpc_servicer(proxy) as port, DeepfakeClient(f"127.0.0.1:{port}", detector=detector) as c:
        cases = [
            (lambda: c.analyze(media / "missing.mp4"), "NOT_FOUND", "file not found"),
            (lambda: c.analyze(media / "corrupt.mp4"), "INVALID_ARGUMENT", "cannot open as a video"),
            (lambda: c.analyze(media / "corrupt.jpg"), "INVALID_ARGUMENT", "cannot decode as an image"),
            (lambda: c.analyze(media / "empty.png"), "INVALID_ARGUMENT", "empty file"),
            (lambda: c.analyze(media / "notes.txt"), "INVALID_ARGUMENT", "unsupported file type .txt"),
            (lambda: c.analyze(media), "INVALID_ARGUMENT", "not a file"),
            (lambda: c.analyze_image(media / "face.mp4"), "INVALID_ARGUMENT", "expected an image"),
            (lambda: c.analyze_image(np.zeros((10, 10, 3), np.float32)), "INVALID_ARGUMENT", "expected RGB uint8"),
            (lambda: c.analyze_image(b"garbage"), "INVALID_ARGUMENT", "cannot decode as an image"),
            (lambda: c.analyze_video(media / "face.mp4", frames=0), "INVALID_ARGUMENT", "frames must be"),
        ]
        for call, status, words in cases:
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.status == status and words in info.value.message, info.value
            assert isinstance(info.value, DfdetectError)
        error = pytest.raises(ClientError, c.analyze, media / "corrupt.mp4").value
        assert error.source == str(media / "corrupt.mp4") and str(media / "corrupt.mp4") in str(error)
        assert proxy.predict_calls == 0  # nothing was sent
        assert c.analyze(media / "face.mp4").verdict in ("fake", "real")
        assert proxy.predict_calls == 1  # a video's crops in one request


def test_bad_arguments_and_model_cards(server, model, tmp_path, detector):
    version_dir, card, base = model
    target = f"127.0.0.1:{server.grpc_port}"
    for kwargs, words in [({"threshold": 1.5}, "threshold must be in [0, 1]"),
                          ({"strategy": "median"}, "strategy 'median' is unknown"),
                          ({"input_format": "png"}, "input_format must be one of jpeg, pixels"),
                          ({"model_card": tmp_path / "nope.json"}, "model card not found")]:
        with pytest.raises(ClientError, match=re.escape(words)):
            DeepfakeClient(target, detector=detector, **kwargs)
    for make, words in [(lambda: connect(target, transport="carrier-pigeon"), "transport must be one of grpc, rest"),
                        (lambda: connect(target, timeout=0), "timeout must be a positive"),
                        (lambda: RetryPolicy(retries=-1), "retries must be")]:
        with pytest.raises(ClientError, match=re.escape(words)):
            make()
    # Threshold: the argument, else the model card (the file, its version folder or the model's
    # folder of versions), else 0.5.
    with DeepfakeClient(target, detector=detector) as c:
        assert (c.threshold, c.threshold_source) == (0.5, "default (no model card)")
        assert c.margin == DEFAULT_CROP_MARGIN and c.strategy == "confident"
    for where in (version_dir / MODEL_CARD_FILE, version_dir, base):
        with DeepfakeClient(target, detector=detector, model_card=where) as c:
            assert c.threshold == pytest.approx(card["threshold"]) and "model card" in c.threshold_source
    with DeepfakeClient(target, detector=detector, model_card=base, threshold=0.25, strategy="mean") as c:
        assert (c.threshold, c.threshold_source, c.strategy) == (0.25, "argument", "mean")
    broken = tmp_path / "card.json"
    broken.write_text(json.dumps({"threshold": "high"}))
    with pytest.raises(ClientError, match="threshold must be a number in"):
        DeepfakeClient(target, detector=detector, model_card=broken)


def test_unknown_model_and_unreachable_server(server, detector):
    with pytest.raises(ClientError) as info:
        DeepfakeClient(connect(f"127.0.0.1:{server.grpc_port}", "nobody"), detector=detector)
    assert info.value.status == "NOT_FOUND" and "nobody" in info.value.message
    started = time.monotonic()
    with pytest.raises(ClientError) as info:
        DeepfakeClient(connect(f"127.0.0.1:{free_port()}", retry=RetryPolicy(retries=1, initial_backoff=0.01),
                               timeout=10), detector=detector)
    assert info.value.status == "UNAVAILABLE" and "gave up after 2 attempts" in info.value.message
    assert time.monotonic() - started < 9


def test_follows_a_new_version_and_takes_its_model_card(model, media, detector, tmp_path):
    version_dir, card, _ = model
    base = tmp_path / "deepfake"
    shutil.copytree(version_dir, base / "1")
    srv = start_server(model_base_path=str(base), file_system_poll_wait_seconds=1)
    try:
        with DeepfakeClient(f"127.0.0.1:{srv.grpc_port}", model_card=base, detector=detector) as c:
            first = c.analyze(media / "face.jpg")
            assert (first.model_version, first.threshold) == (1, pytest.approx(card["threshold"]))
            # Publish version 2 as export does: written elsewhere, renamed into place.
            staging = tmp_path / "staging"
            shutil.copytree(version_dir, staging)
            (staging / MODEL_CARD_FILE).write_text(json.dumps({**card, "version": 2, "threshold": 0.75}))
            staging.rename(base / "2")
            deadline = time.monotonic() + 60
            result = first
            while result.model_version != 2 and time.monotonic() < deadline:
                time.sleep(0.3)
                result = c.analyze(media / "face.jpg")
            assert (result.model_version, result.threshold) == (2, 0.75)  # decided by the card of version 2
            assert (c.model_version, c.card_path) == (2, base / "2" / MODEL_CARD_FILE)
    finally:
        srv.stop()


# --- requests, retries, deadlines ---------------------------------------------------------------

def test_crops_are_split_to_fit_the_request_limit_and_stay_on_one_version(server, media, detector):
    proxy = ProxyServicer(server.grpc_port)
    crop_bytes = 32 * 32 * 3
    with grpc_servicer(proxy) as port:
        with DeepfakeClient(f"127.0.0.1:{port}", detector=detector, input_format="pixels") as whole:
            expected = whole.analyze(media / "face.mp4")
        assert proxy.predict_calls == 1
        limit = 1024 + 2 * crop_bytes  # two crops per request
        with DeepfakeClient(f"127.0.0.1:{port}", detector=detector, input_format="pixels",
                            max_request_bytes=limit) as split:
            result = split.analyze(media / "face.mp4")
    assert proxy.predict_calls - 1 == math.ceil(result.faces / 2) >= 3
    assert result.fake_probability == pytest.approx(expected.fake_probability, abs=1e-6)
    # The first request lets the server choose; the others ask for the version that answered.
    versions = [r.model_spec.version.value if r.model_spec.HasField("version") else None for r in proxy.requests[1:]]
    assert versions[0] is None and set(versions[1:]) == {1}
    assert pack_requests([10] * 5, 1024 + 25) == [(0, 2), (2, 4), (4, 5)]
    assert pack_requests([5000, 10], 100) == [(0, 1), (1, 2)]  # too big alone still goes, alone


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  grpc.StatusCode.CANCELLED])
def test_retries_with_backoff_until_the_server_answers(server, media, detector, code):
    proxy = ProxyServicer(server.grpc_port, fail_predict=2, fail_metadata=1, code=code)
    with grpc_servicer(proxy) as port, DeepfakeClient(connect(f"127.0.0.1:{port}", retry=FAST_RETRY),
                                                      detector=detector) as c:
        assert proxy.metadata_calls == 2  # connecting retried too
        result = c.analyze(media / "face.jpg")
    assert result.verdict in ("fake", "real") and result.model_version == 1
    assert proxy.predict_calls == 3


def test_gives_up_after_the_retries_with_the_status(server, media, detector):
    proxy = ProxyServicer(server.grpc_port, fail_predict=100)
    with grpc_servicer(proxy) as port, DeepfakeClient(connect(f"127.0.0.1:{port}", retry=RetryPolicy(
                                                          retries=2, initial_backoff=0.01)), detector=detector) as c:
        with pytest.raises(ClientError) as info:
            c.analyze(media / "face.jpg")
    assert info.value.status == "UNAVAILABLE" and "gave up after 3 attempts" in info.value.message
    assert info.value.source == str(media / "face.jpg")
    assert proxy.predict_calls == 3


def test_other_errors_are_not_retried(server, media, detector):
    proxy = ProxyServicer(server.grpc_port, fail_predict=1, code=grpc.StatusCode.INVALID_ARGUMENT)
    with grpc_servicer(proxy) as port, DeepfakeClient(connect(f"127.0.0.1:{port}", retry=FAST_RETRY), detector=detector) as c:
        with pytest.raises(ClientError) as info:
            c.analyze(media / "face.jpg")
        assert info.value.status == "INVALID_ARGUMENT" and proxy.predict_calls == 1
        assert c.analyze(media / "face.jpg").verdict in ("fake", "real")  # the client is still usable


def test_deadline_exceeded(server, media, detector):
    proxy = ProxyServicer(server.grpc_port, delay=10)
    with grpc_servicer(proxy) as port, DeepfakeClient(connect(f"127.0.0.1:{port}", timeout=1.0), detector=detector) as c:
        started = time.monotonic()
        with pytest.raises(ClientError) as info:
            c.analyze(media / "face.jpg")
        elapsed = time.monotonic() - started
    assert info.value.status == "DEADLINE_EXCEEDED" and "deadline of 1 s" in info.value.message
    assert elapsed < 5 and proxy.predict_calls == 1  # not retried


def test_backoff_grows_exponentially_with_jitter_up_to_a_cap():
    import random

    policy = RetryPolicy(retries=5, initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)
    rng = random.Random(0)
    for retry, ceiling in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        delays = [policy.delay(retry, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(set(delays)) > 1


# --- overlap: requests in flight while the next frames are decoded and detected -------------------

@pytest.fixture(scope="module")
def small_batch_detector():
    """Two frames per detector batch: a 6-frame video makes three chunks of crops."""
    from dfdetect.faces.detection import FaceDetector

    return FaceDetector(batch_size=2)


def sent_images(requests) -> list[bytes]:
    """The JPEG crops of Predict requests, in the order they were sent."""
    import tensorflow as tf

    return [bytes(b) for r in requests for b in tf.make_ndarray(r.inputs["image_bytes"])]


def faces_of(result) -> list[tuple]:
    return [(fr.index, fr.timestamp, f.box, f.confidence) for fr in result.frames for f in fr.faces]


def test_overlap_keeps_frame_order_and_one_version(server, model, media, small_batch_detector):
    version_dir, _, _ = model
    clients = {overlap: DeepfakeClient(f"127.0.0.1:{server.grpc_port}", model_card=version_dir, overlap=overlap,
                                       detector=small_batch_detector) for overlap in (False, True)}
    try:
        expected, overlapped = (clients[o].analyze(media / "face.mp4") for o in (False, True))
    finally:
        for c in clients.values():
            c.close()
    assert (expected.timings.predict_calls, overlapped.timings.predict_calls) == (1, 3)  # one per detector batch
    assert faces_of(overlapped) == faces_of(expected) and len(faces_of(expected)) == VIDEO_FRAMES
    np.testing.assert_allclose([f.fake_probability for f in overlapped.frames],
                               [f.fake_probability for f in expected.frames], atol=1e-5)
    assert (overlapped.verdict, overlapped.model_version) == (expected.verdict, 1)

    # The first request is held back while the next frames are decoded, detected and queued;
    # each answer is marked, so every score can be traced to its request.
    proxy = ProxyServicer(server.grpc_port, delay=0.5, delay_calls={1}, mark=True)
    with grpc_servicer(proxy) as port, DeepfakeClient(f"127.0.0.1:{port}", detector=small_batch_detector,
                                                      overlap=True) as c:
        result = c.analyze(media / "face.mp4")
    assert proxy.predict_calls == 3 and result.timings.waiting > 0
    # The crops went in frame order, the first request chose the version, the others asked for it.
    plain = ProxyServicer(server.grpc_port)
    with grpc_servicer(plain) as port, DeepfakeClient(f"127.0.0.1:{port}", detector=small_batch_detector,
                                                      overlap=False) as c:
        c.analyze(media / "face.mp4")
    assert sent_images(proxy.requests) == sent_images(plain.requests)
    assert [r.model_spec.version.value if r.model_spec.HasField("version") else None
            for r in proxy.requests] == [None, 1, 1]
    # Every score landed on the face it was computed for: request k scored frames 2k-2 and 2k-1.
    assert faces_of(result) == faces_of(expected)
    assert [f.fake_probability for fr in result.frames for f in fr.faces] == \
        pytest.approx([0.010, 0.011, 0.020, 0.021, 0.030, 0.031])


def test_overlap_reports_a_failed_request_and_stops_sending(server, media, small_batch_detector):
    proxy = ProxyServicer(server.grpc_port, fail_calls={2}, code=grpc.StatusCode.INVALID_ARGUMENT)
    with grpc_servicer(proxy) as port, DeepfakeClient(f"127.0.0.1:{port}", detector=small_batch_detector,
                                                      overlap=True) as c:
        with pytest.raises(ClientError) as info:
            c.analyze(media / "face.mp4")
        assert (info.value.status, info.value.source) == ("INVALID_ARGUMENT", str(media / "face.mp4"))
        assert "the server is busy" in info.value.message
        assert proxy.predict_calls == 2  # the chunk after the failed one was never sent
        assert c.analyze(media / "face.mp4").model_version == 1  # the client is still usable
        assert proxy.predict_calls == 5


def test_overlap_retries_in_the_background_and_serves_several_threads(server, media, small_batch_detector):
    proxy = ProxyServicer(server.grpc_port, fail_calls={2})  # UNAVAILABLE once: retried
    with grpc_servicer(proxy) as port, DeepfakeClient(connect(f"127.0.0.1:{port}", retry=FAST_RETRY),
                                                      detector=small_batch_detector, overlap=True) as c:
        first = c.analyze(media / "face.mp4")
        assert proxy.predict_calls == 4 and first.timings.predict_calls == 3
        with futures.ThreadPoolExecutor(3) as pool:
            results = list(pool.map(c.analyze, [media / "face.mp4", media / "face.jpg", media / "face.mp4"]))
    for result in (results[0], results[2]):
        assert faces_of(result) == faces_of(first)
        assert [f.fake_probability for f in result.frames] == pytest.approx([f.fake_probability for f in first.frames],
                                                                            abs=1e-5)
    assert results[1].kind == "image" and results[1].timings.predict_calls == 1


# --- REST and TLS -----------------------------------------------------------------------------------

def test_rest_transport_gives_the_grpc_results(server, model, media, detector):
    version_dir, _, _ = model
    for input_format in ("jpeg", "pixels"):
        results = {}
        for transport, port in (("grpc", server.grpc_port), ("rest", server.rest_port)):
            with DeepfakeClient(connect(f"127.0.0.1:{port}", transport=transport), model_card=version_dir,
                                detector=detector, input_format=input_format) as c:
                assert c.crop_size == 32 and c.model_version == 1
                results[transport] = c.analyze(media / "face.mp4")
        grpc_result, rest_result = results["grpc"], results["rest"]
        assert (rest_result.verdict, rest_result.model_version) == (grpc_result.verdict, 1)
        np.testing.assert_allclose([f.fake_probability for f in rest_result.frames],
                                   [f.fake_probability for f in grpc_result.frames], atol=1e-5)
    with DeepfakeClient(connect(f"http://127.0.0.1:{server.rest_port}", transport="rest"), detector=detector) as rest:
        assert rest.analyze(media / "blank.mp4").verdict == "no_face"
    with pytest.raises(ClientError) as info:
        DeepfakeClient(connect(f"127.0.0.1:{server.rest_port}", "nobody", transport="rest"), detector=detector)
    assert info.value.status == "NOT_FOUND" and "nobody" in info.value.message


class RecordingTransport:
    """A transport of one's own, as a media backend might hand in: a real one, with every call
    recorded (for tracing, or a connection pool of its own)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.kind, self.target, self.model_name = f"recorded {inner.kind}", inner.target, inner.model_name

    def metadata(self):
        self.calls.append("metadata")
        return self.inner.metadata()

    def predict_pixels(self, crops, version=None):
        self.calls.append(f"pixels {len(crops)}")
        return self.inner.predict_pixels(crops, version)

    def predict_bytes(self, images, version=None):
        self.calls.append(f"bytes {len(images)}")
        return self.inner.predict_bytes(images, version)

    def item_bytes(self, raw_bytes, binary):
        return self.inner.item_bytes(raw_bytes, binary)

    def close(self):
        self.calls.append("close")
        self.inner.close()


def test_a_transport_handed_in_carries_the_connection(server, model, media, detector):
    from dfdetect.client import Transport, connect

    version_dir, _, _ = model
    with DeepfakeClient(f"127.0.0.1:{server.grpc_port}", model_card=version_dir, detector=detector) as plain:
        expected = plain.analyze(media / "face.mp4")
    for kind, port in (("grpc", server.grpc_port), ("rest", server.rest_port)):
        recording = RecordingTransport(connect(f"127.0.0.1:{port}", transport=kind, timeout=10))
        assert isinstance(recording, Transport)
        with DeepfakeClient(recording, model_card=version_dir, detector=detector) as c:
            assert c.model_name == "deepfake" and c.crop_size == 32
            result = c.analyze(media / "face.mp4")
        assert recording.calls[0] == "metadata" and recording.calls[-1] == "close"
        assert any(call.startswith("bytes ") for call in recording.calls), recording.calls
        assert result.verdict == expected.verdict
        np.testing.assert_allclose([f.fake_probability for f in result.frames],
                                   [f.fake_probability for f in expected.frames], atol=1e-5)
    # The connection is the transport's alone: the client takes none of its options.
    options = set(inspect.signature(DeepfakeClient).parameters)
    assert not options & set(inspect.signature(connect).parameters), options
    with pytest.raises(ClientError) as info:
        DeepfakeClient(object(), detector=detector)
    assert info.value.status == "INVALID_ARGUMENT" and "Transport" in info.value.message


def test_rest_retries_on_503_and_429(server, media, detector):
    for status, name in ((503, "UNAVAILABLE"), (429, "RESOURCE_EXHAUSTED")):
        with flaky_rest_proxy(server.rest_port, fail_posts=2, status=status) as (port, state):
            with DeepfakeClient(connect(f"127.0.0.1:{port}", transport="rest", retry=FAST_RETRY),
                                detector=detector) as c:
                assert c.analyze(media / "face.jpg").model_version == 1
            assert state["posts"] == 3
        with flaky_rest_proxy(server.rest_port, fail_posts=100, status=status) as (port, state):
            with DeepfakeClient(connect(f"127.0.0.1:{port}", transport="rest",
                                        retry=RetryPolicy(retries=1, initial_backoff=0.01)), detector=detector) as c:
                with pytest.raises(ClientError) as info:
                    c.analyze(media / "face.jpg")
            assert info.value.status == name and state["posts"] == 2


def test_tls(server, media, detector, tmp_path):
    assert shutil.which("openssl"), "this test makes its certificate with the openssl command: install openssl"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    with grpc_servicer(ProxyServicer(server.grpc_port), credentials) as port:
        with DeepfakeClient(connect(f"localhost:{port}", root_certificates=cert), detector=detector) as c:
            assert c.analyze(media / "face.jpg").model_version == 1
        with pytest.raises(ClientError) as info:  # the system's roots do not trust a self-signed certificate
            DeepfakeClient(connect(f"localhost:{port}", tls=True, retry=RetryPolicy(retries=0), timeout=5),
                           detector=detector)
        assert info.value.status == "UNAVAILABLE"
    with pytest.raises(ClientError, match="cannot read the root certificates file"):
        DeepfakeClient(connect("localhost:1", root_certificates=tmp_path / "missing.pem"), detector=detector)


# --- the command line ----------------------------------------------------------------------------

def run_cli(argv) -> int:
    """`dfdetect predict ...` as dfdetect.cli.main runs a subcommand."""
    parser = argparse.ArgumentParser(prog="dfdetect")
    add_predict_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(["predict", *map(str, argv)])
    try:
        return int(args.handler(args) or 0)
    except DfdetectError as e:
        print(f"error: {e}", file=__import__("sys").stderr)
        return 2


@pytest.fixture(scope="module")
def folder(media, tmp_path_factory):
    """A folder as a backend would pass it: media in sub-folders, a corrupt video, other files."""
    root = tmp_path_factory.mktemp("uploads")
    (root / "clips" / "day1").mkdir(parents=True)
    shutil.copy(media / "face.mp4", root / "clips" / "day1" / "face.mp4")
    shutil.copy(media / "blank.mp4", root / "clips" / "blank.mp4")
    shutil.copy(media / "face.jpg", root / "face.jpg")
    shutil.copy(media / "corrupt.mp4", root / "clips" / "corrupt.mp4")
    (root / "README.txt").write_text("skipped: not media")
    (root / ".hidden.mp4").write_bytes(b"skipped: hidden")
    return root


def test_cli_json_reports_every_input_and_fails_when_one_failed(server, model, folder, capsys):
    version_dir, card, _ = model
    code = run_cli([folder, folder / "missing.png", "--server", f"127.0.0.1:{server.grpc_port}", "--json",
                    "--frames", 4, "--model-card", version_dir])
    out = capsys.readouterr()
    assert code == 1
    docs = {Path(d["source"]).name: d for d in json.loads(out.out)}
    assert sorted(docs) == ["blank.mp4", "corrupt.mp4", "face.jpg", "face.mp4", "missing.png"]
    assert docs["face.mp4"]["kind"] == "video" and len(docs["face.mp4"]["frames"]) == 4
    assert docs["face.mp4"]["verdict"] in ("fake", "real") and docs["face.mp4"]["model_version"] == 1
    assert docs["face.mp4"]["threshold"] == pytest.approx(card["threshold"])
    assert docs["face.jpg"]["kind"] == "image" and docs["blank.mp4"]["verdict"] == "no_face"
    assert docs["corrupt.mp4"]["error"]["status"] == "INVALID_ARGUMENT"
    assert "cannot open as a video" in docs["corrupt.mp4"]["error"]["message"]
    assert docs["missing.png"]["error"] == {"status": "NOT_FOUND", "message": "file not found"}
    assert "corrupt.mp4" in out.err  # reported as it happens


def test_cli_table_and_exit_status(server, folder, capsys):
    target = ["--server", f"127.0.0.1:{server.grpc_port}", "--frames", 3]
    assert run_cli([folder / "face.jpg", folder / "clips" / "day1", *target, "--threshold", 0]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["VERDICT", "P(FAKE)", "FACES", "FRAMES", "MODEL", "SOURCE"]
    assert lines[1].split()[0] == "fake" and lines[1].split()[4] == "deepfake:1" and lines[1].endswith("face.jpg")
    assert lines[2].split()[3] == "3/3" and lines[2].endswith("face.mp4")
    assert "2 inputs: 2 fake, 0 real, 0 no_face, 0 failed; threshold 0.0000 (argument)" in out

    rest = ["--rest", "--server", f"127.0.0.1:{server.rest_port}", "--frames", 3, "--no-progress"]
    assert run_cli([folder, *rest]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("error") and "corrupt.mp4: INVALID_ARGUMENT" in line for line in out.splitlines())
    assert any(line.startswith("no_face") and line.endswith("blank.mp4") for line in out.splitlines())
    assert "4 inputs:" in out and "1 no_face, 1 failed" in out and "(default (no model card))" in out

    assert run_cli([folder, "--server", f"127.0.0.1:{free_port()}", "--retries", 0, "--timeout", 5]) == 2
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_cli_pins_a_labelled_version(model, folder, tmp_path, capsys):
    """--version-label asks for the version the server's config labels so (canary rollouts)."""
    _, _, base = model
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "deepfake" base_path: "{base}" model_platform: "tensorflow" '
                      'model_version_policy { specific { versions: 1 } } version_labels { key: "stable" value: 1 } } }\n')
    srv = start_server(model_config_file=str(config), model_name="")
    try:
        for transport in ([], ["--rest"]):
            port = srv.rest_port if transport else srv.grpc_port
            target = ["--server", f"127.0.0.1:{port}", *transport, "--no-progress"]
            assert run_cli([folder / "face.jpg", *target, "--version-label", "stable", "--threshold", 0]) == 0
            assert capsys.readouterr().out.splitlines()[1].split()[4] == "deepfake:1"
            assert run_cli([folder / "face.jpg", *target, "--version-label", "canary"]) == 2
            err = capsys.readouterr().err
            assert "INVALID_ARGUMENT" in err and "canary" in err, err
    finally:
        srv.stop()
    with pytest.raises(SystemExit):
        run_cli([folder / "face.jpg", "--model-version", 1, "--version-label", "stable"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_collects_folders_recursively(folder):
    names = [Path(p).relative_to(folder).as_posix() for p, error in collect_inputs([folder, folder / "face.jpg"])]
    assert names == ["face.jpg", "clips/blank.mp4", "clips/corrupt.mp4", "clips/day1/face.mp4"]
    empty = folder.parent / "empty-folder"
    empty.mkdir(exist_ok=True)
    ((path, error),) = collect_inputs([empty])
    assert error.status == "NOT_FOUND" and "no images or videos" in error.message


def test_cli_table_marks_low_evidence_and_shows_each_person(server, people_server, media, two_people, detector,
                                                             capsys):
    target = ["--server", f"127.0.0.1:{server.grpc_port}", "--no-progress", "--threshold", 0.5]
    assert run_cli([media / "few_faces.mp4", media / "face.mp4", *target, "--frames", FEW_FACES_FRAMES]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(("fake (low evidence)", "real (low evidence)")) and lines[1].endswith("few_faces.mp4")
    assert "2/12" in lines[1].split()
    assert lines[2].split()[0] in ("fake", "real") and "low evidence" not in lines[2] and lines[2].endswith("face.mp4")
    assert f"{VIDEO_FRAMES}/{VIDEO_FRAMES}" in lines[2].split()  # a video shorter than --frames: every frame
    assert not any("person" in line for line in lines)  # one person each: no line per person
    assert run_cli([media / "few_faces.mp4", *target, "--frames", FEW_FACES_FRAMES, "--min-evidence", 0.1]) == 0
    assert "low evidence" not in capsys.readouterr().out

    # Two people: the video's line, then a line per person saying which one is fake.
    srv, expected = people_server
    path, _, _ = two_people
    threshold = float(expected["bright"].mean())
    with DeepfakeClient(connect(f"127.0.0.1:{srv.grpc_port}", "bright"), threshold=threshold, frames=PEOPLE_FRAMES,
                        detector=detector) as c:
        result = c.analyze(path)
    assert run_cli([path, "--server", f"127.0.0.1:{srv.grpc_port}", "--model-name", "bright", "--threshold",
                    threshold, "--frames", PEOPLE_FRAMES, "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:5] == ["fake", f"{result.fake_probability:.4f}", str(2 * PEOPLE_FRAMES),
                                    f"{PEOPLE_FRAMES}/{PEOPLE_FRAMES}", "bright:1"] and lines[1].endswith(path.name)
    people = [re.fullmatch(r"\s+person (\d+): (fake|real)\s+([\d.]+)\s+(\d+)\s+(\d+)/(\d+)\s+frames (\d+)-(\d+)", line)
              for line in lines[2:4]]
    assert all(people), lines
    assert [m.groups() for m in people] == [
        (str(t.id + 1), t.verdict, f"{t.fake_probability:.4f}", str(PEOPLE_FRAMES), str(PEOPLE_FRAMES),
         str(PEOPLE_FRAMES), "0", str(PEOPLE_FRAMES - 1)) for t in result.tracks]
    assert sorted(m.group(2) for m in people) == ["fake", "real"]
    assert lines[4].startswith("1 input: 1 fake, 0 real")


def _served(server) -> float:
    """Predict requests a local server answered OK."""
    return server.metrics.registry.get_sample_value(
        "dfdetect_serving_requests_total",
        {"model": "deepfake", "signature": "serving_default", "api": "grpc", "status": "OK"}) or 0.0


def test_round_robin_spreads_requests_over_every_server_and_survives_one_stopping(tiny_export):
    """Three model servers behind one target (an ipv4: address list, as a headless Service's name
    resolves to its pods): round_robin spreads 300 requests over all three, and a server that
    stops while requests are in flight costs no request: its drain answers what it started,
    refuses new calls, and cancels what it took but had not started (the client tries those
    again); the channel moves on."""
    _, repository, _ = tiny_export
    servers = [start_server(model_base_path=str(repository / "deepfake"), rest_api_port=-1) for _ in range(3)]
    try:
        target = "ipv4:" + ",".join(f"127.0.0.1:{s.grpc_port}" for s in servers)
        # A short deadline: a request left unanswered by the stopping server would fail the test.
        with DeepfakeClient(connect(target, load_balancing="round_robin", timeout=10), threshold=0.5) as client:
            crops = np.zeros((1, client.crop_size, client.crop_size, 3), np.uint8)
            for _ in range(300):
                client.transport.predict_pixels(crops)
            counts = [_served(s) for s in servers]
            assert sum(counts) == 300 and min(counts) >= 75, counts
            failures, answered, lock = [], [], threading.Lock()

            def send():  # 4 of these: requests in flight on every server all the time
                while True:
                    with lock:
                        if len(answered) + len(failures) >= 300:
                            return
                    started = time.monotonic()
                    try:
                        client.transport.predict_pixels(crops)
                        with lock:
                            answered.append(time.monotonic() - started)
                    except ClientError as e:
                        with lock:
                            failures.append(e)

            senders = [threading.Thread(target=send) for _ in range(4)]
            for t in senders:
                t.start()
            while len(answered) < 100 and any(t.is_alive() for t in senders):
                time.sleep(0.005)
            servers[0].stop()
            for t in senders:
                t.join(60)
            assert failures == [], failures[:3]
            assert max(answered) < 5, f"a request took {max(answered):.1f} s"
            rest = [_served(s) - c for s, c in zip(servers[1:], counts[1:])]
            assert sum(rest) >= 150 and min(rest) >= 60, rest
        with pytest.raises(ClientError, match="load_balancing must be one of pick_first, round_robin"):
            DeepfakeClient(connect(target, load_balancing="random"), threshold=0.5)
    finally:
        for s in servers:
            s.stop()
