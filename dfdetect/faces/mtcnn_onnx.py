"""MTCNN on ONNX Runtime: the face detector, without TensorFlow.

The ``mtcnn`` wheel ships the weights of its three networks (P-Net, R-Net, O-Net) as plain numpy
arrays (``mtcnn/assets/weights/*.lz4``, joblib with lz4). They are read from the installed
package without importing it (``import mtcnn`` loads TensorFlow), built into ONNX graphs with the
``onnx`` package, and run with onnxruntime. The cascade around the networks (image pyramid, box
regression, non-maximum suppression, patch sampling, landmarks) is numpy and OpenCV, and follows
the package's own steps and thresholds, so both find the same faces (tests/test_mtcnn_onnx.py).

Every stage takes the frames of a batch together: P-Net runs per pyramid scale on all of them,
R-Net and O-Net on the candidate patches of all of them, each in calls of as many images as keep
the network's first maps in cache (``CALL_MAPS_BYTES``: P-Net's largest levels a frame a call).

The graphs compute the package's networks layer for layer (tested against its Keras models), in
a form onnxruntime runs fast on one core: uint8 pixels in, the normalization folded into the
first convolution, P-Net's first PReLU moved after its max pool (a quarter of the values), maps
padded to whole blocks of onnxruntime's blocked layout, P-Net's last PReLU and both heads as two
small convolutions of five maps (``make bench-faces`` measures it against the package).

The graphs are built once per process (a few milliseconds from the weight arrays) and cached on
disk beside nothing in the repository: under ``$DFDETECT_CACHE`` (default
``~/.cache/dfdetect``), keyed by a hash of the weight files and of this module, so a cold start
skips the build and a changed builder never reads an old graph.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dfdetect.faces.frames import FramePool

log = logging.getLogger(__name__)

NETWORKS = ("pnet", "rnet", "onet")
PATCH_SIZE = {"rnet": 24, "onet": 48}
GRAPH_VERSION = 4  # bump when the graphs built from the same weights change
CACHE_ENV = "DFDETECT_CACHE"

# The cascade's settings, as the mtcnn package has them.
PYRAMID_FACTOR = 0.709
WINDOW = 12  # P-Net's window: the smallest face it sees at scale 1
THRESHOLDS = {"pnet": 0.6, "rnet": 0.7, "onet": 0.8}
PNET_LOGIT = float(np.log(THRESHOLDS["pnet"] / (1 - THRESHOLDS["pnet"])))  # the face logit at P-Net's threshold
NMS_PNET_SCALE, NMS_PNET_ALL, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7
PIXEL_MEAN, PIXEL_SCALE = 127.5, 1 / 128  # the networks take (pixel - 127.5) / 128
# onnxruntime's blocked (NCHWc) layout takes maps of a multiple of its block's channels (8 with
# AVX2, 16 with AVX-512): other maps leave it, a reorder each way per layer (measured 20% of R-Net).
CHANNEL_BLOCK = 16
# Each network call takes as many images as keep its first (largest) maps, of FIRST_MAPS float
# channels, within CALL_MAPS_BYTES: beyond, the maps leave the core's cache. On one core (AVX-512,
# 1 MB L2 per core), P-Net at 384x216 took 5.2 ms a frame in calls of 8 frames and 4.1 in calls of
# one; R-Net 51 us a patch in calls of 128 and 44 in calls of 32; O-Net 320 in 32 and 284 in 8.
FIRST_MAPS = 32  # R-Net's and O-Net's; P-Net's 16 are counted as 32 (calls of one frame: as fast)
CALL_MAPS_BYTES = 2 << 20
# The pyramids' scratch kept between frames, in all (one a thread): 8 MB for a 640x360 frame (the
# resize rule's size for 1080p video), 33 MB for 1280x720 (4K video).
SCRATCH_KEPT_BYTES = 48 << 20
# OpenCV's remap makes images of fewer rows than this: a frame's patches go in calls of fewer.
REMAP_ROWS = 32767


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


# --- the graphs ------------------------------------------------------------------------------

def _blocks(channels: int) -> int:
    return -(-channels // CHANNEL_BLOCK) * CHANNEL_BLOCK


class _GraphBuilder:
    """ONNX nodes for the layers MTCNN uses; inputs NHWC (as Keras has them), computed NCHW."""

    def __init__(self, name: str, weights: list[np.ndarray]):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.name = name
        self.weights = iter(weights)
        self.nodes, self.initializers = [], []
        self._count = 0
        self._pixels = True  # the next convolution is the first: it takes the pixels
        self._padding = 0  # zero channels the next convolution's input has after the real ones

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
        return self._conv_op(x, kernel.transpose(3, 2, 0, 1), bias)

    def _conv_op(self, x: str, weights: np.ndarray, bias: np.ndarray) -> str:
        """A convolution (weights out, in, kh, kw). The first of a network takes the pixels
        (0..255) and does the networks' normalization, (p - 127.5) / 128, in its weights: exact,
        as every first layer is unpadded. One after ``conv_prelu_pool`` reads its padding
        channels with zero weights."""
        if self._pixels:
            self._pixels = False
            bias = bias - PIXEL_MEAN * PIXEL_SCALE * weights.sum(axis=(1, 2, 3))
            weights = weights * PIXEL_SCALE
        if self._padding:
            weights = np.concatenate([weights, np.zeros((weights.shape[0], self._padding, *weights.shape[2:]),
                                                        np.float32)], axis=1)
            self._padding = 0
        return self.node("Conv", [x, self._const(weights), self._const(bias)], kernel_shape=list(weights.shape[2:]))

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
        return self._prelu_blocked(x, slope)

    def _prelu_blocked(self, x: str, slope: np.ndarray) -> str:
        c = slope.size
        scaled = self.node("Conv", [x, self._const(slope.reshape(c, 1, 1, 1))], group=c, kernel_shape=[1, 1])
        rest = self.node("Conv", [self.node("Relu", [x]), self._const((1 - slope).reshape(c, 1, 1, 1))],
                         group=c, kernel_shape=[1, 1])
        return self.node("Add", [scaled, rest])

    def conv_prelu_pool(self, x: str, size: int, same: bool) -> str:
        """conv -> PReLU -> size x size max pool, stride 2.

        TensorFlow's SAME pooling pads only at the end where the maps MTCNN pools have it pad
        (P-Net's 2x2 on any size, 3x3 on the even sizes of R-Net's and O-Net's): the window
        partly past the end, as ceil_mode has it. (SAME_UPPER gives the same maps, but
        onnxruntime leaves its blocked layout for it on fixed sizes.)

        The full-size maps are the costliest part of each network. Where the layer's channels of
        negative slope fit in its block's padding (P-Net's first layer: 10 maps and 6 such, a
        block of 16), the PReLU goes after the pool, on a quarter of the values, at no extra
        channel (``_pool_then_prelu``); elsewhere they would add a block to the convolution and
        a channel mix after it, which costs more than it saves (in calls of 64 patches, R-Net 61 ->
        45 and O-Net 475 -> 345 us a patch with the PReLU first, measured)."""
        kernel, bias, slope = next(self.weights), next(self.weights), next(self.weights).reshape(-1)
        w = kernel.transpose(3, 2, 0, 1)  # out, in, kh, kw
        channels, negative = w.shape[0], np.flatnonzero(slope < 0)
        pool = {"kernel_shape": [size, size], "strides": [2, 2], "ceil_mode": int(same)}
        if _blocks(channels + negative.size) == _blocks(channels):
            return self._pool_then_prelu(x, w, bias, slope, negative, pool)
        out = _blocks(channels)
        weights, biases = np.zeros((out, *w.shape[1:]), np.float32), np.zeros(out, np.float32)
        weights[:channels], biases[:channels] = w, bias
        y = self._prelu_blocked(self._conv_op(x, weights, biases), np.pad(slope, (0, out - channels)))
        self._padding = out - channels
        return self.node("MaxPool", [y], **pool)

    def _pool_then_prelu(self, x: str, w: np.ndarray, bias: np.ndarray, slope: np.ndarray, negative: np.ndarray,
                         pool: dict) -> str:
        """conv -> pool -> PReLU, equal to conv -> PReLU -> pool.

        A channel of slope s >= 0 has a non-decreasing PReLU, which commutes with the max:
        pool(PReLU(y)) = PReLU(pool(y)). With s < 0, PReLU(y) = max(relu(y), |s| relu(-y)), so
        its pool is max(relu(pool(y)), |s| relu(pool(-y))): the convolution also emits -y for
        those channels, and max(a, b) = a + relu(b - a). Exact up to float rounding."""
        channels = w.shape[0]
        total, out, gaps = (_blocks(channels + negative.size), _blocks(channels), _blocks(negative.size))
        weights = np.zeros((total, *w.shape[1:]), np.float32)
        biases = np.zeros(total, np.float32)
        weights[:channels], biases[:channels] = w, bias
        weights[channels:channels + negative.size], biases[channels:channels + negative.size] = -w[negative], -bias[negative]
        pooled = self.node("MaxPool", [self._conv_op(x, weights, biases)], **pool)
        rectified = self.node("Relu", [pooled])
        keep, rest = np.zeros((out, total), np.float32), np.zeros((out, total), np.float32)
        for c, s in enumerate(slope):  # s >= 0: s * pool + (1 - s) * relu(pool); s < 0: relu(pool) + ...
            keep[c, c] = max(float(s), 0.0)
            rest[c, c] = 1.0 - float(s) if s >= 0 else 1.0
        z = self.node("Add", [self._conv1x1(pooled, keep), self._conv1x1(rectified, rest)])
        if negative.size:
            gap, back = np.zeros((gaps, total), np.float32), np.zeros((out, gaps), np.float32)
            for j, c in enumerate(negative):  # ... + relu(|s| relu(pool(-y)) - relu(pool(y)))
                gap[j, channels + j], gap[j, c] = -float(slope[c]), -1.0
                back[c, j] = 1.0
            z = self.node("Add", [z, self._conv1x1(self.node("Relu", [self._conv1x1(rectified, gap)]), back)])
        self._padding = out - channels
        return z

    def _conv1x1(self, x: str, matrix: np.ndarray) -> str:
        """The channel mix ``matrix`` (out x in); a diagonal one as a per-channel scale (a
        depthwise convolution: a sixteenth of the work on 16 channels)."""
        n = matrix.shape[0]
        if matrix.shape == (n, n) and not np.count_nonzero(matrix - np.diag(np.diag(matrix))):
            return self.node("Conv", [x, self._const(np.diag(matrix).reshape(n, 1, 1, 1))], group=n, kernel_shape=[1, 1])
        return self._conv_op(x, matrix[:, :, None, None], np.zeros(n, np.float32))

    def prelu_face_head(self, x: str) -> str:
        """P-Net's last PReLU and its two 1x1 heads, as two 1x1 convolutions of five maps.

        The heads: the box regression (4 maps), and for the softmax over (not face, face) the
        difference of its logits, whose sigmoid is the face probability (no softmax over every
        map position; the threshold is on the logit). The PReLU before them, s*y + (1-s)*relu(y),
        goes into their weights: head(PReLU(y)) = head_s(y) + head_(1-s)(relu(y)), with no pass
        over the 32 maps but the relu."""
        slope = next(self.weights).reshape(-1)
        kernel, bias = next(self.weights), next(self.weights)
        face_kernel, face_bias = next(self.weights), next(self.weights)
        head = np.concatenate([kernel, face_kernel[..., 1:] - face_kernel[..., :1]], axis=3)[0, 0].T  # 5 x 32
        bias = np.append(bias, face_bias[1] - face_bias[0])
        scaled = self._conv_op(x, (head * slope)[:, :, None, None], bias)
        rest = self._conv_op(self.node("Relu", [x]), (head * (1 - slope))[:, :, None, None], np.zeros(5, np.float32))
        return self.node("Add", [scaled, rest])

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
            [helper.make_tensor_value_info(image, TensorProto.UINT8, dims)],
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
    """The ONNX model of one network. Input ``image``: RGB pixels, NHWC uint8.

    Outputs: P-Net ``maps`` [N, 5, h, w]: the box regression (4), then the face logit (the
    difference of the two softmax logits: the face probability is its sigmoid); R-Net
    ``regression`` [N, 4] and ``probability`` [N, 2]; O-Net also ``landmarks`` [N, 10].
    """
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}")
    g = _GraphBuilder(network, load_weights(network) if weights is None else weights)
    x = g.node("Cast", [g.node("Transpose", ["image"], perm=[0, 3, 1, 2])], to=1)  # uint8 -> float
    if network == "pnet":
        x = g.conv(g.prelu(g.conv(g.conv_prelu_pool(x, 2, same=True))))
        return g.model("image", [(g.prelu_face_head(x), "maps", 5)], None)
    if network == "rnet":
        x = g.conv_prelu_pool(g.conv_prelu_pool(x, 3, same=True), 3, same=False)
        x = g.prelu(g.dense(g.flatten_as_keras(g.prelu(g.conv(x)))), spatial=False)
        regression = g.dense(x)
        probability = g.node("Softmax", [g.dense(x)], axis=1)
        return g.model("image", [(regression, "regression", 4), (probability, "probability", 2)], 24)
    x = g.conv_prelu_pool(g.conv_prelu_pool(x, 3, same=True), 3, same=False)
    x = g.conv_prelu_pool(x, 2, same=True)
    x = g.prelu(g.dense(g.flatten_as_keras(g.prelu(g.conv(x)))), spatial=False)
    regression, landmarks = g.dense(x), g.dense(x)
    probability = g.node("Softmax", [g.dense(x)], axis=1)
    return g.model("image", [(regression, "regression", 4), (landmarks, "landmarks", 10),
                             (probability, "probability", 2)], 48)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dfdetect") / "mtcnn"


def _weights_key() -> str:
    digest = hashlib.sha256(f"graph-v{GRAPH_VERSION}".encode())
    digest.update(Path(__file__).read_bytes())  # a changed builder is a new graph, version bumped or not
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
    # No spinning: between two network calls the cascade works in numpy and OpenCV (pyramid,
    # NMS, patches), and a video's decoder runs beside it; idle threads that spin take the core
    # from both (measured on 2 cores: a video's detection 0.97 s with spinning, 0.70 s without,
    # and decoding overlapped with it 1.49 s against 1.04 s).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


def sample_patches(images: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """Bilinear size x size patches of the boxes in ``rows`` ([image, x1, y1, x2, y2, ...]) of
    uint8 images, uint8: sampled on the grid TensorFlow's crop_and_resize uses for boxes given as
    x / width and y / height; outside the image, mid-grey (about 0 once normalized).

    One remap per image for all its patches, stacked (a warp per patch: 7.4 against 3.2 us a
    24-px patch)."""
    _, height, width, _ = images.shape
    patches = np.empty((len(rows), size, size, 3), np.uint8)
    # Box corners in pixels -> the normalised coordinates crop_and_resize takes -> the image
    # pixels each patch column (x) and row (y) samples.
    grid = np.arange(size) / (size - 1)
    x1, x2 = rows[:, 1:2] / width * (width - 1), rows[:, 3:4] / width * (width - 1)
    y1, y2 = rows[:, 2:3] / height * (height - 1), rows[:, 4:5] / height * (height - 1)
    xs = (x1 + (x2 - x1) * grid).astype(np.float32)  # [patch, size]
    ys = (y1 + (y2 - y1) * grid).astype(np.float32)
    image_of = rows[:, 0].astype(np.intp)
    per_call = (REMAP_ROWS - 1) // size
    for image in np.unique(image_of):
        indices = np.flatnonzero(image_of == image)
        for start in range(0, len(indices), per_call):
            mine = indices[start:start + per_call]
            n = len(mine)
            map_x = np.broadcast_to(xs[mine][:, None, :], (n, size, size)).reshape(n * size, size)
            map_y = np.broadcast_to(ys[mine][:, :, None], (n, size, size)).reshape(n * size, size)
            patches[mine] = cv2.remap(images[image], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                      borderValue=(128, 128, 128)).reshape(n, size, size, 3)
    return patches


class AreaPyramid:
    """Area resizes of uint8 frames to smaller sizes: each output pixel the mean of the frame
    over its box, rounded (OpenCV's INTER_AREA, TensorFlow's AREA, when shrinking).

    Large levels are OpenCV's resize of the frame as float (its uint8 path has no vector code for
    fractional scales: two thirds of the time). That reads the whole frame for every level, about
    0.5 ms at 640x360 however small the level, so the small levels come instead from the frame's
    integral image: the integral over a box with fractional edges is the bilinear interpolation
    of the integral image at its corners, exactly (it is bilinear within each pixel), a cost that
    falls with the level's rows (640x360 to 97x54: 0.3 ms against 0.48).

    A frame's levels are made together, while the frame is in the core's cache, into scratch
    buffers kept from frame to frame (fresh ones are page faults): in the detector, made a level
    at a time over a batch between P-Net calls, the same levels took 6.9 ms a frame instead of
    3.9. One instance per thread."""

    INTEGRAL_ROWS = 60  # levels of at most this many rows come from the integral image

    def __init__(self):
        self._pixels = self._integral = None

    @property
    def nbytes(self) -> int:
        """The scratch it holds."""
        return sum(a.nbytes for a in (self._pixels, self._integral) if a is not None)

    def fill(self, frame: np.ndarray, levels: list[np.ndarray]) -> None:
        """Each of ``levels`` (uint8 arrays of shape (height, width, 3)) set to the frame's area
        resize to its size."""
        rows, cols = frame.shape[:2]
        pixels = integral = None
        for out in levels:
            height, width = out.shape[:2]
            if height > self.INTEGRAL_ROWS:
                if pixels is None:
                    pixels = self._scratch("_pixels", frame.shape, np.float32)
                    np.copyto(pixels, frame)
                mean = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
            else:
                if integral is None:
                    integral = cv2.integral(frame, sum=self._scratch("_integral", (rows + 1, cols + 1, 3), np.float64),
                                            sdepth=cv2.CV_64F)
                y, fy = _edges(height, rows)
                x, fx = _edges(width, cols)
                at_rows = integral[y]
                at_rows += fy[:, None, None] * (integral[y + 1] - at_rows)  # at the box rows, every column
                corners = at_rows[:, x]
                corners += fx[None, :, None] * (at_rows[:, x + 1] - corners)  # at every box corner
                box_sums = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
                mean = box_sums * (width * height / (cols * rows))
            np.rint(mean, out=out, casting="unsafe")

    def _scratch(self, name: str, shape: tuple, dtype) -> np.ndarray:
        array = getattr(self, name)
        if array is None or array.shape != shape:
            array = np.empty(shape, dtype)
            setattr(self, name, array)
        return array


def _edges(count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The edges of ``count`` equal boxes over ``size`` pixels: the pixel each falls in, and
    where in it (0..1; the last edge is the end of the last pixel)."""
    edges = np.arange(count + 1) * (size / count)
    pixel = np.minimum(edges.astype(np.intp), size - 1)
    return pixel, edges - pixel


