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

log = logging.getLogger(__name__)


def _flag_bool(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_server_flags(p: argparse.ArgumentParser) -> None:
    """tensorflow_model_server's flags (``--flag=value`` or ``--flag value``), and --backend."""
    p.add_argument("--port", type=int, default=GRPC_PORT, help="gRPC port")
    p.add_argument("--rest_api_port", type=int, default=REST_PORT, help="REST port (0: any free port; -1: no REST API)")
    p.add_argument("--rest_api_host", "--host", dest="host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--model_name", default="default", help="name of the model (without --model_config_file)")
    p.add_argument("--model_base_path", default="", help="folder holding the model's numbered versions")
    p.add_argument("--model_config_file", default="", help="ModelServerConfig text file (several models, "
                                                           "version policies, labels)")
    p.add_argument("--file_system_poll_wait_seconds", type=int, default=1,
                   help="seconds between checks of base paths for new versions (0: load once)")
    p.add_argument("--enable_batching", type=_flag_bool, nargs="?", const=True, default=False,
                   help="merge concurrent requests into batches")
    p.add_argument("--batching_parameters_file", default="", help="BatchingParameters text file")
    p.add_argument("--monitoring_config_file", default="", help="MonitoringConfig text file (Prometheus)")
    p.add_argument("--backend", choices=["tf", "onnx"], default="tf",
                   help="tf: the SavedModel signatures; onnx: the version's ONNX twin with onnxruntime")
    p.add_argument("--grpc_threads", type=int, default=32, help="gRPC worker threads")
    p.add_argument("--drain_seconds", type=float, default=30.0, help="on SIGTERM, how long requests in flight "
                                                                     "may take to finish")


@dataclass
class ServerOptions:
    port: int = GRPC_PORT
    rest_api_port: int = REST_PORT
    host: str = "0.0.0.0"
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    file_system_poll_wait_seconds: int = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    backend: str = "tf"
    grpc_threads: int = 32
    drain_seconds: float = 30.0

    @classmethod
    def from_args(cls, args) -> "ServerOptions":
        return cls(**{k: getattr(args, k) for k in cls.__dataclass_fields__})


def model_settings(options: ServerOptions):
    """The models to serve, from --model_config_file or --model_name/--model_base_path."""
    from dfdetect.serving.config import read_model_server_config
    from dfdetect.serving.models import ModelSettings

    if options.model_config_file and options.model_base_path:
        raise BadInputError("give either --model_config_file or --model_base_path, not both")
    if options.model_config_file:
        config = read_model_server_config(options.model_config_file)
        if not config.HasField("model_config_list") or not config.model_config_list.config:
            raise BadInputError(f"{options.model_config_file} lists no models (model_config_list)")
        settings = []
        for m in config.model_config_list.config:
            if m.model_platform not in ("", "tensorflow"):
                raise BadInputError(f"model {m.name}: model_platform {m.model_platform!r} is not supported "
                                    "(expected tensorflow)")
            policy = m.model_version_policy.WhichOneof("policy_choice") or "latest"
            settings.append(ModelSettings(
                name=m.name, base_path=m.base_path, policy=policy,
                num_versions=m.model_version_policy.latest.num_versions or 1,
                versions=tuple(m.model_version_policy.specific.versions), labels=dict(m.version_labels)))
        return settings
    if not options.model_base_path:
        raise BadInputError("--model_base_path (or --model_config_file) is required")
    return [ModelSettings(name=options.model_name, base_path=os.path.abspath(options.model_base_path)
                          if "://" not in options.model_base_path else options.model_base_path)]


def batching_options(options: ServerOptions):
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


def monitoring_path(options: ServerOptions) -> str | None:
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
        settings = model_settings(options)
        batching = batching_options(options)
        self.metrics_path = monitoring_path(options)
        self.manager = ModelManager(settings, options.backend, batching)
        self.metrics = ServerMetrics(queue_depth=self.manager.queue_depth)
        self.manager.metrics = self.metrics
        self.core = ServingCore(self.manager, self.metrics)
        self.grpc = None
        self.rest = None
        self._stopped = threading.Event()

    def start(self) -> "ModelServer":
        from dfdetect.serving.grpc_api import GrpcServer
        from dfdetect.serving.rest_api import RestServer

        self.manager.start(self.options.file_system_poll_wait_seconds)
        self.grpc = GrpcServer(self.core, self.options.port, self.options.host, self.options.grpc_threads)
        self.grpc.start()
        self.grpc.set_serving(True)
        if self.options.rest_api_port >= 0:
            self.rest = RestServer(self.core, self.options.rest_api_port, self.options.host, self.metrics,
                                   self.metrics_path)
            self.rest.start()
        log.info("serving gRPC on %s:%d%s (backend %s, batching %s)", self.options.host, self.grpc.port,
                 f", REST on {self.options.host}:{self.rest.port}" if self.rest else "", self.options.backend,
                 "on" if self.manager.batching else "off")
        return self

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    @property
    def rest_port(self) -> int:
        return self.rest.port

    def stop(self) -> None:
        """Drain: refuse new requests, let those in flight finish, unload the models."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("stopping: draining requests in flight (up to %.0f s)", self.options.drain_seconds)
        if self.rest:
            self.rest.stop()
        if self.grpc:
            self.grpc.stop(self.options.drain_seconds)
        self.manager.stop(self.options.drain_seconds)
        log.info("stopped")


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
