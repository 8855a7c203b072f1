"""The thin client: its own install (`make install-client`, no TensorFlow) runs `dfdetect predict`
against `make deploy`, and in the full install the client never imports TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from conftest import face_frames
from dfdetect.tooling import free_port
from dfdetect.faces.frames import write_video

ROOT = Path(__file__).resolve().parents[1]
SIZE_LIMIT_MB = 500
HEAVY = {"tensorflow", "tensorflow-cpu", "tensorflow-intel", "keras", "tf-keras", "tensorflow-serving-api",
         "tensorboard", "tf2onnx"}


def _make(*args, timeout=600):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory):
    """A fresh virtual environment with the client install alone, as `make install-client` makes it."""
    venv = tmp_path_factory.mktemp("thin") / "venv"
    result = _make("install-client", f"CLIENT_VENV={venv}")
    assert result.returncode == 0, f"make install-client failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    return venv


@pytest.fixture(scope="module")
def deployment(tiny_export, tmp_path_factory):
    """`make deploy` of the tiny model (no web page): (gRPC port, REST port)."""
    _, repository, _ = tiny_export
    state = tmp_path_factory.mktemp("deploy-state")
    grpc_port, rest_port = free_port(), free_port()
    up = _make("deploy", f"MODEL_REPOSITORY={repository}", f"GRPC_PORT={grpc_port}", f"REST_PORT={rest_port}",
               "WEB_PORT=0", f"DEPLOY_STATE={state}", timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield grpc_port, rest_port
    finally:
        down = _make("undeploy", f"DEPLOY_STATE={state}", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture(scope="module")
def media(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("thin-media")
    photo = photos["astronaut"]
    cv2.imwrite(str(folder / "face.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    write_video(folder / "clip.mp4", face_frames(photo, 12), fps=10.0)
    return folder


def test_client_install_has_no_tensorflow_and_fits(client_venv):
    listed = subprocess.run([str(client_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "dfdetect" in names
    assert not names & HEAVY, f"the client install pulled in {sorted(names & HEAVY)}"
    size = sum(f.stat().st_size for f in client_venv.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"client install: {size / 1e6:.0f} MB, {len(names)} packages")
    assert size <= SIZE_LIMIT_MB * 1e6, f"the client install takes {size / 1e6:.0f} MB (limit {SIZE_LIMIT_MB} MB)"


def test_client_install_predicts_against_make_deploy(client_venv, deployment, media):
    grpc_port, rest_port = deployment
    dfdetect = str(client_venv / "bin" / "dfdetect")
    inputs = [str(media / "face.jpg"), str(media / "clip.mp4")]
    env = {**os.environ, "DFDETECT_CACHE": str(client_venv.parent / "cache")}
    answers = {}
    for name, flags in (("grpc", ["--server", f"127.0.0.1:{grpc_port}"]),
                        ("rest", ["--rest", "--server", f"127.0.0.1:{rest_port}"])):
        result = subprocess.run([dfdetect, "predict", *inputs, *flags, "--json", "--no-progress"],
                                capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, f"{name}: {result.stdout}\n{result.stderr[-3000:]}"
        answers[name] = json.loads(result.stdout)
    for name, results in answers.items():
        assert [r["source"] for r in results] == inputs, name
        for item in results:
            assert item["verdict"] in ("real", "fake"), (name, item)  # a face found and scored
            assert item["model_version"] == 1, (name, item)
    assert [r["fake_probability"] for r in answers["grpc"]] == \
        pytest.approx([r["fake_probability"] for r in answers["rest"]], abs=1e-6)


def test_other_stages_in_the_client_install_name_their_extra(client_venv):
    for command, extra in (("train", "train"), ("serve", "serve"), ("web", "web")):
        args = [str(client_venv / "bin" / "dfdetect"), command]
        if command == "serve":
            args += ["--model_base_path", str(client_venv)]
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert f"pip install 'dfdetect[{extra}]'" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_client_web_and_load_tests_leave_tensorflow_unimported(deployment, media):
    """In the full install too: detecting faces and calling Predict over gRPC and REST, and
    importing the web app and the gRPC load test user, never load TensorFlow."""
    grpc_port, rest_port = deployment
    script = f"""
import sys
sys.path.insert(0, {str(ROOT / 'loadtests')!r})
from dfdetect.client import DeepfakeClient, connect
for transport, port in (("grpc", {grpc_port}), ("rest", {rest_port})):
    with DeepfakeClient(connect(f"127.0.0.1:{{port}}", transport=transport)) as client:
        for path in ({str(media / 'face.jpg')!r}, {str(media / 'clip.mp4')!r}):
            result = client.analyze(path)
            assert result.faces > 0, (transport, path, result.verdict)
import dfdetect.web.app
import grpc_user
heavy = sorted(m for m in ("tensorflow", "keras", "tensorflow_serving", "mtcnn") if m in sys.modules)
print("imported:", heavy)
sys.exit(1 if heavy else 0)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
