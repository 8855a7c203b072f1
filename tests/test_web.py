"""The web front: its JSON API over real HTTP, and the real page in headless Chromium, in front of
the local model server (real gRPC) with the tiny exported model."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from conftest import blank_frames, face_frames, start_server
from dfdetect.tooling import png_header
from dfdetect.client.client import DeepfakeClient
from dfdetect.faces.frames import write_video
from dfdetect.samples import footage
from dfdetect.web.app import THUMBNAIL_SIZE, create_app
from dfdetect.web.settings import WebSettings, env_defaults

FRAMES = 6  # sampled per video by the web front in these tests
VIDEO_FRAMES = 20
SAMPLED = [0, 4, 8, 11, 15, 19]  # the frames of a VIDEO_FRAMES video that the web front samples
FACE_FRAMES_OF_FEW = 2  # few_faces.mp4: a face in its first 2 frames only, so in 1 of the 6 sampled
FPS = 10
LIMIT_MB = 1.0
CHROMIUM = os.environ.get("DFDETECT_CHROMIUM", "/usr/bin/chromium")
OUTPUT = Path(os.environ.get("DFDETECT_TEST_OUTPUT", Path(__file__).resolve().parents[1] / "reports" / "test-output"))


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_server(model):
    srv = start_server(model_base_path=str(model[2]))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def media(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("web-media")
    write_video(root / "face.mp4", face_frames(photos["astronaut"], VIDEO_FRAMES), FPS)
    write_video(root / "blank.mp4", blank_frames(VIDEO_FRAMES), FPS)
    write_video(root / "few_faces.mp4", face_frames(photos["astronaut"], FACE_FRAMES_OF_FEW) +
                blank_frames(VIDEO_FRAMES - FACE_FRAMES_OF_FEW), FPS)
    write_video(root / "two_people.mp4", footage("two_people", frames=VIDEO_FRAMES, size=(640, 360), seed=0).frames, FPS)
    for name in ("few_faces.mp4", "two_people.mp4"):
        assert (root / name).stat().st_size < LIMIT_MB * 1024 * 1024, f"{name} must fit the upload limit"
    still = face_frames(photos["grace_hopper"], 1)[0]
    cv2.imwrite(str(root / "face.jpg"), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (root / "notes.txt").write_text("meeting notes, not a picture\n" * 20)
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "large.png"), noise)  # incompressible: well above LIMIT_MB
    assert (root / "large.png").stat().st_size > 2 * LIMIT_MB * 1024 * 1024
    return root


class WebServer:
    """The web front under uvicorn, in a thread, on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the web front did not start within 30 s"
            assert self.thread.is_alive(), "the web front's server thread died at start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()


@pytest.fixture(scope="module")
def web(model_server, model):
    settings = WebSettings(server=f"127.0.0.1:{model_server.grpc_port}", model_card=str(model[0]),
                           frames=FRAMES, max_upload_mb=LIMIT_MB, timeout=20)
    with WebServer(create_app(settings)) as server:
        yield server


@pytest.fixture(scope="module")
def http(web):
    with httpx.Client(base_url=web.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def direct(model_server, model, detector):
    """The client itself, as a backend would call it: what the web front must agree with."""
    with DeepfakeClient(f"127.0.0.1:{model_server.grpc_port}", model_card=model[0], frames=FRAMES,
                        detector=detector) as c:
        yield c


def upload(http, path: Path, name: str | None = None, **params):
    with open(path, "rb") as f:
        return http.post("/api/analyze", params=params, files={"file": (name or path.name, f)})


def web_temp_files() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("dfdetect-web-")}


def scores(result: dict) -> list[list[float]]:
    return [[face["fake_probability"] for face in frame["faces"]] for frame in result["frames"]]


# --- the API ------------------------------------------------------------------------------------

