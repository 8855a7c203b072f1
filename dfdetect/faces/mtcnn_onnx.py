"""MTCNN on ONNX Runtime: the face detector, without TensorFlow.

The ``mtcnn`` wheel ships the weights of its three networks (P-Net, R-Net, O-Net) as plain numpy
arrays (``mtcnn/assets/weights/*.lz4``, joblib with lz4). They are read from the installed
package without importing it (``import mtcnn`` loads TensorFlow), built into ONNX graphs with the
``onnx`` package, and run with onnxruntime. The cascade around the networks (image pyramid, box
regression, non-maximum suppression, patch sampling, landmarks) is numpy and OpenCV, and follows
the package's own steps and thresholds, so both find the same faces (tests/test_mtcnn_onnx.py).

Every stage takes the frames of a batch together: P-Net runs once per pyramid scale on all of
them, R-Net and O-Net once on the candidate patches of all of them.

The graphs are built once per process (a few milliseconds from the weight arrays) and cached on
disk beside nothing in the repository: under ``$DFDETECT_CACHE`` (default
``~/.cache/dfdetect``), keyed by a hash of the weight files, so a cold start skips the build.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

NETWORKS = ("pnet", "rnet", "onet")
PATCH_SIZE = {"rnet": 24, "onet": 48}
GRAPH_VERSION = 2  # bump when the graphs built from the same weights change
CACHE_ENV = "DFDETECT_CACHE"

# The cascade's settings, as the mtcnn package has them.
PYRAMID_FACTOR = 0.709
WINDOW = 12  # P-Net's window: the smallest face it sees at scale 1
THRESHOLDS = {"pnet": 0.6, "rnet": 0.7, "onet": 0.8}
NMS_PNET_SCALE, NMS_PNET_ALL, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7


# --- the weights --------------------------------------------------------------------------------

def weights_dir() -> Path:
    """The folder of the installed ``mtcnn`` package's weight files (the package is not imported)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face detector needs the weights of the 'mtcnn' package, which is not installed "
                           "(pip install mtcnn==1.0.0: it ships them as numpy arrays)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "assets" / "weights"
    missing = [n for n in NETWORKS if not (folder / f"{n}.lz4").is_file()]
    if missing:
        raise RuntimeError(f"the installed mtcnn package has no {', '.join(missing)} weights under {folder}")
    return folder


def load_weights(network: str) -> list[np.ndarray]:
    """One network's weight arrays, in the order of its layers (kernel, bias, PReLU slope, ...)."""
    import joblib

    return [np.asarray(a, dtype=np.float32) for a in joblib.load(weights_dir() / f"{network}.lz4")]


# --- the graphs ---------------------------------------------------------------------------------

