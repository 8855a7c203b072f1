"""Shared fixtures: real photographs of faces, tiny generated videos, one MTCNN detector."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real photograph of a face (RGB), shipped inside scikit-image."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def photos():
    from dfdetect.samples import face_photographs

    return dict(face_photographs())


@pytest.fixture(scope="session")
def detector():
    from dfdetect.faces.detection import FaceDetector

    return FaceDetector()


def face_frames(photo: np.ndarray, count: int, size=(320, 240)) -> list[np.ndarray]:
    """Frames of a face photograph panning slowly: MTCNN finds the face in each."""
    w, h = size
    frames = []
    for i in range(count):
        scale = h / photo.shape[0] * 1.6
        m = np.float32([[scale, 0, -60 * scale + 2 * i], [0, scale, -10 * scale]])
        frames.append(cv2.warpAffine(photo, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    return frames


def blank_frames(count: int, size=(320, 240)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.full((size[1], size[0], 3), 90 + i, np.uint8) + rng.integers(0, 5, (size[1], size[0], 3), dtype=np.uint8)
            for i in range(count)]


def write_dfdc(root: Path, videos: dict[str, dict], frames: dict[str, list[np.ndarray]] | None = None,
               fps: float = 10.0) -> Path:
    """A DFDC-layout folder: metadata.json plus an mp4 per entry (from ``frames`` or raw bytes)."""
    from dfdetect.faces.frames import write_video

    root.mkdir(parents=True, exist_ok=True)
    for name, content in (frames or {}).items():
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
        else:
            write_video(root / name, content, fps)
    (root / "metadata.json").write_text(json.dumps(videos))
    return root


def separable_crops(label: int, count: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Generated face-crop stand-ins a small model separates in a few steps: fakes carry a fine
    checkerboard (a blending-like high-frequency trace), reals are smooth."""
    yy, xx = np.mgrid[0:size, 0:size]
    crops = []
    for _ in range(count):
        base = rng.uniform(60, 190) + 20 * np.sin(xx / size * rng.uniform(1, 4)) + 20 * np.cos(yy / size * 3)
        image = np.repeat(base[..., None], 3, axis=2) + rng.normal(0, 4, (size, size, 3))
        if label == 1:
            image += 45 * (((xx // 2 + yy // 2) % 2)[..., None] - 0.5)
        crops.append(np.clip(image, 0, 255).astype(np.uint8))
    return crops


def write_prepared(root: Path, videos: dict[str, tuple[int, str, list[np.ndarray]]]) -> Path:
    """A prepared-data folder (records + manifest.json) as `dfdetect prepare` writes it, from
    ``{video_id: (label, split, crops)}``: one frame per crop, one face per frame."""
    import tensorflow as tf

    from dfdetect.faces.detection import Face
    from dfdetect.records import face_example

    manifest = {"complete": True, "videos_done": len(videos), "videos_expected": len(videos), "videos": {}}
    for vid, (label, split, crops) in videos.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        record = f"{split}/{vid}.tfrecord"
        with tf.io.TFRecordWriter(str(root / record)) as writer:
            for i, crop in enumerate(crops):
                face = Face(frame_index=i, timestamp=i / 10, face_index=0, box=(0, 0, 10, 10), confidence=0.99,
                            crop=crop)
                writer.write(face_example(face, label, vid, f"g-{vid}"))
        manifest["videos"][vid] = {"split": split, "label": label, "group": f"g-{vid}", "kind": "video",
                                   "frames": len(crops), "frames_without_face": 0, "faces": len(crops),
                                   "record": record}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def separable_dataset(root: Path, size: int = 32, per_video: int = 6, seed: int = 0,
                      videos: dict[str, int] | None = None) -> Path:
    """A tiny separable prepared dataset: videos per split (default train 6+6, val 2+2, test 2+2)."""
    rng = np.random.default_rng(seed)
    videos = videos or {"train": 6, "val": 2, "test": 2}
    spec = {}
    for split, n in videos.items():
        for label in (0, 1):
            for k in range(n):
                spec[f"{split}_{'fake' if label else 'real'}_{k}"] = (label, split,
                                                                      separable_crops(label, per_video, size, rng))
    return write_prepared(root, spec)


TINY_TRAINING = ["model.image_size=32", "model.dense_units=[16]", "model.batchnorm_momentum=0.5",
                 "data.batch_size=16", "data.augment=false", "data.sbi_rate=0", "train.learning_rate=0.002",
                 "eval.batch_size=32"]


@pytest.fixture(scope="session")
def separable_prepared(tmp_path_factory):
    return separable_dataset(tmp_path_factory.mktemp("separable"))


@pytest.fixture(scope="session")
def tiny_run(separable_prepared, tmp_path_factory):
    """A tiny model trained (through the command line) for a few epochs on separable data, then
    calibrated and evaluated: its outputs vary, so exports and servers can be checked on it."""
    from dfdetect.cli import main
    from dfdetect.runs import latest_run

    runs = tmp_path_factory.mktemp("runs")
    sets = [*TINY_TRAINING, f"data.prepared={separable_prepared}", f"runs_dir={runs}", "train.epochs=6"]
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    return latest_run(runs)


@pytest.fixture(scope="session")
def tiny_export(tiny_run, tmp_path_factory):
    """The tiny run exported (SavedModel + ONNX twin) into a fresh model repository."""
    from dfdetect.export.exporter import export_run

    repository = tmp_path_factory.mktemp("model_repository")
    models_config = tmp_path_factory.mktemp("serving") / "models.config"
    models_config.write_text('model_config_list { config { name: "deepfake" base_path: "/models/deepfake" '
                             'model_platform: "tensorflow" } }\n')
    result = export_run(tiny_run, str(repository), models_config=models_config)
    return result, repository, models_config


@pytest.fixture(scope="session")
def model(tiny_export):
    """The tiny exported model: (version folder, its model card, the model's folder of versions)."""
    from dfdetect.contract import MODEL_CARD_FILE

    result, repository, _ = tiny_export
    version_dir = Path(result.path)
    return version_dir, json.loads((version_dir / MODEL_CARD_FILE).read_text()), repository / "deepfake"


# --- serving ------------------------------------------------------------------------------------

def start_server(**options):
    """The local model server, in this process, on free loopback ports."""
    from dfdetect.serving.server import ModelServer, ServerOptions

    defaults = dict(port=0, rest_api_port=0, host="127.0.0.1", model_name="deepfake")
    return ModelServer(ServerOptions(**{**defaults, **options})).start()


def generic_savedmodel(path: Path) -> Path:
    """A SavedModel that is not dfdetect's: two signatures, several inputs and outputs, strings."""
    import tensorflow as tf

    class Generic(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def half_plus_two(self, x):
            return {"y": x * 0.5 + 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="a"),
                                      tf.TensorSpec([None], tf.string, name="text")])
        def mixed(self, a, text):
            return {"doubled": a * 2.0, "length": tf.strings.length(text), "echo_bytes": text}

    module = Generic()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.half_plus_two,
                                                        "mixed": module.mixed})
    return path