def test_image_result_is_the_clients(http, media, direct, model):
    response = upload(http, media / "face.jpg")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    got = response.json()
    expected = direct.analyze(media / "face.jpg").to_dict()
    assert got["source"] == "face.jpg" and got["kind"] == "image"
    assert got["verdict"] == expected["verdict"] and got["verdict"] in ("fake", "real")
    assert got["model_name"] == "deepfake" and got["model_version"] == int(model[0].name)
    assert got["threshold"] == pytest.approx(model[1]["threshold"])
    assert len(got["frames"]) == 1 and len(got["frames"][0]["faces"]) >= 1
    np.testing.assert_allclose(got["fake_probability"], expected["fake_probability"], atol=1e-6)
    np.testing.assert_allclose(sum(scores(got), []), sum(scores(expected), []), atol=1e-6)
    assert "thumbnail" not in got["frames"][0]["faces"][0]  # only when asked for


def test_video_result_is_the_clients(http, media, direct):
    response = upload(http, media / "face.mp4")
    assert response.status_code == 200, response.text
    got = response.json()
    expected = direct.analyze(media / "face.mp4").to_dict()
    assert got["kind"] == "video" and got["source"] == "face.mp4"
    assert len(got["frames"]) == FRAMES
    assert [f["index"] for f in got["frames"]] == [f["index"] for f in expected["frames"]]
    timestamps = [f["timestamp"] for f in got["frames"]]
    assert timestamps == sorted(timestamps) and timestamps[-1] > timestamps[0]
    assert all(f["faces"] for f in got["frames"]), "MTCNN should find the face in every frame"
    np.testing.assert_allclose(got["fake_probability"], expected["fake_probability"], atol=1e-6)
    assert got["verdict"] == expected["verdict"]


def test_thumbnails_are_the_face_crops_small(http, media, direct):
    got = upload(http, media / "face.mp4", thumbnails="true").json()
    faces = [face for frame in got["frames"] for face in frame["faces"]]
    assert faces
    for face in faces:
        prefix = "data:image/jpeg;base64,"
        assert face["thumbnail"].startswith(prefix)
        image = cv2.imdecode(np.frombuffer(base64.b64decode(face["thumbnail"][len(prefix):]), np.uint8),
                             cv2.IMREAD_COLOR)
        assert image is not None and max(image.shape[:2]) == min(THUMBNAIL_SIZE, direct.crop_size)
        assert image.std() > 10, "a thumbnail should show a face, not a flat patch"


