"""The ONNX Runtime MTCNN against the mtcnn package it is built from: same faces, no TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dfdetect.faces import mtcnn_onnx
from dfdetect.faces.mtcnn_onnx import OnnxMTCNN, nms
from dfdetect.faces.tracks import box_iou as iou


def scenes(photos) -> list[np.ndarray]:
    """Frames with the demo faces at several sizes, positions and lightings, on two frame sizes."""
    out = []
    rng = np.random.default_rng(3)
    for name, photo in photos.items():
        for (width, height), face_share, light in [((640, 360), 0.9, 1.0), ((640, 360), 0.45, 0.55),
                                                    ((640, 360), 0.3, 1.3), ((320, 240), 0.7, 0.8),
                                                    ((320, 240), 1.0, 1.0), ((640, 360), 0.6, 0.35)]:
            scale = height * face_share / photo.shape[0]
            small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            canvas = np.full((height, width, 3), rng.integers(40, 200), np.uint8)
            x = int(rng.integers(0, max(1, width - small.shape[1])))
            y = int(rng.integers(0, max(1, height - small.shape[0])))
            part = small[:height - y, :width - x]
            canvas[y:y + part.shape[0], x:x + part.shape[1]] = part
            out.append(np.clip(canvas.astype(np.float32) * light, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def package_mtcnn():
    from mtcnn import MTCNN  # the package itself: TensorFlow, only in the test environment

    return MTCNN(stages="face_and_landmarks_detection", device="CPU:0")


@pytest.fixture(scope="module")
def onnx_mtcnn():
    return OnnxMTCNN()


def test_same_faces_as_the_mtcnn_package(photos, package_mtcnn, onnx_mtcnn):
    frames = scenes(photos)
    compared = 0
    for k, frame in enumerate(frames):
        ours = [(f.box, f.confidence) for f in onnx_mtcnn.detect([frame])[0]]
        theirs = [(tuple(int(v) for v in f["box"]), float(f["confidence"]))
                  for f in package_mtcnn.detect_faces([frame], min_face_size=20)[0]]
        for found, other, who in ((ours, theirs, "ours"), (theirs, ours, "the package's")):
            for box, confidence in found:
                if confidence <= 0.9:
                    continue
                match = max(other, key=lambda o: iou(box, o[0]), default=None)
                assert match is not None and iou(box, match[0]) >= 0.9, \
                    f"frame {k}: {who} face {box} ({confidence:.3f}) has no match in {other}"
                assert abs(confidence - match[1]) <= 0.01, f"frame {k}: {box} {confidence:.4f} vs {match}"
                compared += 1
    assert compared >= len(frames), f"only {compared} faces above 0.9 in {len(frames)} frames with a face"


@pytest.mark.parametrize("network", mtcnn_onnx.NETWORKS)
def test_each_graph_computes_the_package_network(network):
    """Layer for layer the same function as the package's Keras network (the graphs pool before
    their PReLU, fold the normalization into the first convolution, pad channels and join
    P-Net's heads: exact up to float rounding), on random pixels of odd and even sizes."""
    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet

    keras_model = {"pnet": PNet, "rnet": RNet, "onet": ONet}[network]()
    keras_model.build()
    keras_model.set_weights(mtcnn_onnx.load_weights(network))
    import onnxruntime as ort

    session = ort.InferenceSession(mtcnn_onnx.build_graph(network).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    sizes = [(37, 50), (64, 31), (12, 12)] if network == "pnet" else [(mtcnn_onnx.PATCH_SIZE[network],) * 2]
    for height, width in sizes:
        pixels = rng.integers(0, 256, (5, height, width, 3), dtype=np.uint8)
        theirs = [np.asarray(t) for t in keras_model((pixels.astype(np.float32) - 127.5) / 128)]
        ours = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": pixels})))
        if network == "pnet":
            regression, probability = theirs
            maps = ours["maps"].transpose(0, 2, 3, 1)
            np.testing.assert_allclose(maps[..., :4], regression, atol=1e-4)
            np.testing.assert_allclose(1 / (1 + np.exp(-maps[..., 4])), probability[..., 1], atol=1e-5)
        else:
            names = ["regression", "landmarks", "probability"] if network == "onet" else ["regression", "probability"]
            for name, expected in zip(names, theirs):
                np.testing.assert_allclose(ours[name], expected, atol=1e-4, err_msg=f"{network} {name}")


def test_a_batch_finds_what_single_frames_find(photos, onnx_mtcnn):
    frames = [f for f in scenes(photos) if f.shape[:2] == (360, 640)]
    batched = onnx_mtcnn.detect(frames)
    single = [onnx_mtcnn.detect([f])[0] for f in frames]
    assert [[f.box for f in faces] for faces in batched] == [[f.box for f in faces] for faces in single]
    for a, b in zip(batched, single):
        assert np.allclose([f.confidence for f in a], [f.confidence for f in b], atol=1e-5)


def test_mixed_frame_sizes_in_one_call(photos, onnx_mtcnn):
    frames = scenes(photos)
    assert len({f.shape for f in frames}) == 2
    assert [[f.box for f in x] for x in onnx_mtcnn.detect(frames)] == \
           [[f.box for f in onnx_mtcnn.detect([f])[0]] for f in frames]


def test_calls_split_to_fit_the_cache_give_the_same_faces(photos, onnx_mtcnn, monkeypatch):
    frames = [f for f in scenes(photos) if f.shape[:2] == (360, 640)]
    monkeypatch.setattr(mtcnn_onnx, "CALL_MAPS_BYTES", 1 << 40)  # every batch in one call
    whole = onnx_mtcnn.detect(frames)
    monkeypatch.setattr(mtcnn_onnx, "CALL_MAPS_BYTES", 1)  # an image a call
    split = onnx_mtcnn.detect(frames)
    assert sum(map(len, whole)) >= len(frames) // 2
    assert [[f.box for f in x] for x in split] == [[f.box for f in x] for x in whole]
    for a, b in zip(split, whole):
        assert np.allclose([f.confidence for f in a], [f.confidence for f in b], atol=1e-5)


def test_pyramid_levels_are_area_resizes_of_the_frame(photos):
    """Either way a level is made (OpenCV's resize, or the integral image for small levels), it is
    the frame's area resize rounded: off by one only where the mean sits on a half."""
    frame = scenes(photos)[0]
    frame[::7] = np.random.default_rng(1).integers(0, 256, frame[::7].shape)  # sharp edges everywhere
    sizes = [(int(640 * s), int(360 * s)) for s in mtcnn_onnx.pyramid_scales(640, 360, 20) if int(360 * s) >= 12]
    assert {h > mtcnn_onnx.AreaPyramid.INTEGRAL_ROWS for _, h in sizes} == {True, False}
    levels = [np.zeros((h, w, 3), np.uint8) for w, h in sizes]
    pyramid = mtcnn_onnx.AreaPyramid()
    pyramid.fill(np.zeros_like(frame), levels)  # the scratch of an earlier frame leaves nothing behind
    pyramid.fill(frame, levels)
    for (w, h), level in zip(sizes, levels):
        exact = cv2.resize(frame.astype(np.float64), (w, h), interpolation=cv2.INTER_AREA)
        off = np.abs(level.astype(np.float64) - exact)
        assert off.max() <= 0.5 + 1e-4, f"{w}x{h}: {off.max()} from the area mean"  # OpenCV sums in float32


def test_patches_are_bilinear_samples_of_their_boxes():
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 1, (3, 40, 60, 3))
    smooth = np.stack([cv2.GaussianBlur(n, (0, 0), 4) for n in noise])  # steps of about 8 levels a pixel
    images = np.clip(128 + smooth / smooth.std() * 60, 0, 255).astype(np.uint8)
    rows = np.array([[0, 5.0, 4.0, 30.0, 29.0], [2, -8.0, 20.0, 20.0, 52.0], [0, 40.5, 1.25, 70.0, 33.0],
                     [1, 0.0, 0.0, 60.0, 40.0], [2, 10.0, 10.0, 13.0, 13.5]])
    patches = mtcnn_onnx.sample_patches(images, rows, 24)
    assert patches.shape == (5, 24, 24, 3) and patches.dtype == np.uint8
    padded = np.pad(images.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=128)
    grid = np.arange(24) / 23
    for patch, (image, x1, y1, x2, y2) in zip(patches, rows):
        # crop_and_resize's grid on boxes given as x / width, y / height; mid-grey outside the image
        xs = 1 + (x1 + (x2 - x1) * grid) * 59 / 60
        ys = 1 + (y1 + (y2 - y1) * grid) * 39 / 40
        x0 = np.clip(np.floor(xs).astype(int), 0, 60)
        y0 = np.clip(np.floor(ys).astype(int), 0, 40)
        fx, fy = np.clip(xs - x0, 0, 1)[None, :, None], np.clip(ys - y0, 0, 1)[:, None, None]
        src = padded[int(image)]
        top = src[y0][:, x0] * (1 - fx) + src[y0][:, x0 + 1] * fx
        bottom = src[y0 + 1][:, x0] * (1 - fx) + src[y0 + 1][:, x0 + 1] * fx
        expected = top * (1 - fy) + bottom * fy
        outside = (xs < 0) | (xs > 61)
        expected[:, outside] = 128
        expected[(ys < 0) | (ys > 41)] = 128
        off = np.abs(patch - expected).max()
        assert off <= 1.5, f"box {(x1, y1, x2, y2)}: {off} levels from the bilinear sample"  # OpenCV: 1/32-px steps


