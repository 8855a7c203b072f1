"""``dfdetect export``: a trained run -> the next numbered version in the model repository.

Steps, all before anything becomes visible:

1. load the run's best checkpoint and its calibration (temperature, threshold);
2. write the SavedModel (two signatures) into a hidden temporary folder beside the versions;
3. validation gate: reload it, run both signatures on sample crops, compare with the in-memory
   model (max abs difference <= 1e-5), check outputs lie in [0, 1] and the signatures agree;
4. warm-up requests and the model card into ``assets.extra/``;
5. the ONNX twin: tf2onnx, then onnxruntime against TensorFlow on the same crops (<= 1e-4);
6. rename the SavedModel into place; publish the ONNX twin (same version) only if it matched;
7. retention: keep the newest K versions, never one a label points to.

If a step before the rename fails, the temporary folder is removed and the repository is as it
was; the error says which check failed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from dfdetect.contract import (DEFAULT_CROP_MARGIN, DEFAULT_MODEL_NAME, INPUT_BYTES, INPUT_PIXELS, LABEL_NAMES,
                               MODEL_CARD_FILE, ONNX_SUFFIX, OUTPUT_SCORE, SIGNATURE_BYTES, SIGNATURE_PIXELS,
                               WARMUP_FILE)
from dfdetect.errors import BadInputError, DfdetectError
from dfdetect.export import onnx_twin
from dfdetect.export.repository import ModelRepository, join
from dfdetect.modelsconfig import DEFAULT_MODELS_CONFIG, version_labels

log = logging.getLogger(__name__)

SAVEDMODEL_TOLERANCE = 1e-5


class ValidationError(DfdetectError):
    """The exported model failed a check; nothing was published."""


@dataclass
class ExportResult:
    version: int
    path: str
    onnx_path: str | None
    card: dict
    removed: list[int]


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def sample_crops(prepared: str | Path, size: int, count: int = 16) -> np.ndarray:
    """Face crops to check the export with: from the run's prepared data folder where it is still
    there (real faces make outputs vary), plus generated ones for the extremes."""
    from dfdetect.prepared import evaluation_dataset, load_manifest, split_files

    crops = []
    try:
        manifest = load_manifest(prepared)
        for split in ("test", "val", "train"):
            try:
                files = split_files(prepared, manifest, split, need_both_classes=False)
            except BadInputError:
                continue
            for images, _ in evaluation_dataset(files, size, count).take(1):
                crops.extend(images.numpy())
            break
    except BadInputError:
        log.warning("prepared data of the run is gone: checking the export on generated crops only")
    rng = np.random.default_rng(0)
    crops.append(np.zeros((size, size, 3), np.uint8))
    crops.append(np.full((size, size, 3), 255, np.uint8))
    while len(crops) < count:
        crops.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return np.stack(crops[:max(count, 2)])


def encode_png(crops: np.ndarray) -> list[bytes]:
    """Lossless encodings, so the bytes signature sees exactly the pixels."""
    return [cv2.imencode(".png", cv2.cvtColor(c, cv2.COLOR_RGB2BGR))[1].tobytes() for c in crops]


def validate_savedmodel(path: str, model, temperature: float, crops: np.ndarray) -> dict:
    """The gate: reload, run both signatures, compare. Raises ValidationError naming the check."""
    from dfdetect.export.savedmodel import LoadedModel

    try:
        loaded = LoadedModel(path)
    except Exception as e:  # a SavedModel that does not load must never be published
        raise ValidationError(f"the exported SavedModel does not load: {e}") from e
    missing = {SIGNATURE_PIXELS, SIGNATURE_BYTES} - set(loaded.signatures)
    if missing:
        raise ValidationError(f"the exported SavedModel lacks signatures {sorted(missing)}")
    logits = np.asarray(model(crops, training=False), dtype=np.float64).reshape(-1)
    expected = 1.0 / (1.0 + np.exp(-logits / temperature))
    pixels = loaded.pixels(crops)
    from_bytes = loaded.image_bytes(encode_png(crops))
    checks = {
        "outputs_in_range": bool(np.all(np.isfinite(pixels)) and pixels.min() >= 0 and pixels.max() <= 1),
        "max_abs_diff_in_memory": float(np.max(np.abs(pixels - expected))),
        "max_abs_diff_signatures": float(np.max(np.abs(pixels - from_bytes))),
        "samples": int(len(crops)),
    }
    if not checks["outputs_in_range"]:
        raise ValidationError(f"exported outputs leave [0, 1] (min {np.nanmin(pixels)}, max {np.nanmax(pixels)}, "
                              f"finite {bool(np.all(np.isfinite(pixels)))})")
    if checks["max_abs_diff_in_memory"] > SAVEDMODEL_TOLERANCE:
        raise ValidationError(f"the reloaded SavedModel differs from the trained model by "
                              f"{checks['max_abs_diff_in_memory']:.3g} (allowed {SAVEDMODEL_TOLERANCE:g})")
    if checks["max_abs_diff_signatures"] > SAVEDMODEL_TOLERANCE:
        raise ValidationError(f"{SIGNATURE_BYTES} and {SIGNATURE_PIXELS} disagree by "
                              f"{checks['max_abs_diff_signatures']:.3g} on the same crops")
    return {**checks, "reference": pixels}


def _load_run(run_dir: Path):
    """The run's saved config (as data), its best checkpoint loaded, its calibration and metrics."""
    import keras

    from dfdetect.runs import CALIBRATION, CHECKPOINT, METRICS, read_run_config

    config = read_run_config(run_dir)
    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.is_file():
        raise BadInputError(f"{run_dir} has no {CHECKPOINT}: the run did not finish an epoch")
    try:
        model = keras.models.load_model(checkpoint)
    except Exception as e:  # zip, HDF5 or config errors: all mean the checkpoint is unusable
        raise BadInputError(f"cannot load checkpoint {checkpoint} (corrupt or not a Keras model): {e}") from None
    if not (run_dir / CALIBRATION).is_file():
        raise BadInputError(f"{run_dir} has no {CALIBRATION}: run `dfdetect evaluate --run {run_dir}` first")
    calibration = json.loads((run_dir / CALIBRATION).read_text())
    metrics = json.loads((run_dir / METRICS).read_text()) if (run_dir / METRICS).is_file() else None
    return config, model, calibration, metrics