def assert_same(got, expected, path="result"):
    """Two results' JSON alike: the same keys, lists and values (floats to 1e-6)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected), f"{path}: keys {list(got)} != {list(expected)}"
        for key in expected:
            assert_same(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{path}: {got} != {expected}"
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-6), f"{path}: {got} != {expected}"
    else:
        assert got == expected and type(got) is type(expected), f"{path}: {got!r} != {expected!r}"


@pytest.mark.parametrize("name", ["few_faces.mp4", "two_people.mp4", "face.mp4"])
def test_evidence_and_people_are_the_clients(http, media, direct, name):
    response = upload(http, media / name)
    assert response.status_code == 200, response.text
    got = response.json()
    for key in ("frames_sampled", "frames_with_face", "low_evidence", "tracks"):
        assert key in got, key
    for face in (face for frame in got["frames"] for face in frame["faces"]):
        assert isinstance(face["track"], int) and isinstance(face["rescued"], bool)
    assert_same(got, direct.analyze_video(media / name, source=name).to_dict())

    assert [f["index"] for f in got["frames"]] == SAMPLED and got["frames_sampled"] == FRAMES
    with_face = [bool(f["faces"]) for f in got["frames"]]
    if name == "few_faces.mp4":  # only the first sampled frame shows the face: 1 of 6, under a quarter
        assert with_face == [True] + [False] * (FRAMES - 1)
        assert (got["frames_with_face"], got["low_evidence"]) == (1, True)
        assert [(t["frames"], t["first_frame"], t["last_frame"]) for t in got["tracks"]] == [(1, 0, 0)]
    elif name == "two_people.mp4":  # both people in every sampled frame, a track each
        assert all(len(f["faces"]) == 2 for f in got["frames"])
        assert (got["frames_with_face"], got["low_evidence"]) == (FRAMES, False)
        assert [(t["id"], t["frames"], t["first_frame"], t["last_frame"]) for t in got["tracks"]] == \
            [(0, FRAMES, 0, VIDEO_FRAMES - 1), (1, FRAMES, 0, VIDEO_FRAMES - 1)]
        assert all(sorted(face["track"] for face in f["faces"]) == [0, 1] for f in got["frames"])
        # Each track stays on one side of the frame: one person each.
        for track in (0, 1):
            sides = {face["box"][0] + face["box"][2] / 2 < 320 for f in got["frames"] for face in f["faces"]
                     if face["track"] == track}
            assert len(sides) == 1, (track, sides)
    else:
        assert (got["frames_with_face"], got["low_evidence"], len(got["tracks"])) == (FRAMES, False, 1)
    for track in got["tracks"]:
        assert track["verdict"] == ("fake" if track["fake_probability"] >= got["threshold"] else "real")


def test_video_without_a_face_is_no_face(http, media):
    got = upload(http, media / "blank.mp4").json()
    assert got["verdict"] == "no_face"
    assert "fake_probability" not in got
    assert len(got["frames"]) == FRAMES and all(not f["faces"] for f in got["frames"])


def test_content_decides_not_the_file_name(http, media):
    as_video_name = upload(http, media / "face.jpg", name="holiday.mp4")
    assert as_video_name.status_code == 200 and as_video_name.json()["kind"] == "image"
    text_as_image = upload(http, media / "notes.txt", name="portrait.jpg")
    assert text_as_image.status_code == 415
    error = text_as_image.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert "not an image or a video" in error["message"] and "JPEG" in error["message"] and "MP4" in error["message"]


@pytest.mark.parametrize("name, expected", [
    ("corrupt.mp4", "MP4 video"),
    ("corrupt.jpg", "JPEG image"),
])
def test_undecodable_media_is_422(http, media, name, expected):
    response = upload(http, media / name)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith(f"the file's content is {expected}, but it could not be read: "), error


def test_empty_upload_and_missing_file(http, media):
    empty = http.post("/api/analyze", files={"file": ("nothing.png", b"")})
    assert empty.status_code == 400
    assert empty.json()["error"]["message"] == "the upload is empty; expected an image or a video"
    missing = http.post("/api/analyze", data={"other": "x"})
    assert missing.status_code == 400
    assert "field 'file'" in missing.json()["error"]["message"]
    not_multipart = http.post("/api/analyze", content=b"\xff\xd8\xff", headers={"content-type": "image/jpeg"})
    assert not_multipart.status_code == 400


def test_size_limit_is_413_and_the_server_keeps_serving(http, media):
    response = upload(http, media / "large.png")
    assert response.status_code == 413
    assert response.json()["error"]["message"] == f"the upload is larger than the limit of {LIMIT_MB:g} MB"
    # Without a Content-Length (chunked upload), the limit holds while the body streams in.
    def chunks():
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\n"
        for _ in range(40):
            yield b"\x89PNG\r\n\x1a\n" + bytes(64 * 1024)
    chunked = http.post("/api/analyze", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert chunked.status_code == 413
    assert upload(http, media / "face.jpg").status_code == 200


def test_uploads_are_deleted(http, media):
    before = web_temp_files()
    for name in ("face.jpg", "corrupt.mp4", "blank.mp4"):
        upload(http, media / name)
    assert web_temp_files() == before


def test_concurrent_uploads(http, media, web):
    results = [None] * 4

    def post(i):
        with httpx.Client(base_url=web.url, timeout=120) as c:
            results[i] = upload(c, media / ("face.jpg" if i % 2 else "corrupt.mp4")).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [422, 200, 422, 200]


def test_uploads_beyond_the_waiting_room_are_503(model_server, model, media):
    """With one analysis at a time and no waiting room, an upload that arrives while another is
    still streaming in is refused with 503 at once; the first still succeeds."""
    settings = WebSettings(server=f"127.0.0.1:{model_server.grpc_port}", model_card=str(model[0]), frames=FRAMES,
                           max_concurrent=1, max_waiting=0, timeout=20)
    jpeg = (media / "face.jpg").read_bytes()
    release = threading.Event()

    def slow_body():
        yield (b'--b\r\nContent-Disposition: form-data; name="file"; filename="face.jpg"\r\n'
               b"Content-Type: image/jpeg\r\n\r\n" + jpeg[:1000])
        release.wait(60)
        yield jpeg[1000:] + b"\r\n--b--\r\n"

    first = {}
    with WebServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=120) as c:
        def post_slowly():
            with httpx.Client(base_url=server.url, timeout=120) as slow:
                first["response"] = slow.post("/api/analyze", content=slow_body(),
                                              headers={"content-type": "multipart/form-data; boundary=b"})

        thread = threading.Thread(target=post_slowly)
        thread.start()
        try:
            time.sleep(1.5)  # the first upload is now streaming in, holding the only place
            busy = upload(c, media / "face.jpg")
            assert busy.status_code == 503, busy.text
            assert busy.json()["error"]["status"] == "RESOURCE_EXHAUSTED" and busy.headers["retry-after"] == "5"
            assert c.get("/healthz").status_code == 200  # probes are not uploads
        finally:
            release.set()
            thread.join(120)
        assert first["response"].status_code == 200, first["response"].text
        assert upload(c, media / "face.jpg").status_code == 200  # the place is free again


def test_openapi_documents_the_upload(http):
    schema = http.get("/openapi.json").json()
    operation = schema["paths"]["/api/analyze"]["post"]
    assert "multipart/form-data" in operation["requestBody"]["content"]
    for status in ("200", "413", "415", "422", "503"):
        assert status in operation["responses"], status
    result = schema["components"]["schemas"]["AnalyzeResult"]
    assert {"verdict", "fake_probability", "threshold", "model_version", "frames"} <= set(result["properties"])


def test_probes_and_config(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] >= 1
    assert http.get("/api/config").json() == {"max_upload_bytes": int(LIMIT_MB * 1024 * 1024),
                                             "model_name": "deepfake"}


def test_unknown_paths_and_methods_answer_in_the_status_vocabulary(http):
    missing = http.get("/api/nothere")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
    wrong_method = http.delete("/api/analyze")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["status"] == "UNIMPLEMENTED"


def test_model_server_down_is_503(media):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = WebSettings(server=f"127.0.0.1:{closed}", threshold=0.5, timeout=2)
    with WebServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["status"] == "UNAVAILABLE"
        response = upload(c, media / "face.jpg")
        assert response.status_code == 503
        assert response.json()["error"]["status"] == "UNAVAILABLE"
        for answer in (ready, response):  # users see neither the model server's address nor paths
            message = answer.json()["error"]["message"]
            assert str(closed) not in message and "127.0.0.1" not in message and "/tmp" not in message, message


def test_a_stalled_upload_is_cut_off_and_frees_its_place(model_server, model, media):
    settings = WebSettings(server=f"127.0.0.1:{model_server.grpc_port}", model_card=str(model[0]), frames=FRAMES,
                           max_concurrent=1, max_waiting=0, timeout=20, upload_idle_seconds=1.0)
    jpeg = (media / "face.jpg").read_bytes()
    part = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="face.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + jpeg[:1000])
    with WebServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=120) as c:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /api/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: %d\r\n\r\n" % (len(part) + len(jpeg)) + part)
            started = time.monotonic()
            answer = b""  # then nothing more is sent: the upload stalls, until the answer and close
            while chunk := s.recv(65536):
                answer += chunk
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408") and b"DEADLINE_EXCEEDED" in answer, answer[:300]
        assert waited < 10, waited
        assert upload(c, media / "face.jpg").status_code == 200  # its place is free again


def test_an_image_bomb_is_refused_before_it_is_decoded(http, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(16000, 16000) + b"\x00" * 4096)
    response = upload(http, bomb)
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "16000x16000 image (256.0 megapixels) is over the limit of 40 megapixels" in message
    assert "/tmp" not in message


def test_sigterm_ends_the_web_front_with_0(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dfdetect", "web", "--port", str(port), "--host", "127.0.0.1",
                             "--server", "127.0.0.1:1", "--threshold", "0.5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_readiness_answers_in_time_when_the_model_server_hangs():
    """A model server that accepts connections but never answers: each probe answers 503 within
    READY_SECONDS, and probes share one check instead of piling up behind the client's deadline."""
    from dfdetect.web.app import READY_SECONDS

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
        settings = WebSettings(server=f"127.0.0.1:{silent.getsockname()[1]}", threshold=0.5, timeout=30)
        with WebServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=60) as c:
            for _ in range(3):
                started = time.monotonic()
                ready = c.get("/readyz")
                took = time.monotonic() - started
                assert ready.status_code == 503, ready.text
                assert ready.json()["error"] == {
                    "status": "UNAVAILABLE",
                    "message": f"the model server did not answer within {READY_SECONDS:g} s"}  # no address
                assert took < READY_SECONDS + 1.5, took
            checks = [t for t in threading.enumerate() if t.name == "readyz"]
            assert len(checks) == 1, checks
            assert c.get("/healthz").status_code == 200