def test_a_crowd_of_patches_from_one_frame():
    """More patches of one frame than one OpenCV remap can make (its images have under 32767 rows)."""
    image = np.random.default_rng(4).integers(0, 256, (1, 37, 53, 3), np.uint8)
    for size in (24, 48):
        count = 32767 // size + 5
        rows = np.tile([0, 5.0, 4.0, 30.0, 29.0], (count, 1))
        rows[-1] = [0, 1.0, 2.0, 20.0, 21.0]
        patches = mtcnn_onnx.sample_patches(image, rows, size)
        assert patches.shape == (count, size, size, 3)
        assert (patches[:-1] == patches[0]).all() and not (patches[-1] == patches[0]).all()
        np.testing.assert_array_equal(patches[-1], mtcnn_onnx.sample_patches(image, rows[-1:], size)[0])


def test_landmarks_lie_in_the_face(photos, onnx_mtcnn):
    (face,) = onnx_mtcnn.detect([photos["astronaut"]])[0]
    x, y, w, h = face.box
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    for px, py in face.landmarks:
        assert x <= px <= x + w and y <= py <= y + h
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_nothing_in_a_faceless_frame(onnx_mtcnn):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    assert onnx_mtcnn.detect([np.full((360, 640, 3), 128, np.uint8), noise]) == [[], []]


