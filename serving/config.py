"""TensorFlow Serving's config files, read and written with its own protobuf messages.

``models.config`` is a text-format ``ModelServerConfig``; a typo fails the parse with the
protobuf error (line and column), never silently.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from dfdetect.errors import BadInputError

DEFAULT_MODELS_CONFIG = Path(__file__).with_name("models.config")


def read_model_server_config(path: str | Path) -> model_server_config_pb2.ModelServerConfig:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"model config file {path} does not exist")
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except text_format.ParseError as e:
        raise BadInputError(f"model config file {path}: Error parsing text-format "
                            f"tensorflow.serving.ModelServerConfig: {e}") from None
    return config


def config_copies(path: str | Path) -> list[Path]:
    """The copies the Kubernetes manifests read of a config file in a checkout's serving/:
    ``k8s/base/config/<name>`` (kustomize reads files only inside its folders)."""
    path = Path(path).resolve()
    copy = path.parent.parent / "k8s" / "base" / "config" / path.name
    return [copy] if path.parent.name == "serving" and copy.parent.is_dir() else []


def write_model_server_config(config: model_server_config_pb2.ModelServerConfig, path: str | Path,
                              header: str = "") -> None:
    """Write atomically (temporary file, then rename), keeping a leading comment block; the
    Kubernetes copy of the file (``config_copies``) gets the same text."""
    text = header + text_format.MessageToString(config)
    for target in [Path(path), *config_copies(path)]:
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        tmp.replace(target)


def leading_comments(path: str | Path) -> str:
    lines = []
    for line in Path(path).read_text().splitlines(keepends=True):
        if not line.lstrip().startswith("#"):
            break
        lines.append(line)
    return "".join(lines)


def find_model(config: model_server_config_pb2.ModelServerConfig, name: str):
    for model in config.model_config_list.config:
        if model.name == name:
            return model
    known = ", ".join(m.name for m in config.model_config_list.config) or "none"
    raise BadInputError(f"model {name!r} is not in the model config (models: {known})")


def version_labels(path: str | Path, model_name: str) -> dict[str, int]:
    """The version labels the config file gives a model ({} when the file or model is absent)."""
    if not Path(path).is_file():
        return {}
    config = read_model_server_config(path)
    for model in config.model_config_list.config:
        if model.name == model_name:
            return dict(model.version_labels)
    return {}


def set_version_labels(path: str | Path, model_name: str, labels: dict[str, int], existing_versions) -> dict[str, int]:
    """Point labels at versions, refusing versions that do not exist; pins the labelled
    versions with a ``specific`` version policy (TensorFlow Serving serves labels only for
    loaded versions). Returns every label of the model after the change."""
    existing = set(existing_versions)
    missing = {label: v for label, v in labels.items() if v not in existing}
    if missing:
        detail = ", ".join(f"{label}={v}" for label, v in missing.items())
        raise BadInputError(f"cannot label versions that do not exist ({detail}); "
                            f"{model_name} has versions {sorted(existing) or 'none'}")
    config = read_model_server_config(path)
    model = find_model(config, model_name)
    for label, version in labels.items():
        model.version_labels[label] = version
    pinned = sorted(set(model.version_labels.values()))
    model.model_version_policy.specific.versions[:] = pinned
    write_model_server_config(config, path, leading_comments(path))
    return dict(model.version_labels)


# --- batching.config and monitoring.config ------------------------------------------------------
# TensorFlow Serving defines BatchingParameters (session_bundle_config.proto) and MonitoringConfig
# (monitoring_config.proto), but the tensorflow-serving-api package does not ship them. They are
# declared here with TensorFlow Serving's package, names and field numbers, so the same text files
# parse here and in the real server.

def _build_messages():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.Default()
    name = "dfdetect/serving/tensorflow_serving_configs.proto"
    try:
        fd = pool.FindFileByName(name)
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto(name=name, package="tensorflow.serving", syntax="proto3",
                                                   dependency=[wrappers_pb2.DESCRIPTOR.name])

        def message(msg_name, fields):
            m = proto.message_type.add(name=msg_name)
            for field_name, number, ftype, label, type_name in fields:
                f = m.field.add(name=field_name, number=number, type=ftype, label=label)
                if type_name:
                    f.type_name = type_name

        opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
        int64 = ".google.protobuf.Int64Value"
        message("BatchingParameters", [
            ("max_batch_size", 1, F.TYPE_MESSAGE, opt, int64),
            ("batch_timeout_micros", 2, F.TYPE_MESSAGE, opt, int64),
            ("max_enqueued_batches", 3, F.TYPE_MESSAGE, opt, int64),
            ("num_batch_threads", 4, F.TYPE_MESSAGE, opt, int64),
            ("thread_pool_name", 5, F.TYPE_MESSAGE, opt, ".google.protobuf.StringValue"),
            ("allowed_batch_sizes", 6, F.TYPE_INT64, rep, None),
            ("pad_variable_length_inputs", 7, F.TYPE_BOOL, opt, None),
        ])
        message("PrometheusConfig", [("enable", 1, F.TYPE_BOOL, opt, None), ("path", 2, F.TYPE_STRING, opt, None)])
        message("MonitoringConfig", [("prometheus_config", 1, F.TYPE_MESSAGE, opt, ".tensorflow.serving.PrometheusConfig")])
        fd = pool.Add(proto)
    return (message_factory.GetMessageClass(fd.message_types_by_name["BatchingParameters"]),
            message_factory.GetMessageClass(fd.message_types_by_name["MonitoringConfig"]))


BatchingParameters, MonitoringConfig = _build_messages()
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def _parse_text(path: str | Path, message, what: str):
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} file {path} does not exist")
    try:
        return text_format.Parse(path.read_text(), message())
    except text_format.ParseError as e:
        raise BadInputError(f"cannot parse {what} file {path} as a {message.DESCRIPTOR.name}: {e}") from None


def read_batching_parameters(path: str | Path):
    """The BatchingParameters message of a batching.config file."""
    return _parse_text(path, BatchingParameters, "batching parameters")


def read_monitoring_config(path: str | Path):
    """The MonitoringConfig message of a monitoring.config file."""
    return _parse_text(path, MonitoringConfig, "monitoring config")
