"""The local model server: a drop-in for ``tensorflow_model_server`` (same flags, same config
files, same gRPC and REST APIs), for machines without the real one.

    dfdetect serve --model_name=deepfake --model_base_path=$PWD/model_repository/deepfake
    python -m dfdetect.serving --model_config_file=serving/models.config --enable_batching
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from dataclasses import dataclass

from dfdetect.contract import GRPC_PORT, REST_PORT
from dfdetect.errors import BadInputError
from dfdetect.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)


def _flag_bool(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# Our limits' defaults (the flags' and ServerOptions'); rest_api and limits take them as given.
REST_MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_REQUEST_TENSOR_BYTES = 512 * 1024 * 1024

# tensorflow_model_server's flags that change nothing here, with TensorFlow Serving's defaults:
# accepted (arguments copied from a TensorFlow Serving deployment keep working), and named in one
# warning when given another value.
IGNORED_FLAGS = {
    "rest_api_enable_cors_support": ("bool", False),
    "allow_version_labels_for_unavailable_models": ("bool", False),
    "enable_per_model_batching_parameters": ("bool", False),
    "num_load_threads": (int, 0), "num_unload_threads": (int, 0), "flush_filesystem_caches": ("bool", True),
    "tensorflow_session_parallelism": (int, 0), "tensorflow_session_config_file": (str, ""),
    "use_alts_credentials": ("bool", False), "ssl_config_file": (str, ""), "platform_config_file": (str, ""),
    "per_process_gpu_memory_fraction": (float, 0.0), "saved_model_tags": (str, "serve"),
    "remove_unused_fields_from_bundle_metagraph": ("bool", True), "prefer_tflite_model": ("bool", False),
    "num_tflite_pools": (int, 1), "num_tflite_interpreters_per_pool": (int, 1),
    "enable_profiler": ("bool", True),
    "thread_pool_factory_config_file": (str, ""), "mixed_precision": (str, ""), "skip_initialize_tpu": ("bool", True),
    "enable_grpc_healthcheck_service": ("bool", False), "version": ("bool", False),
}


def add_server_flags(p: argparse.ArgumentParser) -> None:
    """tensorflow_model_server's flags (``--flag=value`` or ``--flag value``), and --backend."""
    def flag(name, **kwargs):
        p.add_argument(f"--{name}", **kwargs)

    def switch(name, default, help):
        flag(name, type=_flag_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help)

    flag("port", type=int, default=GRPC_PORT, help="gRPC port")
    flag("grpc_socket_path", default="", help="also serve gRPC on this Unix socket")
    flag("grpc_channel_arguments", default="",
         help="gRPC server arguments, comma-separated key=value (e.g. grpc.max_concurrent_streams=100)")
    p.add_argument("--grpc_max_threads", "--grpc_threads", dest="grpc_threads", type=int, default=32,
                   help="gRPC worker threads")
    flag("rest_api_port", type=int, default=REST_PORT, help="REST port (0: any free port; -1: no REST API)")
    p.add_argument("--rest_api_host", "--host", dest="host", default="0.0.0.0", help="address to listen on")
    flag("rest_api_timeout_in_ms", type=int, default=30000,
         help="REST: how long a request's body may take to arrive, and its answer (then 504 DEADLINE_EXCEEDED)")
    flag("rest_api_num_threads", type=int, default=0, help="threads that run REST requests (0: 4 per core)")
    flag("rest_api_max_body_bytes", type=int, default=REST_MAX_BODY_BYTES,
         help="ours: larger REST bodies are refused unread (413)")
    flag("model_name", default="default", help="name of the model (without --model_config_file)")
    flag("model_base_path", default="", help="folder holding the model's numbered versions")
    flag("model_config_file", default="", help="ModelServerConfig text file (several models, version policies, "
                                               "labels)")
    flag("model_config_file_poll_wait_seconds", type=int, default=0,
         help="seconds between reads of --model_config_file for changes (0: read once)")
    flag("file_system_poll_wait_seconds", type=int, default=1,
         help="seconds between checks of base paths for new versions (0: load once)")
    flag("max_num_load_retries", type=int, default=5, help="times a version that failed to load is tried again")
    flag("load_retry_interval_micros", type=int, default=60_000_000, help="microseconds between those tries")
    switch("enable_batching", False, "merge concurrent requests into batches")
    flag("batching_parameters_file", default="", help="BatchingParameters text file")
    flag("monitoring_config_file", default="", help="MonitoringConfig text file (Prometheus)")
    switch("enable_model_warmup", True, "replay a version's assets.extra/tf_serving_warmup_requests before it serves")
    flag("num_request_iterations_for_warmup", type=int, default=1, help="times each warm-up request is replayed")
    switch("enable_signature_method_name_check", False,
           "Classify and Regress only on signatures whose method is tensorflow/serving/classify or regress")
    switch("enable_serialization_as_tensor_content", False,
           "answer numeric outputs as raw tensor_content instead of float_val, int64_val, ...")
    flag("tensorflow_intra_op_parallelism", type=int, default=0,
         help="threads one op may use (0: every core): TensorFlow's intra-op pool, or onnxruntime's with "
              "--backend onnx. On a CPU with num_batch_threads batches side by side, 1 (and inter-op = cores) "
              "keeps them from fighting over the cores")
    flag("tensorflow_inter_op_parallelism", type=int, default=0, help="TensorFlow's inter-op threads (0: its default)")
    for name, (kind, default) in IGNORED_FLAGS.items():
        if kind == "bool":
            switch(name, default, argparse.SUPPRESS)
        else:
            flag(name, type=kind, default=default, help=argparse.SUPPRESS)
    flag("backend", choices=["tf", "onnx"], default="tf",
         help="tf: the SavedModel signatures; onnx: the version's ONNX twin with onnxruntime")
    flag("max_request_batch_size", type=int, default=0,
         help="ours: most rows one request may carry (0: the batching config's max_batch_size, else 256)")
    flag("max_request_tensor_bytes", type=int, default=MAX_REQUEST_TENSOR_BYTES,
         help="ours: most bytes a request's tensors may take decoded (RESOURCE_EXHAUSTED over it)")
    flag("max_image_pixels", type=int, default=DEFAULT_MAX_PIXELS,
         help="ours: most pixels an encoded image in a request may declare (read from its header)")
    flag("drain_seconds", type=float, default=30.0, help="on SIGTERM, how long requests in flight may take to finish")


