"""What the gRPC and REST locustfiles share: options, face-crop payloads, per-class figures and
the pass/fail thresholds.

Locust imports every ``*.py`` file of ``loadtests/`` as a locustfile except those whose name
starts with ``_``, so this module is imported by the locustfiles, never run as one; importing it
once registers its listeners once.

Options (command line, ``locust.conf``, or the environment variable in brackets):

- ``--grpc-host`` (``LOCUST_GRPC_HOST``): HOST:PORT of the gRPC API, default ``localhost:8500``.
  The REST user takes locust's own ``--host`` (``LOCUST_HOST``), default ``http://localhost:8501``.
- ``--model-name`` (``LOCUST_MODEL_NAME``): the served model, default ``deepfake``.
- ``--signature`` (``LOCUST_SIGNATURE``): ``serve_image_bytes`` (JPEG crops), ``serving_default``
  (uint8 pixels), or ``auto`` (the default): JPEG when the model has the bytes signature, as the
  client does.
- ``--batch-size`` (``LOCUST_BATCH_SIZE``): faces in the batch request, default 16.
- ``--request-timeout`` (``LOCUST_REQUEST_TIMEOUT``): seconds before a call counts as failed.
- ``--think-time`` (``LOCUST_THINK_TIME``): seconds a user waits between calls, default 0
  (closed loop: each user calls again as soon as it has an answer).
- ``--max-failure-ratio`` (``LOCUST_MAX_FAILURE_RATIO``) and ``--max-p95-ms``
  (``LOCUST_MAX_P95_MS``): the run fails (exit code 1) when a user class exceeds either.

The crop size S comes from the served model's metadata, read by every user when it starts.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from locust import events
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import StatsEntry

from dfdetect.contract import DEFAULT_CROP_MARGIN, DEFAULT_MODEL_NAME, GRPC_PORT, REST_PORT, SIGNATURE_BYTES, \
    SIGNATURE_PIXELS

# Everything heavy is imported now, while locust imports the locustfiles and before it runs any
# greenlet: greenlets share one thread, so a module imported by one greenlet while another one
# is still importing it (a worker receiving its first users during start-up) is seen half-built.
import onnxruntime  # noqa: E402,F401  (the face detector's runtime)
from dfdetect.faces.crops import crop_face, encode_jpeg  # noqa: E402
import dfdetect.faces.detection  # noqa: E402,F401  (face_boxes' detector, imported here as well)
from dfdetect.samples import face_boxes, face_photographs  # noqa: E402

import _summary  # noqa: E402

log = logging.getLogger("loadtests")

AUTO = "auto"
SIGNATURES = (AUTO, SIGNATURE_BYTES, SIGNATURE_PIXELS)
DEFAULT_GRPC_HOST = f"localhost:{GRPC_PORT}"
DEFAULT_REST_HOST = f"http://localhost:{REST_PORT}"
DEFAULT_BATCH = 16  # a video's worth of faces: the client's default frame count, one face each
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_FAILURE_RATIO = 0.01
DEFAULT_MAX_P95_MS = 5000.0  # a CPU-only local deployment answering a batch of 16 under load
SETUP_RETRY_SECONDS = 1.0  # pause after a failed start-up metadata call before trying again

# Request types as locust's statistics record them -> the user class that made the request.
GRPC_TYPE = "grpc"
CLASS_OF_TYPE = {GRPC_TYPE: "GrpcUser", "GET": "RestUser", "POST": "RestUser"}

# Request names, the same for both classes so their rows line up.
SINGLE = "predict 1 face"
METADATA = "metadata"
STATUS = "status"


def batch_name(size: int) -> str:
    """The request name locust reports the batch Predict of ``size`` faces under."""
    return f"predict {size} faces"


# --- options ------------------------------------------------------------------------------------

def _checked(kind, test, expected: str):
    """An option type: ``kind`` of the text, refused with ``expected`` unless ``test`` holds."""
    def convert(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return convert


def _signature(text: str) -> str:
    if text not in SIGNATURES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(SIGNATURES)}, got {text!r}")
    return text


# name (its environment variable: LOCUST_NAME), type, default, help
OPTIONS = (
    ("grpc-host", str, DEFAULT_GRPC_HOST,
     f"HOST:PORT of the gRPC API (default {DEFAULT_GRPC_HOST}); the REST user uses --host "
     f"(default {DEFAULT_REST_HOST})"),
    ("model-name", str, DEFAULT_MODEL_NAME, f"served model name (default {DEFAULT_MODEL_NAME})"),
    ("signature", _signature, AUTO,
     f"{SIGNATURE_BYTES}: JPEG crops; {SIGNATURE_PIXELS}: uint8 pixels; {AUTO} (default): JPEG when the model "
     "has the bytes signature"),
    ("batch-size", _checked(int, lambda v: v >= 1, "a whole number >= 1"), DEFAULT_BATCH,
     f"faces in the batch request (default {DEFAULT_BATCH}, a video's worth)"),
    ("request-timeout", _checked(float, lambda v: 0 < v < math.inf, "seconds > 0"), DEFAULT_TIMEOUT,
     f"seconds before a call counts as failed (default {DEFAULT_TIMEOUT:g})"),
    ("think-time", _checked(float, lambda v: 0 <= v < math.inf, "seconds >= 0"), 0.0,
     "seconds each user waits between calls (default 0: call again at once)"),
    ("max-failure-ratio", _checked(float, lambda v: 0 <= v <= 1, "a ratio between 0 and 1"),
     DEFAULT_MAX_FAILURE_RATIO,
     f"exit code 1 when more than this share of a user class's requests fail (default {DEFAULT_MAX_FAILURE_RATIO:g})"),
    ("max-p95-ms", _checked(float, lambda v: 0 <= v < math.inf, "milliseconds >= 0"), DEFAULT_MAX_P95_MS,
     f"exit code 1 when a user class's 95th percentile response time exceeds this many ms "
     f"(default {DEFAULT_MAX_P95_MS:g}; 0: no bound)"),
)


def _env_var(name: str) -> str:
    return "LOCUST_" + name.upper().replace("-", "_")


@events.init_command_line_parser.add_listener
def _add_options(parser, **_):
    group = parser.add_argument_group("dfdetect load test",
                                      "the served deepfake model and the pass/fail thresholds; each option can also "
                                      "be set by the environment variable LOCUST_<OPTION> (e.g. LOCUST_GRPC_HOST)")
    for name, kind, default, text in OPTIONS:
        group.add_argument(f"--{name}", env_var=_env_var(name), type=kind, default=default, help=text)


@dataclass(frozen=True)
class Settings:
    """The options of a run (see the module docstring), checked."""

    grpc_host: str
    model_name: str
    signature: str
    batch_size: int
    request_timeout: float
    think_time: float
    max_failure_ratio: float
    max_p95_ms: float


def settings(environment) -> Settings:
    """The options of this run: as locust parsed them (on a worker, as the master sent them; from
    the web UI, as typed there), else from the environment variables, else the defaults (locust
    used as a library). Every value is checked, whichever way it came."""
    parsed = environment.parsed_options
    values = {}
    for name, kind, default, _ in OPTIONS:
        key = name.replace("-", "_")
        value = getattr(parsed, key, None) if parsed is not None else None
        if value is None:
            value = os.environ.get(_env_var(name), default)
        try:
            values[key] = kind(value)
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"--{name}: {e}") from None
    return Settings(**values)


def think_time(user) -> float:
    """``wait_time`` of both user classes (their options are read in ``on_start``)."""
    return user.options.think_time


@events.init.add_listener
def _on_init(environment, runner, **_):
    if not isinstance(runner, MasterRunner):  # a master runs no users
        FACES.load()


# --- payloads -----------------------------------------------------------------------------------

def choose_signature(requested: str, accepts_bytes: bool) -> str:
    """The signature to load: the one asked for, or with ``auto`` JPEG when the model takes it."""
    if requested != AUTO:
        return requested
    return SIGNATURE_BYTES if accepts_bytes else SIGNATURE_PIXELS


@dataclass(frozen=True)
class Payload:
    """Face crops of one size, as uint8 pixels and as the client's JPEG encoding."""

    crop_size: int
    pixels: tuple[np.ndarray, ...]  # S x S x 3 uint8 RGB each
    jpegs: tuple[bytes, ...]


