"""TensorFlow Serving's ``batching.config`` and ``monitoring.config``, read with its own protobuf
messages. ``models.config`` (shared with export, which writes version labels) is
``dfdetect.modelsconfig``'s.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from dfdetect.errors import BadInputError

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