def test_settings_from_environment_and_flags(monkeypatch):
    from dfdetect.cli import build_parser

    assert env_defaults({"DFDETECT_WEB_SERVER": "serving:8500", "DFDETECT_WEB_MAX_UPLOAD_MB": "5"}) == {
        "server": "serving:8500", "max_upload_mb": 5.0}
    with pytest.raises(ValueError, match="DFDETECT_WEB_PORT='http': expected int"):
        env_defaults({"DFDETECT_WEB_PORT": "http"})
    monkeypatch.setenv("DFDETECT_WEB_SERVER", "serving:8500")
    args = build_parser().parse_args(["web", "--port", "9090"])
    assert (args.server, args.port, args.max_upload_mb) == ("serving:8500", 9090, 100.0)
    with pytest.raises(ValueError, match="max_upload_mb must be > 0"):
        WebSettings(max_upload_mb=0).validate()


# --- the page, in headless Chromium -------------------------------------------------------------

@pytest.fixture(scope="module")
def page(web):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: the page tests drive Debian's chromium package "
                    "(`make test` installs it with apt-get; or set DFDETECT_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        context = browser.new_context(viewport={"width": 1000, "height": 900})
        page = context.new_page()
        page.set_default_timeout(120_000)
        yield page
        context.close()
        browser.close()