def _dataset_facts(prepared: str) -> tuple[dict, float]:
    """What the model card says of the data, and the crop margin the crops were cut with."""
    path = Path(prepared) / "manifest.json"
    if not path.is_file():
        return {"prepared": prepared}, DEFAULT_CROP_MARGIN
    manifest = json.loads(path.read_text())
    facts = {"prepared": prepared, **manifest.get("dataset", {}),
             "splits": {s: {"videos": e["videos"], "faces": e["faces"]} for s, e in manifest.get("splits", {}).items()},
             "preparation": manifest.get("settings", {}), "detector": manifest.get("detector")}
    return facts, float(manifest.get("settings", {}).get("margin", DEFAULT_CROP_MARGIN))


def export_run(run_dir: str | Path, repository: str = "model_repository", model_name: str = DEFAULT_MODEL_NAME,
               version: int | None = None, keep: int = 5, onnx: bool = True,
               models_config: str | Path = DEFAULT_MODELS_CONFIG) -> ExportResult:
    """Export a run as a new version; see the module docstring for the steps."""
    import tensorflow as tf

    from dfdetect.export.savedmodel import crop_size, write_savedmodel
    from dfdetect.export.warmup import warmup_logs, write_warmup

    started = time.perf_counter()
    run_dir = Path(run_dir)
    config, model, calibration, metrics = _load_run(run_dir)
    repo = ModelRepository(repository, model_name)
    created = repo.ensure_writable()
    version = repo.next_version() if version is None else int(version)
    repo.check_new_version(version)
    onnx_repo = ModelRepository(repository, model_name + ONNX_SUFFIX)
    onnx_created = False
    if onnx:
        onnx_created = onnx_repo.ensure_writable()
        onnx_repo.check_new_version(version)

    size = crop_size(model)
    temperature = float(calibration["temperature"])
    prepared = config["data"]["prepared"]
    crops = sample_crops(prepared, size)
    tmp = repo.temporary(version)
    onnx_tmp = onnx_repo.temporary(version) if onnx else None
    try:
        write_savedmodel(model, temperature, tmp)
        checks = validate_savedmodel(tmp, model, temperature, crops)
        reference = checks.pop("reference")
        tf.io.gfile.makedirs(join(tmp, "assets.extra"))
        write_warmup(join(tmp, WARMUP_FILE), warmup_logs(model_name, crops[:8], encode_png(crops[:8])))

        onnx_report = {"published": False}
        if onnx:
            tf.io.gfile.makedirs(onnx_tmp)
            onnx_file = join(onnx_tmp, "model.onnx")
            try:
                onnx_twin.convert(tmp, onnx_file)
                diff = onnx_twin.parity(onnx_file, crops, reference)
                onnx_report = {"max_abs_diff": diff, "tolerance": onnx_twin.PARITY_TOLERANCE, "opset": onnx_twin.OPSET,
                               "published": diff <= onnx_twin.PARITY_TOLERANCE}
                if not onnx_report["published"]:
                    onnx_report["reason"] = f"onnxruntime differs from TensorFlow by {diff:.3g}"
            except onnx_twin.OnnxError as e:
                onnx_report = {"published": False, "reason": str(e)}
            if not onnx_report["published"]:
                log.error("ONNX twin not published: %s", onnx_report["reason"])

        card = {
            "model_name": model_name,
            "version": version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git_revision": _git_revision(),
            "run": str(run_dir),
            "backbone": config["model"]["backbone"],
            "crop_size": size,
            "crop_margin": None,
            "label_convention": {str(k): v for k, v in LABEL_NAMES.items()},
            "output": f"{OUTPUT_SCORE} = sigmoid(logit / temperature), probability that a face crop is fake",
            "signatures": {
                SIGNATURE_PIXELS: {"inputs": {INPUT_PIXELS: f"uint8 [-1, {size}, {size}, 3] RGB"},
                                   "outputs": {OUTPUT_SCORE: "float32 [-1]"}},
                SIGNATURE_BYTES: {"inputs": {INPUT_BYTES: "string [-1] JPEG or PNG face crops, any size"},
                                  "outputs": {OUTPUT_SCORE: "float32 [-1]"}},
            },
            "threshold": float(calibration["threshold"]),
            "temperature": temperature,
            "calibration": calibration,
            "video_strategy": calibration["video_strategy"],  # what the threshold was set for
            "training_config": config,
            "metrics": metrics,
            "validation": checks,
            "onnx": onnx_report,
        }
        card["dataset"], card["crop_margin"] = _dataset_facts(prepared)
        with tf.io.gfile.GFile(join(tmp, MODEL_CARD_FILE), "w") as f:
            f.write(json.dumps(card, indent=1))

        path = repo.publish(tmp, version)
    except BaseException:
        repo.discard(tmp, created)
        if onnx_tmp:
            onnx_repo.discard(onnx_tmp, onnx_created)
        raise

    onnx_path = None
    if onnx and onnx_report["published"]:
        with tf.io.gfile.GFile(join(onnx_repo.path, "config.pbtxt"), "w") as f:
            f.write(onnx_twin.triton_config(onnx_repo.name, size))
        onnx_path = onnx_repo.publish(onnx_tmp, version)
    elif onnx_tmp:
        onnx_repo.discard(onnx_tmp, onnx_created)

    protected = set(version_labels(models_config, model_name).values())
    removed = repo.retain(keep, protected)
    for v in removed:
        if tf.io.gfile.exists(onnx_repo.version_path(v)):
            tf.io.gfile.rmtree(onnx_repo.version_path(v))
    log.info("exported %s version %d in %.1f s", model_name, version, time.perf_counter() - started)
    return ExportResult(version, path, onnx_path, card, removed)