def test_bad_images_are_refused(onnx_mtcnn):
    with pytest.raises(ValueError, match="RGB uint8"):
        onnx_mtcnn.detect([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match="RGB uint8"):
        onnx_mtcnn.detect([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match="min_face_size must be at least 12"):  # levels larger than the frame
        onnx_mtcnn.detect([np.zeros((40, 40, 3), np.uint8)], min_face_size=10)


def test_the_graphs_are_valid_onnx():
    import onnx

    for network in mtcnn_onnx.NETWORKS:
        onnx.checker.check_model(mtcnn_onnx.build_graph(network), full_check=True)
    with pytest.raises(ValueError, match="unknown network"):
        mtcnn_onnx.build_graph("qnet")


def test_greedy_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 5, 5]], np.float64)
    scores = np.array([0.9, 0.95, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    # Over the smaller box, the small box inside the first one goes too.
    assert nms(boxes, scores, 0.5, "min").tolist() == [1, 2]


def test_no_tensorflow_and_the_graphs_cached_on_disk(tmp_path, astronaut):
    """In a fresh process: faces found with neither TensorFlow nor the mtcnn package imported,
    the graphs written to the cache once, and read back by the next process."""
    np.save(tmp_path / "photo.npy", astronaut)
    script = (
        "import json, sys, numpy as np\n"
        "from dfdetect.faces.mtcnn_onnx import OnnxMTCNN\n"
        f"faces = OnnxMTCNN().detect([np.load({str(tmp_path / 'photo.npy')!r})])[0]\n"
        "print(json.dumps({'faces': len(faces), 'tensorflow': 'tensorflow' in sys.modules,\n"
        "                  'mtcnn': 'mtcnn' in sys.modules, 'keras': 'keras' in sys.modules}))\n")
    env = {**os.environ, mtcnn_onnx.CACHE_ENV: str(tmp_path / "cache")}
    first = json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                      check=True).stdout)
    assert first == {"faces": 1, "tensorflow": False, "mtcnn": False, "keras": False}
    cached = sorted(p.name for p in (tmp_path / "cache" / "mtcnn").glob("*/*.onnx"))
    assert cached == ["onet.onnx", "pnet.onnx", "rnet.onnx"]
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "mtcnn").glob("*/*.onnx")}
    second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert json.loads(second.stdout)["faces"] == 1
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp  # read, not rebuilt