def open_and_upload(page, web, path: Path):
    page.goto(web.url + "/")
    page.wait_for_function("document.getElementById('limit').textContent.length > 0")
    page.set_input_files("#file", str(path))


def test_page_image(page, web, media):
    open_and_upload(page, web, media / "face.jpg")
    page.wait_for_selector("#result:not([hidden])")
    verdict = page.get_attribute("#verdict", "data-verdict")
    assert verdict in ("fake", "real")
    assert page.inner_text("#verdict") in ("Likely fake", "Likely real")
    assert page.inner_text("#model") == "deepfake version 1"
    assert float(page.inner_text("#threshold")) >= 0
    thumbs = page.locator("#faces img.face-thumb")
    assert thumbs.count() >= 1
    assert page.evaluate("Array.from(document.querySelectorAll('#faces img')).every(i => i.naturalWidth > 0)")
    assert page.is_hidden("#timeline-block"), "an image has no timeline"
    assert page.is_hidden("#progress") and page.is_hidden("#error")
    page.screenshot(path=str(OUTPUT / "web-image.png"), full_page=True)


def test_page_video_timeline(page, web, media):
    open_and_upload(page, web, media / "face.mp4")
    page.wait_for_selector("#result:not([hidden])")
    assert page.get_attribute("#verdict", "data-verdict") in ("fake", "real")
    assert page.is_hidden("#progress")
    assert page.inner_text("#frames") == f"{FRAMES} of {FRAMES} sampled frames with a face"
    assert page.locator("#faces img.face-thumb").count() >= FRAMES
    assert page.is_visible("#timeline")
    assert page.locator("#timeline path.timeline-line").count() == 1
    assert page.locator("#timeline circle.frame-dot").count() == FRAMES
    assert page.locator("#timeline line.threshold-line").count() == 1
    path = page.get_attribute("#timeline path.timeline-line", "d")
    assert path.count("L") == FRAMES - 1
    # One person, a face in every sampled frame: no list of people, no doubt about the evidence.
    assert page.is_hidden("#people-block") and page.is_hidden("#evidence")
    assert page.inner_text("#verdict") in ("Likely fake", "Likely real")
    page.screenshot(path=str(OUTPUT / "web-video.png"), full_page=True)