class _GraphBuilder:
    """ONNX nodes for the layers MTCNN uses; inputs NHWC (as Keras has them), computed NCHW."""

    def __init__(self, name: str, weights: list[np.ndarray]):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.name = name
        self.weights = iter(weights)
        self.nodes, self.initializers = [], []
        self._count = 0

    def _new(self, op: str) -> str:
        self._count += 1
        return f"{op.lower()}{self._count}"

    def _const(self, array: np.ndarray) -> str:
        name = f"w{len(self.initializers)}"
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self._new(op)
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x: str) -> str:
        kernel, bias = next(self.weights), next(self.weights)  # Keras: kh, kw, in, out
        return self.node("Conv", [x, self._const(kernel.transpose(3, 2, 0, 1)), self._const(bias)],
                         kernel_shape=list(kernel.shape[:2]))

    def _ints(self, values) -> str:
        name = f"i{len(self.initializers)}"
        self.initializers.append(self.numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def prelu(self, x: str, spatial: bool = True) -> str:
        slope = next(self.weights).reshape(-1)
        if not spatial:
            return self.node("PRelu", [x, self._const(slope)])
        # PReLU(y) = s*y + (1 - s)*relu(y), the per-channel factors as 1x1 depthwise convolutions:
        # onnxruntime runs those in its blocked layout, where its PRelu leaves it (2x faster
        # on R-Net and O-Net, measured).
        c = slope.size
        scaled = self.node("Conv", [x, self._const(slope.reshape(c, 1, 1, 1))], group=c, kernel_shape=[1, 1])
        rest = self.node("Conv", [self.node("Relu", [x]), self._const((1 - slope).reshape(c, 1, 1, 1))],
                         group=c, kernel_shape=[1, 1])
        return self.node("Add", [scaled, rest])

    def conv_prelu_pool_conv(self, x: str) -> str:
        """conv -> PReLU -> 2x2 max pool (SAME) -> conv, P-Net's first layers, with no pass of an
        elementwise op over the full-size maps (the costliest part of the network otherwise).

        With a slope s <= 1, PReLU(y) = max(y, s*y): pooling it is one max over the 2x2 window and
        the pair (y, s*y), a 3-D max pool over (pair, height, width) of a convolution that emits
        the pair. With s > 1 PReLU increases, so it commutes with the pool: PReLU(M) =
        s*M - (s - 1)*max(M, 0), M pooled from the pair (y, y) and max(M, 0) from (y, 0); the
        second convolution, linear, takes that combination into its weights. Exact up to float
        rounding."""
        kernel, bias, slope = next(self.weights), next(self.weights), next(self.weights).reshape(-1)
        w = kernel.transpose(3, 2, 0, 1)  # out, in, kh, kw
        weights, biases = [], []  # the first convolution's output channels, in pairs
        mix = []  # mix[c]: the (pooled channel, factor) terms that make PReLU'd, pooled channel c
        pooled = 0
        for c, s in enumerate(slope):
            if s <= 1:
                weights += [w[c], s * w[c]]
                biases += [bias[c], s * bias[c]]
                mix.append([(pooled, 1.0)])
                pooled += 1
            else:
                weights += [w[c], w[c], w[c], 0 * w[c]]
                biases += [bias[c], bias[c], bias[c], 0.0]
                mix.append([(pooled, float(s)), (pooled + 1, 1.0 - float(s))])
                pooled += 2
        y = self.node("Conv", [x, self._const(np.stack(weights)), self._const(np.asarray(biases, np.float32))],
                      kernel_shape=list(kernel.shape[:2]))
        spatial = self.node("Slice", [self.node("Shape", [y]), self._ints([2]), self._ints([4])])
        pairs = self.node("Reshape", [y, self.node("Concat", [self._ints([0, pooled, 2]), spatial], axis=0)])
        pooled_maps = self.node("MaxPool", [pairs], kernel_shape=[2, 2, 2], strides=[2, 2, 2], auto_pad="SAME_UPPER")
        z = self.node("Squeeze", [pooled_maps, self._ints([2])])
        kernel2, bias2 = next(self.weights), next(self.weights)
        w2 = kernel2.transpose(3, 2, 0, 1)
        remapped = np.zeros((w2.shape[0], pooled, *w2.shape[2:]), np.float32)
        for c, parts in enumerate(mix):
            for index, factor in parts:
                remapped[:, index] += factor * w2[:, c]
        return self.node("Conv", [z, self._const(remapped), self._const(bias2)], kernel_shape=list(kernel2.shape[:2]))

    def max_pool(self, x: str, size: int, same: bool) -> str:
        # TensorFlow's SAME pads at the end when the padding is odd, as SAME_UPPER does.
        return self.node("MaxPool", [x], kernel_shape=[size, size], strides=[2, 2],
                         auto_pad="SAME_UPPER" if same else "VALID")

    def dense(self, x: str) -> str:
        kernel, bias = next(self.weights), next(self.weights)
        return self.node("Gemm", [x, self._const(kernel), self._const(bias)])

    def flatten_as_keras(self, x: str) -> str:
        # Keras permutes (height, width) before flattening: its dense weights expect (w, h, c) order.
        return self.node("Flatten", [self.node("Transpose", [x], perm=[0, 3, 2, 1])], axis=1)

    def model(self, image: str, outputs: list[tuple[str, str, int]], size: int | None):
        from onnx import TensorProto

        helper = self.helper
        dims = ["n", size or "h", size or "w", 3]
        for source, name, _ in outputs:
            self.nodes.append(helper.make_node("Identity", [source], [name]))
        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info(image, TensorProto.FLOAT, dims)],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", channels] if size else
                                           ["n", channels, "map_h", "map_w"]) for _, name, channels in outputs],
            initializer=self.initializers)
        leftover = next(self.weights, None)
        if leftover is not None:
            raise RuntimeError(f"{self.name}: weights left over after the last layer ({leftover.shape})")
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                  producer_name="dfdetect", producer_version=str(GRAPH_VERSION))
        model.ir_version = 8  # what every onnxruntime of the last years reads
        return model