class OnnxMTCNN:
    """The three-stage cascade, batched, on onnxruntime. Safe to call from one thread at a time.

    ``threads``: onnxruntime's intra-op threads (0: its default, every core), and the threads of
    the per-frame work between the networks (``frames``: a pool shared with the caller's own).
    """

    def __init__(self, threads: int = 0, frames: FramePool | None = None):
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0: onnxruntime's default), got {threads}")
        self.threads = threads
        self._nets = _sessions(threads)
        self._frames = frames or FramePool(threads)  # the pyramid's resizes, a frame a thread
        self._pyramids: list[AreaPyramid] = []  # idle scratch, SCRATCH_KEPT_BYTES at most in all
        self._pyramids_lock = threading.Lock()

    def _fill_pyramid(self, frame: np.ndarray, levels: list[np.ndarray]) -> None:
        with self._pyramids_lock:  # a pyramid's scratch is for one thread at a time
            pyramid = self._pyramids.pop() if self._pyramids else AreaPyramid()
        try:
            pyramid.fill(frame, levels)
        finally:
            with self._pyramids_lock:  # kept within the budget; beyond, to the garbage collector
                if pyramid.nbytes + sum(p.nbytes for p in self._pyramids) <= SCRATCH_KEPT_BYTES:
                    self._pyramids.append(pyramid)

    def _run(self, network: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        """One network on a batch of images, in calls whose first maps fit in a core's cache."""
        session = self._nets[network]
        outputs = [o.name for o in session.get_outputs()]
        per_call = max(1, CALL_MAPS_BYTES // (batch.shape[1] * batch.shape[2] * FIRST_MAPS * 4))
        parts = [session.run(outputs, {"image": batch[i:i + per_call]}) for i in range(0, len(batch), per_call)]
        if len(parts) == 1:
            return dict(zip(outputs, parts[0]))
        return {name: np.concatenate([part[k] for part in parts]) for k, name in enumerate(outputs)}

    def detect(self, images: list[np.ndarray], min_face_size: int = 20) -> list[list[RawFace]]:
        """The faces in each RGB uint8 image with the cascade's confidence (O-Net's, > 0.8).

        Images of one shape go through each stage together; other shapes go in their own batch."""
        if min_face_size < WINDOW:
            raise ValueError(f"min_face_size must be at least {WINDOW} (P-Net's window), got {min_face_size}")
        results: list[list[RawFace] | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected RGB uint8 images of shape (height, width, 3), got {image.dtype} "
                                 f"{image.shape}")
            groups.setdefault(image.shape, []).append(i)
        with self._frames.running():
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
        """P-Net over the pyramid: candidate squares [image, x1, y1, x2, y2, score].

        Every level is an area resize of the frame itself, as the package has it (a level made
        from the one before it is 2-3 ms a frame cheaper, but moves boxes by up to 8 px and
        confidences by up to 0.1, measured): ``AreaPyramid``."""
        count, height, width, _ = frames.shape
        found = []
        sizes = [(int(width * scale), int(height * scale), scale)
                 for scale in pyramid_scales(width, height, min_face_size)]
        levels = [(np.empty((count, h, w, 3), np.uint8), scale) for w, h, scale in sizes if min(h, w) >= WINDOW]
        self._frames.map(lambda k: self._fill_pyramid(frames[k], [level[k] for level, _ in levels]), range(count))
        for level, scale in levels:
            maps = self._run("pnet", level)["maps"]
            image, y, x = np.nonzero(maps[:, 4] > PNET_LOGIT)
            if not image.size:
                continue
            reg = maps[image, :4, y, x]  # [k, 4]: x1, y1, x2, y2 offsets
            score = 1 / (1 + np.exp(-maps[image, 4, y, x].astype(np.float64)))
            cell = WINDOW - 1
            rows = np.stack([image, 2 * x + 1 + reg[:, 0] * cell, 2 * y + 1 + reg[:, 1] * cell,
                             2 * x + WINDOW + reg[:, 2] * cell, 2 * y + WINDOW + reg[:, 3] * cell,
                             score], axis=1).astype(np.float64)
            rows[:, 1:5] /= scale
            found.append(_nms_per_image(rows, NMS_PNET_SCALE))
        if not found:
            return np.zeros((0, 6))
        return _square(_nms_per_image(np.concatenate(found), NMS_PNET_ALL))