def grpc_channel_arguments(text: str) -> list[tuple[str, object]]:
    """``a=1,b=x`` -> [("a", 1), ("b", "x")], as tensorflow_model_server reads --grpc_channel_arguments."""
    arguments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"--grpc_channel_arguments: {item!r} is not key=value")
        value = value.strip()
        arguments.append((key.strip(), int(value) if value.lstrip("-").isdigit() else value))
    return arguments


@dataclass
class ServerOptions:
    """The server's options by flag name: tensorflow_model_server's, and ours."""

    port: int = GRPC_PORT
    rest_api_port: int = REST_PORT
    host: str = "0.0.0.0"
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    enable_serialization_as_tensor_content: bool = False
    enable_signature_method_name_check: bool = False
    grpc_socket_path: str = ""
    grpc_channel_arguments: str = ""
    rest_api_timeout_in_ms: int = 30000
    rest_api_num_threads: int = 0
    max_request_batch_size: int = 0
    max_request_tensor_bytes: int = MAX_REQUEST_TENSOR_BYTES
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    rest_api_max_body_bytes: int = REST_MAX_BODY_BYTES
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    backend: str = "tf"
    grpc_threads: int = 32
    drain_seconds: float = 30.0
    ignored_flags: tuple[str, ...] = ()  # given, but meaning nothing here

    @classmethod
    def from_args(cls, args) -> "ServerOptions":
        """The options from parsed flags, noting the ignored flags given a value other than their default."""
        ignored = tuple(name for name, (_, default) in IGNORED_FLAGS.items() if getattr(args, name) != default)
        values = {k: getattr(args, k) for k in cls.__dataclass_fields__ if k != "ignored_flags"}
        return cls(**values, ignored_flags=ignored)