def build_graph(network: str, weights: list[np.ndarray] | None = None):
    """The ONNX model of one network. Input ``image``: normalized pixels, NHWC float32.

    Outputs: P-Net ``regression`` [N, 4, h, w] and ``probability`` [N, 2, h, w] (a face map);
    R-Net ``regression`` [N, 4] and ``probability`` [N, 2]; O-Net also ``landmarks`` [N, 10].
    """
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}")
    g = _GraphBuilder(network, load_weights(network) if weights is None else weights)
    x = g.node("Transpose", ["image"], perm=[0, 3, 1, 2])
    if network == "pnet":
        x = g.prelu(g.conv(g.prelu(g.conv_prelu_pool_conv(x))))
        regression = g.conv(x)
        probability = g.node("Softmax", [g.conv(x)], axis=1)
        return g.model("image", [(regression, "regression", 4), (probability, "probability", 2)], None)
    if network == "rnet":
        x = g.max_pool(g.prelu(g.conv(x)), 3, same=True)
        x = g.max_pool(g.prelu(g.conv(x)), 3, same=False)
        x = g.prelu(g.dense(g.flatten_as_keras(g.prelu(g.conv(x)))), spatial=False)
        regression = g.dense(x)
        probability = g.node("Softmax", [g.dense(x)], axis=1)
        return g.model("image", [(regression, "regression", 4), (probability, "probability", 2)], 24)
    x = g.max_pool(g.prelu(g.conv(x)), 3, same=True)
    x = g.max_pool(g.prelu(g.conv(x)), 3, same=False)
    x = g.max_pool(g.prelu(g.conv(x)), 2, same=True)
    x = g.prelu(g.dense(g.flatten_as_keras(g.prelu(g.conv(x)))), spatial=False)
    regression, landmarks = g.dense(x), g.dense(x)
    probability = g.node("Softmax", [g.dense(x)], axis=1)
    return g.model("image", [(regression, "regression", 4), (landmarks, "landmarks", 10),
                             (probability, "probability", 2)], 48)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dfdetect") / "mtcnn"


def _weights_key() -> str:
    digest = hashlib.sha256(f"graph-v{GRAPH_VERSION}".encode())
    for network in NETWORKS:
        digest.update((weights_dir() / f"{network}.lz4").read_bytes())
    return digest.hexdigest()[:16]


def graph_bytes(network: str) -> bytes:
    """The serialized ONNX model of one network: from the disk cache, else built (and cached)."""
    path = cache_dir() / _weights_key() / f"{network}.onnx"
    try:
        return path.read_bytes()
    except OSError:
        pass
    data = build_graph(network).SerializeToString()
    try:  # the cache is a convenience: a read-only home still detects faces
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        log.debug("face detector graphs not cached in %s: %s", path.parent, e)
    return data


