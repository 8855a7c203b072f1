"""The run folder: what training writes and evaluation and export read, named once.

A run is a folder under the runs folder (``runs/<preset>-<time>/``, or ``runs/<NAME>/`` for a
named run): ``config.yaml`` (the training config it ran with), ``best.keras`` (the checkpoint of
lowest validation loss), ``calibration.json`` and ``metrics.json`` (evaluation), ``trained.json``
(written once training has finished), ``history.csv`` and ``curves.png``. ``runs/LATEST`` holds
the name of the newest run. The config's meaning belongs to training; here it is plain data.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from dfdetect.errors import BadInputError

LATEST = "LATEST"
CONFIG = "config.yaml"
CHECKPOINT = "best.keras"
CALIBRATION = "calibration.json"
METRICS = "metrics.json"
TRAINED = "trained.json"
HISTORY = "history.csv"
CURVES = "curves.png"
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def named_run_dir(runs_dir: str | Path, name: str) -> Path:
    """The folder of a run named by its caller (a Kubernetes Job names it after itself, so a
    restarted pod finds the run it was in); BadInputError for a name that is not a plain one."""
    if not RUN_NAME.fullmatch(name):
        raise BadInputError(f"run name {name!r} must be letters, digits, '.', '_' or '-' (at most 128), "
                            "not starting with '.'")
    return Path(runs_dir) / name


def _replace(path: Path, text: str) -> None:
    """``path`` written whole or not at all (other workers or an export may be reading)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def mark_latest(run_dir: Path) -> None:
    """Name ``run_dir`` in its runs folder's LATEST."""
    _replace(run_dir.parent / LATEST, run_dir.name)


def latest_run(runs_dir: str | Path = "runs") -> Path:
    """The newest run folder (as named by runs/LATEST)."""
    marker = Path(runs_dir) / LATEST
    if not marker.is_file():
        raise BadInputError(f"no training run in {runs_dir}: run `dfdetect train` (or `make train`) first")
    run = Path(runs_dir) / marker.read_text().strip()
    if not run.is_dir():
        raise BadInputError(f"{marker} names {run}, which does not exist")
    return run


def has_config(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run's config (it has been started)."""
    return (Path(run_dir) / CONFIG).is_file()


def write_run_config(run_dir: Path, config: dict) -> None:
    """config.yaml, written whole or not at all."""
    _replace(run_dir / CONFIG, yaml.safe_dump(config, sort_keys=False))


def read_run_config(run_dir: str | Path) -> dict:
    """The run's config.yaml as data; BadInputError if the folder is not a run."""
    if not has_config(run_dir):
        raise BadInputError(f"{run_dir} is not a training run (no {CONFIG})")
    return yaml.safe_load((Path(run_dir) / CONFIG).read_text())