class FaceSource:
    """The faces of the photographs the demo data is made from, found by the product's detector.

    Detection runs once per process (MTCNN, about a second); crops of a size are cut and encoded
    on first use and kept, so every user of a process sends the same bytes.
    """

    def __init__(self):
        self._faces: list[tuple[np.ndarray, tuple[int, int, int, int]]] | None = None
        self._payloads: dict[tuple[int, int], Payload] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Find the faces in the demo photographs, once per process."""
        with self._lock:
            if self._faces is None:
                photos = [photo for _, photo in face_photographs()]
                self._faces = list(zip(photos, face_boxes(photos)))
                log.info("face crops: %d faces found in the demo photographs", len(self._faces))

    def payload(self, crop_size: int, count: int) -> Payload:
        """``count`` distinct crops of side ``crop_size``: each face moved, zoomed, mirrored and
        relit a little, as the demo videos move them, then cut as the client cuts a face."""
        key = (crop_size, count)
        if key not in self._payloads:
            self.load()
            rng = np.random.default_rng(0)
            pixels = []
            for i in range(count):
                photo, (x, y, w, h) = self._faces[i % len(self._faces)]
                zoom = rng.uniform(0.9, 1.1)
                dx, dy = rng.uniform(-0.08, 0.08, 2) * (w, h)
                box = (int(round(x + dx)), int(round(y + dy)), int(round(w * zoom)), int(round(h * zoom)))
                crop = crop_face(photo, box, DEFAULT_CROP_MARGIN, crop_size)
                if (i // len(self._faces)) % 2:
                    crop = crop[:, ::-1]
                crop = np.clip(crop.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
                pixels.append(np.ascontiguousarray(crop))
            self._payloads[key] = Payload(crop_size, tuple(pixels), tuple(encode_jpeg(p) for p in pixels))
        return self._payloads[key]


FACES = FaceSource()


class Workloads:
    """Requests built once per process for each (model, signature, crop size): every user of a
    class sends the same prepared bytes, so the load generator spends its time on the calls."""

    def __init__(self):
        self._built: dict[tuple, object] = {}

    def get(self, key: tuple, build):
        """What ``build()`` returns for ``key``, built on the first call only."""
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]


WORKLOADS = Workloads()


# --- figures per user class and thresholds ------------------------------------------------------

def class_entries(stats) -> dict[str, StatsEntry]:
    """Locust's statistics per request merged per user class (exact percentiles: the response
    time histograms are added up, not the percentiles)."""
    merged: dict[str, StatsEntry] = {}
    for entry in stats.entries.values():
        label = CLASS_OF_TYPE.get(entry.method, entry.method)
        if label not in merged:
            merged[label] = StatsEntry(stats, label, "", use_response_times_cache=False)
        merged[label].extend(entry)
    return dict(sorted(merged.items()))


def summary_row(label: str, entry: StatsEntry) -> dict:
    """One row of the per-class figures (times in ms) from a locust statistics entry."""
    return {
        "user_class": label,
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "failure_ratio": entry.fail_ratio,
        "requests_per_s": entry.total_rps,
        "p50_ms": entry.get_response_time_percentile(0.50) if entry.num_requests else 0,
        "p95_ms": entry.get_response_time_percentile(0.95) if entry.num_requests else 0,
        "p99_ms": entry.get_response_time_percentile(0.99) if entry.num_requests else 0,
        "average_ms": entry.avg_response_time,
        "max_ms": entry.max_response_time,
    }


def threshold_problems(rows: list[dict], options: Settings) -> list[str]:
    """Why the run fails the thresholds (nothing: it passes)."""
    classes = [r for r in rows if r["user_class"] != _summary.ALL]
    if not any(r["requests"] for r in classes):
        return ["no requests were made"]
    problems = []
    for r in classes:
        if r["failure_ratio"] > options.max_failure_ratio:
            problems.append(f"{r['user_class']}: {r['failures']} of {r['requests']} requests failed "
                            f"({r['failure_ratio']:.1%}, limit {options.max_failure_ratio:.1%})")
        if options.max_p95_ms and r["p95_ms"] > options.max_p95_ms:
            problems.append(f"{r['user_class']}: p95 response time {r['p95_ms']:.0f} ms exceeds "
                            f"{options.max_p95_ms:g} ms")
    return problems


@events.quitting.add_listener
def _check_thresholds(environment, **_):
    """At the end of a run (locally or on the master): write the per-class figures next to
    locust's CSV, and set the exit code to 1 when a threshold is exceeded."""
    if isinstance(environment.runner, WorkerRunner):
        return
    options = settings(environment)
    rows = [summary_row(label, entry) for label, entry in class_entries(environment.stats).items()]
    rows.append(summary_row(_summary.ALL, environment.stats.total))
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        path = _summary.write_rows(Path(f"{prefix}{_summary.SUFFIX}"), rows)
        log.info("figures per user class written to %s", path)
    problems = threshold_problems(rows, options)
    if problems:
        log.error("load test failed the thresholds: %s", "; ".join(problems))
        environment.process_exit_code = 1
    else:
        log.info("load test within the thresholds (failures <= %.1f%%%s)", 100 * options.max_failure_ratio,
                 f", p95 <= {options.max_p95_ms:g} ms" if options.max_p95_ms else "")