@functools.lru_cache(maxsize=None)
def _sessions(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return {n: ort.InferenceSession(graph_bytes(n), options, providers=["CPUExecutionProvider"]) for n in NETWORKS}


# --- the cascade --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RawFace:
    """A face as the cascade finds it, in the pixels of the image it was given."""

    box: tuple[int, int, int, int]  # x, y, width, height
    confidence: float
    landmarks: tuple[tuple[float, float], ...]  # left eye, right eye, nose, mouth left, mouth right


def pyramid_scales(width: int, height: int, min_face_size: int) -> np.ndarray:
    """The scales P-Net runs at: the smallest face maps onto its 12 px window, then x0.709 per step."""
    count = round(-((np.log(min(width, height) / WINDOW) / np.log(PYRAMID_FACTOR)) + 1))
    return (WINDOW / min_face_size) * PYRAMID_FACTOR ** np.arange(max(0, count))


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, most confident first.

    ``union``: overlap is intersection over union; ``min``: over the smaller box (drops a box
    inside a bigger one, as for the final faces)."""
    if method == "union" and len(boxes) > 1:  # OpenCV's greedy NMS: the same boxes, 5x faster
        xywh = np.column_stack([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]])
        kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, threshold)
        return np.asarray(kept, dtype=np.int64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        overlap = np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _nms_per_image(rows: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """NMS within each image of a batch; rows are [image, x1, y1, x2, y2, score, ...]."""
    if not len(rows):
        return rows
    kept = []
    for image in np.unique(rows[:, 0]):
        sub = rows[rows[:, 0] == image]
        kept.append(sub[nms(sub[:, 1:5], sub[:, 5], threshold, method)])
    return np.concatenate(kept)


def _square(rows: np.ndarray) -> np.ndarray:
    rows = rows.copy()
    w, h = rows[:, 3] - rows[:, 1], rows[:, 4] - rows[:, 2]
    side = np.maximum(w, h)
    rows[:, 1] += w * 0.5 - side * 0.5
    rows[:, 2] += h * 0.5 - side * 0.5
    rows[:, 3] = rows[:, 1] + side
    rows[:, 4] = rows[:, 2] + side
    return rows


def _refine(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    rows = rows.copy()
    w = rows[:, 3] - rows[:, 1] + 1
    h = rows[:, 4] - rows[:, 2] + 1
    rows[:, 1:5] += offsets * np.stack([w, h, w, h], axis=1)
    return rows


def normalize(pixels: np.ndarray) -> np.ndarray:
    """Pixels as the networks take them: 0..255 -> about -1..1, float32."""
    return (pixels.astype(np.float32) - 127.5) * np.float32(1 / 128)


def sample_patches(images: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """Bilinear size x size patches of the boxes in ``rows`` ([image, x1, y1, x2, y2, ...]) of
    uint8 images, normalized: sampled on the grid TensorFlow's crop_and_resize uses for boxes
    given as x / width and y / height; outside the image, mid-grey (0 once normalized)."""
    _, height, width, _ = images.shape
    patches = np.empty((len(rows), size, size, 3), np.uint8)
    step = 1.0 / (size - 1)
    for k, (image, x1, y1, x2, y2) in enumerate(rows[:, :5]):
        # Box corners in pixels -> the normalised coordinates crop_and_resize takes -> the affine
        # map from patch pixels to image pixels.
        ax, bx = x1 / width * (width - 1), x2 / width * (width - 1)
        ay, by = y1 / height * (height - 1), y2 / height * (height - 1)
        matrix = np.array([[(bx - ax) * step, 0.0, ax], [0.0, (by - ay) * step, ay]])
        cv2.warpAffine(images[int(image)], matrix, (size, size), dst=patches[k],
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=(128, 128, 128))
    return normalize(patches)


class OnnxMTCNN:
    """The three-stage cascade, batched, on onnxruntime. Safe to call from one thread at a time.

    ``threads``: onnxruntime's intra-op threads (0: its default, every core).
    """

    def __init__(self, threads: int = 0):
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0: onnxruntime's default), got {threads}")
        self.threads = threads
        self._nets = _sessions(threads)

    def _run(self, network: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        session = self._nets[network]
        outputs = [o.name for o in session.get_outputs()]
        return dict(zip(outputs, session.run(outputs, {"image": batch})))

    def detect(self, images: list[np.ndarray], min_face_size: int = 20) -> list[list[RawFace]]:
        """The faces in each RGB uint8 image with the cascade's confidence (O-Net's, > 0.8).

        Images of one shape go through each stage together; other shapes go in their own batch."""
        results: list[list[RawFace] | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected RGB uint8 images of shape (height, width, 3), got {image.dtype} "
                                 f"{image.shape}")
            groups.setdefault(image.shape, []).append(i)
        for indices in groups.values():
            batch = np.stack([images[i] for i in indices])
            for i, faces in zip(indices, self._detect_batch(batch, min_face_size)):
                results[i] = faces
        return results  # type: ignore[return-value]

    def _detect_batch(self, frames: np.ndarray, min_face_size: int) -> list[list[RawFace]]:
        count, height, width, _ = frames.shape
        rows = self._proposals(frames, min_face_size)
        if len(rows):
            out = self._run("rnet", sample_patches(frames, rows, PATCH_SIZE["rnet"]))
            rows[:, 5] = out["probability"][:, 1]
            rows = _refine(rows, out["regression"])
            rows = rows[rows[:, 5] > THRESHOLDS["rnet"]]
            rows = _square(_nms_per_image(rows, NMS_RNET))
        landmarks = np.zeros((0, 10))
        if len(rows):
            out = self._run("onet", sample_patches(frames, rows, PATCH_SIZE["onet"]))
            w = rows[:, 3:4] - rows[:, 1:2] + 1
            h = rows[:, 4:5] - rows[:, 2:3] + 1
            marks = out["landmarks"].astype(np.float64)
            marks = np.concatenate([w * marks[:, :5] + rows[:, 1:2] - 1, h * marks[:, 5:] + rows[:, 2:3] - 1], axis=1)
            rows[:, 5] = out["probability"][:, 1]
            rows = np.concatenate([_refine(rows, out["regression"]), marks], axis=1)
            rows = rows[rows[:, 5] > THRESHOLDS["onet"]]
            rows = _nms_per_image(rows, NMS_ONET, "min")
            landmarks = rows[:, 6:16]
        faces: list[list[RawFace]] = [[] for _ in range(count)]
        for row, marks in zip(rows, landmarks):
            x1, x2 = np.clip(row[[1, 3]], 0, width - 1)
            y1, y2 = np.clip(row[[2, 4]], 0, height - 1)
            box = tuple(int(v) for v in np.round([x1, y1, x2 - x1, y2 - y1]))
            if box[2] <= 0 or box[3] <= 0:
                continue
            points = tuple((float(marks[k]), float(marks[k + 5])) for k in range(5))
            faces[int(row[0])].append(RawFace(box=box, confidence=float(row[5]), landmarks=points))
        for found in faces:
            found.sort(key=lambda f: -f.confidence)
        return faces

    def _proposals(self, frames: np.ndarray, min_face_size: int) -> np.ndarray:
        """P-Net over the pyramid: candidate squares [image, x1, y1, x2, y2, score]."""
        count, height, width, _ = frames.shape
        found = []
        for scale in pyramid_scales(width, height, min_face_size):
            h, w = int(height * scale), int(width * scale)
            if min(h, w) < WINDOW:
                break
            scaled = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
            out = self._run("pnet", normalize(scaled))
            score = out["probability"][:, 1]
            image, y, x = np.nonzero(score > THRESHOLDS["pnet"])
            if not image.size:
                continue
            reg = out["regression"][image, :, y, x]  # [k, 4]: x1, y1, x2, y2 offsets
            cell = WINDOW - 1
            rows = np.stack([image, 2 * x + 1 + reg[:, 0] * cell, 2 * y + 1 + reg[:, 1] * cell,
                             2 * x + WINDOW + reg[:, 2] * cell, 2 * y + WINDOW + reg[:, 3] * cell,
                             score[image, y, x]], axis=1).astype(np.float64)
            rows[:, 1:5] /= scale
            found.append(_nms_per_image(rows, NMS_PNET_SCALE))
        if not found:
            return np.zeros((0, 6))
        return _square(_nms_per_image(np.concatenate(found), NMS_PNET_ALL))