def test_page_low_evidence(page, web, media, http):
    verdict = upload(http, media / "few_faces.mp4").json()["verdict"]
    open_and_upload(page, web, media / "few_faces.mp4")
    page.wait_for_selector("#result:not([hidden])")
    assert page.get_attribute("#verdict", "data-verdict") == "low_evidence"
    assert page.inner_text("#verdict") == {"fake": "Possibly fake (low evidence)", "real": "Not enough evidence"}[verdict]
    assert page.is_visible("#evidence")
    evidence = page.inner_text("#evidence")
    assert "1 of 6 sampled frames" in evidence and "too few" in evidence, evidence
    assert page.inner_text("#frames") == f"1 of {FRAMES} sampled frames with a face"
    assert page.is_hidden("#people-block")  # one person
    assert page.locator("#faces img.face-thumb").count() == 1
    assert page.locator("#timeline circle.frame-dot").count() == 1
    assert page.locator("#timeline line.no-face").count() == FRAMES - 1
    page.screenshot(path=str(OUTPUT / "web-low-evidence.png"), full_page=True)


def test_page_two_people(page, web, media, http):
    tracks = upload(http, media / "two_people.mp4").json()["tracks"]
    open_and_upload(page, web, media / "two_people.mp4")
    page.wait_for_selector("#result:not([hidden])")
    assert page.get_attribute("#verdict", "data-verdict") in ("fake", "real")
    assert page.is_hidden("#evidence")
    assert page.is_visible("#people-block")
    people = page.locator("#people li")
    assert people.count() == 2
    texts = [people.nth(i).inner_text() for i in range(2)]
    assert texts[0].startswith("Person 1: ") and texts[1].startswith("Person 2: "), texts
    for i, text in enumerate(texts):
        verdict = people.nth(i).get_attribute("data-verdict")
        assert verdict == tracks[i]["verdict"]
        assert text == (f"Person {i + 1}: {'Likely fake' if verdict == 'fake' else 'Likely real'} "
                        f"({tracks[i]['fake_probability']:.3f}, {FRAMES} frames)"), text
    assert page.inner_text("#frames") == f"{FRAMES} of {FRAMES} sampled frames with a face"
    captions = page.locator("#faces figcaption").all_inner_texts()
    assert len(captions) == 2 * FRAMES
    # Frame by frame, person 1's face then person 2's (the thumbnails line up by person).
    assert [c.rsplit(" · ", 1)[-1] for c in captions] == ["person 1", "person 2"] * FRAMES, captions
    page.screenshot(path=str(OUTPUT / "web-two-people.png"), full_page=True)


def test_page_corrupt_file_shows_the_error(page, web, media):
    open_and_upload(page, web, media / "corrupt.mp4")
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    assert message.startswith("Could not analyse corrupt.mp4: the file's content is MP4 video"), message
    assert page.is_hidden("#result") and page.is_hidden("#progress")
    page.screenshot(path=str(OUTPUT / "web-error.png"), full_page=True)
    # The page (and the server) still work for the next file.
    page.set_input_files("#file", str(media / "face.jpg"))
    page.wait_for_selector("#result:not([hidden])")
    assert page.is_hidden("#error")
