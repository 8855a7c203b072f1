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
        raise BadInputError(f"cannot parse model config file {path} as a ModelServerConfig: {e}") from None
    return config


def write_model_server_config(config: model_server_config_pb2.ModelServerConfig, path: str | Path,
                              header: str = "") -> None:
    """Write atomically (temporary file, then rename), keeping a leading comment block."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + text_format.MessageToString(config))
    tmp.replace(path)


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
