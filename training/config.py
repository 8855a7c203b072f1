"""Training configuration: typed dataclasses, named presets, YAML files and ``--set`` overrides.

A run is described by one :class:`RunConfig`. It starts from a named preset (``smoke`` by
default), a YAML file may override any field, then ``--set section.field=value`` pairs; the
resolved config is saved as ``config.yaml`` in the run folder and copied into every export.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from dfdetect.errors import BadInputError
from dfdetect.faces.aggregate import DEFAULT_STRATEGY

BACKBONES = tuple(f"efficientnet_b{i}" for i in range(8)) + ("resnet50",)
BALANCE_MODES = ("class_weight", "sample", "none")
VIDEO_STRATEGIES = ("mean", "confident")


@dataclass
class ModelConfig:
    backbone: str = "efficientnet_b0"  # efficientnet_b0 ... efficientnet_b7 or resnet50
    image_size: int = 224  # side S of the square uint8 input crops
    dense_units: list[int] = field(default_factory=lambda: [512, 128])  # head: Dense ReLU layers after pooling
    dropout: float = 0.5  # dropout after the first head layer
    mixed_precision: str = "auto"  # auto (on with a GPU), on, off
    batchnorm_momentum: float = 0.99  # lower it for short runs, so inference statistics catch up


@dataclass
class DataConfig:
    prepared: str = "data/prepared/demo"  # folder written by `dfdetect prepare` (has manifest.json)
    batch_size: int = 32  # global batch size (split across replicas)
    shuffle_buffer: int = 4096  # faces held for shuffling
    augment: bool = True  # rotation, shift, shear, zoom, flip, JPEG re-compression, blur
    rotation: float = 0.03  # max rotation, fraction of a full turn
    shift: float = 0.1  # max shift, fraction of the side
    shear: float = 0.1  # max shear factor
    zoom: float = 0.1  # max zoom in or out, fraction
    jpeg_quality: list[int] = field(default_factory=lambda: [60, 100])  # re-compression quality range
    jpeg_probability: float = 0.5  # share of training crops re-compressed
    blur_probability: float = 0.2  # share of training crops blurred
    balance: str = "class_weight"  # class_weight, sample (balanced sampling) or none
    sbi_rate: float = 0.0  # share of real crops turned into self-blended pseudo-fakes on the fly
    cache: bool = False  # keep decoded crops in memory after the first epoch (small datasets)


@dataclass
class TrainConfig:
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    learning_rate: float = 1e-4  # Adam
    early_stopping_patience: int = 5  # epochs without a better validation loss before stopping
    steps_per_epoch: int = 0  # 0: one pass over the training faces
    seed: int = 0  # shuffling, augmentation and initialisation


@dataclass
class EvalConfig:
    video_strategy: str = DEFAULT_STRATEGY  # mean or confident (DFDC winner's)
    target_fpr: float = 0.01  # the decision threshold is calibrated for this false-positive rate
    batch_size: int = 64  # inference batch size


@dataclass
class RunConfig:
    preset: str = "smoke"  # the preset this config started from
    runs_dir: str = "runs"  # run folders are created here
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        """Reject impossible values before any work starts, naming what is allowed."""
        m, d, t, e = self.model, self.data, self.train, self.eval
        checks = [
            (m.backbone in BACKBONES, f"model.backbone {m.backbone!r} is unknown; allowed: {', '.join(BACKBONES)}"),
            (m.image_size >= 32, f"model.image_size must be at least 32, got {m.image_size}"),
            (m.mixed_precision in ("auto", "on", "off"), f"model.mixed_precision must be auto, on or off, got {m.mixed_precision!r}"),
            (0 < m.batchnorm_momentum < 1, f"model.batchnorm_momentum must be in (0, 1), got {m.batchnorm_momentum}"),
            (0 <= m.dropout < 1, f"model.dropout must be in [0, 1), got {m.dropout}"),
            (all(u > 0 for u in m.dense_units), f"model.dense_units must be positive, got {m.dense_units}"),
            (d.batch_size > 0, f"data.batch_size must be positive, got {d.batch_size}"),
            (d.balance in BALANCE_MODES, f"data.balance {d.balance!r} is unknown; allowed: {', '.join(BALANCE_MODES)}"),
            (0 <= d.sbi_rate <= 1, f"data.sbi_rate must be in [0, 1], got {d.sbi_rate}"),
            (len(d.jpeg_quality) == 2 and 1 <= d.jpeg_quality[0] <= d.jpeg_quality[1] <= 100,
             f"data.jpeg_quality must be [low, high] within 1..100, got {d.jpeg_quality}"),
            (t.epochs > 0, f"train.epochs must be positive, got {t.epochs}"),
            (t.learning_rate > 0, f"train.learning_rate must be positive, got {t.learning_rate}"),
            (t.steps_per_epoch >= 0, f"train.steps_per_epoch must be >= 0, got {t.steps_per_epoch}"),
            (e.video_strategy in VIDEO_STRATEGIES, f"eval.video_strategy {e.video_strategy!r} is unknown; allowed: {', '.join(VIDEO_STRATEGIES)}"),
            (0 < e.target_fpr < 1, f"eval.target_fpr must be in (0, 1), got {e.target_fpr}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _smoke() -> RunConfig:
    """The default: the demo data on 2 CPU cores in a few minutes.

    Small crops, a small head, a high learning rate and a quick batch-norm momentum so that a
    from-scratch EfficientNet-B0 learns within a dozen short epochs; augmentation and pseudo-fakes
    (which pay off over long runs) are off because they slow convergence beyond that budget.
    """
    c = RunConfig(preset="smoke")
    c.model.image_size = 96
    c.model.dense_units = [128, 64]
    c.model.dropout = 0.3
    c.model.batchnorm_momentum = 0.9
    c.data.batch_size = 32
    c.data.cache = True
    c.data.augment = False
    c.data.sbi_rate = 0.0
    c.train.epochs = 12
    c.train.learning_rate = 1e-3
    c.train.early_stopping_patience = 6
    return c


def _dfdc_b0() -> RunConfig:
    """DFDC on a GPU node: EfficientNet-B0 at 224, balanced sampling."""
    c = RunConfig(preset="dfdc_b0")
    c.data.prepared = "data/prepared/dfdc"
    c.data.batch_size = 64
    c.data.balance = "sample"
    c.model.mixed_precision = "auto"
    c.train.epochs = 40
    return c


def _celebdf_b4() -> RunConfig:
    """Celeb-DF v2 on GPUs: EfficientNet-B4 at 380 with self-blended pseudo-fakes."""
    c = RunConfig(preset="celebdf_b4")
    c.model.backbone = "efficientnet_b4"
    c.model.image_size = 380
    c.data.prepared = "data/prepared/celebdf"
    c.data.batch_size = 32
    c.data.sbi_rate = 0.3
    c.train.epochs = 40
    return c


PRESETS: dict[str, typing.Callable[[], RunConfig]] = {"smoke": _smoke, "dfdc_b0": _dfdc_b0, "celebdf_b4": _celebdf_b4}


def preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise BadInputError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]()


def _field_types(obj) -> dict[str, typing.Any]:
    return typing.get_type_hints(type(obj))


def _coerce(value, annotation, where: str):
    """Convert a YAML or command-line value to a field's declared type."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        (inner,) = typing.get_args(annotation)[:1]
        if isinstance(value, str):
            import yaml  # the train extra's (this module also builds the thin client's `dfdetect --help`)

            value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
        if not isinstance(value, (list, tuple)):
            raise BadInputError(f"{where} must be a list, got {value!r}")
        return [_coerce(v, inner, where) for v in value]
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _coerce(value, options[0], where)
    try:
        if annotation is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return lowered in ("true", "1", "yes")
            return bool(value)
        if annotation in (int, float, str):
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return annotation(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{where} must be {annotation.__name__}, got {value!r}") from None
    return value


def apply_overrides(config: RunConfig, values: dict, prefix: str = "") -> RunConfig:
    """Set fields from a nested mapping; an unknown field is an error naming the known ones."""
    target = config
    types_ = _field_types(target)
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key not in types_:
            raise BadInputError(f"unknown config field {where!r}; known: "
                                f"{', '.join(prefix + k for k in types_)}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise BadInputError(f"{where} is a section; give its fields, e.g. {where}.{next(iter(_field_types(current)))}")
            apply_overrides(current, value, prefix=f"{where}.")
        else:
            setattr(target, key, _coerce(value, types_[key], where))
    return config


def parse_set(pairs: list[str]) -> dict:
    """``["model.image_size=128", ...]`` -> nested mapping."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise BadInputError(f"--set takes section.field=value, got {pair!r}")
        key, value = pair.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def load_config(preset_name: str = "smoke", yaml_file: str | None = None, sets: list[str] | None = None) -> RunConfig:
    """Preset, then the YAML file, then ``--set`` pairs; validated."""
    config = preset(preset_name)
    if yaml_file:
        path = Path(yaml_file)
        if not path.is_file():
            raise BadInputError(f"config file {path} does not exist")
        import yaml

        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise BadInputError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(values, dict):
            raise BadInputError(f"config file {path} must hold a mapping of sections")
        if "preset" in values and values["preset"] != preset_name:
            config = preset(values["preset"])
        apply_overrides(config, values)
    if sets:
        apply_overrides(config, parse_set(sets))
    config.validate()
    return config


def config_from_dict(values: dict) -> RunConfig:
    """Rebuild a saved config (config.yaml of a run)."""
    config = RunConfig()
    return apply_overrides(config, values)


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The training config a run was started with (its config.yaml)."""
    from dfdetect.runs import read_run_config

    return config_from_dict(read_run_config(run_dir))
