"""TensorFlow Serving's ``models.config``: the one reader and writer, for serving and export.

``models.config`` is a text-format ``ModelServerConfig``; a typo fails the parse with the
protobuf error (line and column), never silently. The server reads it; export reads the version
labels (labelled versions survive retention) and ``dfdetect export label`` writes them.

TensorFlow Serving's protos are imported where a file is read or written, so that
``DEFAULT_MODELS_CONFIG`` can be named by the command-line parsers of every install (the thin
client's builds them too). The thin client itself (client/, web/, loadtests/) never imports this.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from dfdetect.errors import BadInputError

if TYPE_CHECKING:
    from tensorflow_serving.config import model_server_config_pb2

# The model config the server ships with: serving/models.config (k8s/base/config/ holds its copy).
DEFAULT_MODELS_CONFIG = files("dfdetect.serving") / "models.config"


def read_model_server_config(path: str | Path) -> model_server_config_pb2.ModelServerConfig:
    """Parse a models.config file; BadInputError naming the line and column of a typo."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"model config file {path} does not exist")
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

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
    from google.protobuf import text_format

    text = header + text_format.MessageToString(config)
    for target in [Path(path), *config_copies(path)]:
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        tmp.replace(target)


def leading_comments(path: str | Path) -> str:
    """The comment block a config file starts with (kept when the file is rewritten)."""
    lines = []
    for line in Path(path).read_text().splitlines(keepends=True):
        if not line.lstrip().startswith("#"):
            break
        lines.append(line)
    return "".join(lines)


def find_model(config: model_server_config_pb2.ModelServerConfig, name: str):
    """The entry of model ``name`` in a parsed config; BadInputError listing the models if absent."""
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