def model_settings(options: ServerOptions):
    """The models to serve, from --model_config_file or --model_name/--model_base_path."""
    from dfdetect.serving.models import ModelSettings

    if options.model_config_file and options.model_base_path:
        raise BadInputError("give either --model_config_file or --model_base_path, not both")
    if options.model_config_file:
        return models_in_config_file(options.model_config_file)
    if not options.model_base_path:
        raise BadInputError("--model_base_path (or --model_config_file) is required")
    return [ModelSettings(name=options.model_name, base_path=os.path.abspath(options.model_base_path)
                          if "://" not in options.model_base_path else options.model_base_path)]


def models_in_config_file(path: str):
    """The models a --model_config_file lists; BadInputError when it lists none or cannot be served."""
    from dfdetect.modelsconfig import read_model_server_config
    from dfdetect.serving.models import settings_from_config

    config = read_model_server_config(path)
    if config.WhichOneof("config") == "model_config_list" and not config.model_config_list.config:
        raise BadInputError(f"{path} lists no models (model_config_list)")
    try:
        return settings_from_config(config)
    except ValueError as e:
        raise BadInputError(f"{path}: {e}") from None


def batching_options(options: ServerOptions):
    """The batching options (--batching_parameters_file over the defaults), None without --enable_batching;
    BadInputError when they do not validate."""
    from dfdetect.serving.batching import BatchingOptions
    from dfdetect.serving.config import read_batching_parameters

    if not options.enable_batching:
        return None
    batching = BatchingOptions()
    if options.batching_parameters_file:
        p = read_batching_parameters(options.batching_parameters_file)
        for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
            if p.HasField(name):
                setattr(batching, name, int(getattr(p, name).value))
        batching.allowed_batch_sizes = [int(s) for s in p.allowed_batch_sizes]
        batching.pad_variable_length_inputs = p.pad_variable_length_inputs
    try:
        batching.validate()
    except ValueError as e:
        raise BadInputError(f"batching parameters: {e}") from None
    return batching


def request_limits(options: ServerOptions, batching):
    """The request limits; rows: --max_request_batch_size, else batching's max_batch_size, else 256."""
    from dfdetect.serving.limits import DEFAULT_MAX_BATCH, RequestLimits

    batch = options.max_request_batch_size or (batching.max_batch_size if batching else DEFAULT_MAX_BATCH)
    return RequestLimits(max_batch=batch, max_tensor_bytes=options.max_request_tensor_bytes,
                         max_image_pixels=options.max_image_pixels)


def monitoring_path(options: ServerOptions) -> str | None:
    """The Prometheus metrics path from --monitoring_config_file, or None when metrics are off."""
    from dfdetect.serving.config import DEFAULT_PROMETHEUS_PATH, read_monitoring_config

    if not options.monitoring_config_file:
        return None
    config = read_monitoring_config(options.monitoring_config_file)
    if not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH


class ModelServer:
    """Models, core, gRPC and REST; start() blocks until the first load is done."""

    def __init__(self, options: ServerOptions):
        from dfdetect.serving.core import ServingCore
        from dfdetect.serving.metrics import ServerMetrics
        from dfdetect.serving.models import ModelManager

        self.options = options
        if options.ignored_flags:
            log.warning("ignored (they change nothing in this server): %s",
                        ", ".join(f"--{name}" for name in options.ignored_flags))
        if options.tensorflow_intra_op_parallelism > 0 or options.tensorflow_inter_op_parallelism > 0:
            import tensorflow as tf

            if options.tensorflow_intra_op_parallelism > 0:
                tf.config.threading.set_intra_op_parallelism_threads(options.tensorflow_intra_op_parallelism)
            if options.tensorflow_inter_op_parallelism > 0:
                tf.config.threading.set_inter_op_parallelism_threads(options.tensorflow_inter_op_parallelism)
        self.channel_arguments = grpc_channel_arguments(options.grpc_channel_arguments)
        settings = model_settings(options)
        batching = batching_options(options)
        self.metrics_path = monitoring_path(options)
        self.manager = ModelManager(settings, options.backend, batching,
                                    model_threads=options.tensorflow_intra_op_parallelism,
                                    load_retries=options.max_num_load_retries,
                                    retry_interval=options.load_retry_interval_micros / 1e6,
                                    warmup_iterations=options.num_request_iterations_for_warmup
                                    if options.enable_model_warmup else 0)
        self.metrics = ServerMetrics(queue_depth=self.manager.queue_depth)
        self.manager.metrics = self.metrics
        self.core = ServingCore(self.manager, self.metrics, options.enable_signature_method_name_check,
                                request_limits(options, batching))
        self.grpc = None
        self.rest = None
        self._stopped = threading.Event()
        self._config_poller: threading.Thread | None = None

    def start(self) -> "ModelServer":
        """Load the models (returns once the first load is done), then open gRPC and REST; returns self."""
        from dfdetect.serving.grpc_api import GrpcServer
        from dfdetect.serving.rest_api import RestServer

        self.manager.start(self.options.file_system_poll_wait_seconds)
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._config_poller = threading.Thread(target=self._watch_config_file, daemon=True,
                                                   name="config-file-poller")
            self._config_poller.start()
        self.grpc = GrpcServer(self.core, self.options.port, self.options.host, self.options.grpc_threads,
                               socket_path=self.options.grpc_socket_path, arguments=self.channel_arguments,
                               tensor_content=self.options.enable_serialization_as_tensor_content)
        self.grpc.start()
        self.grpc.set_serving(True)
        if self.options.rest_api_port >= 0:
            self.rest = RestServer(self.core, self.options.rest_api_port, self.options.host, self.metrics,
                                   self.metrics_path, timeout=self.options.rest_api_timeout_in_ms / 1000,
                                   workers=self.options.rest_api_num_threads,
                                   max_body_bytes=self.options.rest_api_max_body_bytes)
            self.rest.start()
        log.info("serving gRPC on %s:%d%s (backend %s, batching %s)", self.options.host, self.grpc.port,
                 f", REST on {self.options.host}:{self.rest.port}" if self.rest else "", self.options.backend,
                 "on" if self.manager.batching else "off")
        return self

    def _watch_config_file(self) -> None:
        """Re-read --model_config_file every --model_config_file_poll_wait_seconds; apply it when
        its text changes. A file that does not parse is reported and the models serve on."""
        path, seconds = self.options.model_config_file, self.options.model_config_file_poll_wait_seconds
        last = _read_text(path)
        while not self._stopped.wait(seconds):
            text = _read_text(path)
            if text is None or text == last:
                continue
            last = text
            try:
                models = models_in_config_file(path)
            except BadInputError as e:
                log.error("model config file not applied (the models serve on as before): %s", e)
                continue
            for error in self.manager.reconfigure(models):
                log.error("model config file %s: %s", path, error)

    @property
    def grpc_port(self) -> int:
        """The gRPC port bound (the one picked when --port is 0)."""
        return self.grpc.port

    @property
    def rest_port(self) -> int:
        """The REST port bound (the one picked when --rest_api_port is 0)."""
        return self.rest.port

    def stop(self) -> None:
        """Drain: refuse new requests, let those in flight finish, unload the models."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.options.drain_seconds
        log.info("stopping: draining requests in flight (up to %.0f s)", grace)
        # At once: health NOT_SERVING, new requests refused (gRPC UNAVAILABLE, REST 503 with
        # Connection: close); then requests in flight get up to the grace period on both APIs.
        stopped = None
        if self.grpc:
            self.grpc.set_serving(False)
        if self.rest:
            self.rest.drain()
        if self.grpc:
            stopped = self.grpc.server.stop(grace)
        if self.rest:
            self.rest.stop(grace)
        if stopped is not None:
            stopped.wait()
        self.manager.stop(grace)
        log.info("stopped")


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        log.error("cannot read the model config file: %s", e)
        return None


def serve(options: ServerOptions) -> int:
    """Run until SIGTERM or SIGINT, then drain and return 0."""
    server = ModelServer(options).start()
    done = threading.Event()

    def on_signal(signum, frame):
        log.info("received %s", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    done.wait()
    server.stop()
    return 0
