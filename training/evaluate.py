"""Evaluation as the field reports it, and calibration for the product's verdicts.

For a trained run: score every face of the validation and test splits, then

- calibrate on validation: a temperature T for ``sigmoid(logit / T)`` (fitted by minimising
  log loss, so probabilities mean what they say) and the decision threshold that keeps the
  frame-level false-positive rate at the target (1% by default);
- report, per split, frame-level and video-level AUC, log loss, EER, average precision,
  accuracy at the threshold and TPR at 1% and 5% FPR. A frame scores as its most suspicious
  face; a video from its frames by the configured strategy (mean or confident);
- write ``calibration.json``, ``metrics.json`` and ``roc_<split>.png`` into the run folder.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from dfdetect.faces.aggregate import group_scores, video_score
from dfdetect.runs import CALIBRATION, CHECKPOINT, METRICS
from dfdetect.training import metrics
from dfdetect.training.config import RunConfig

log = logging.getLogger(__name__)



@dataclass
class Scores:
    """Every face of a split: its logit, label, video and frame."""

    logits: np.ndarray
    labels: np.ndarray
    video_ids: np.ndarray
    frames: np.ndarray


def score_split(model, split, image_size: int, batch_size: int) -> Scores:
    from dfdetect.prepared import evaluation_dataset

    logits, labels, videos, frames = [], [], [], []
    for images, meta in evaluation_dataset(split, image_size, batch_size):
        logits.append(model(images, training=False).numpy().reshape(-1))
        labels.append(meta["label"].numpy())
        videos.append(meta["video_id"].numpy())
        frames.append(meta["frame_index"].numpy())
    return Scores(np.concatenate(logits).astype(np.float64), np.concatenate(labels),
                  np.array([v.decode() for v in np.concatenate(videos)]), np.concatenate(frames))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising log loss of sigmoid(logits / T) (searched over log T)."""
    def loss(log_t: float) -> float:
        return metrics.log_loss(labels, sigmoid(logits / np.exp(log_t)))

    result = minimize_scalar(loss, bounds=(np.log(0.05), np.log(100.0)), method="bounded")
    return float(np.exp(result.x))


def frame_and_video_scores(scores: Scores, temperature: float, strategy: str):
    """(frame labels, frame probabilities), (video labels, video probabilities)."""
    probs = sigmoid(scores.logits / temperature)
    by_video = group_scores(scores.video_ids, scores.frames, probs)
    label_of = dict(zip(scores.video_ids, scores.labels))
    frame_y, frame_p, video_y, video_p = [], [], [], []
    for vid in sorted(by_video):
        frame_probs = list(by_video[vid].values())
        frame_y += [label_of[vid]] * len(frame_probs)
        frame_p += frame_probs
        video_y.append(label_of[vid])
        video_p.append(video_score(frame_probs, strategy))
    return (np.array(frame_y), np.array(frame_p)), (np.array(video_y), np.array(video_p))


def calibrate(val: Scores, config: RunConfig) -> dict:
    temperature = fit_temperature(val.logits, val.labels)
    (fy, fp), _ = frame_and_video_scores(val, temperature, config.eval.video_strategy)
    threshold = metrics.threshold_for_fpr(fy, fp, config.eval.target_fpr)
    # Any threshold up to the next fake frame keeps the same validation rates; the middle of
    # that gap is the least brittle choice (a perfectly separated validation set would
    # otherwise put it a hair above the highest real score).
    above = fp[(fy == 1) & (fp >= threshold)]
    if above.size and above.min() > threshold:
        threshold = float((threshold + above.min()) / 2)
    before = metrics.log_loss(val.labels, sigmoid(val.logits))
    after = metrics.log_loss(val.labels, sigmoid(val.logits / temperature))
    calibration = {
        "temperature": temperature,
        "threshold": threshold,
        "target_fpr": config.eval.target_fpr,
        "basis": "validation split, frame level (a frame scores as its most suspicious face)",
        "val_log_loss_before": before,
        "val_log_loss_after": after,
        "val_fpr_at_threshold": float(np.mean(fp[fy == 0] >= threshold)) if (fy == 0).any() else None,
        "val_tpr_at_threshold": float(np.mean(fp[fy == 1] >= threshold)) if (fy == 1).any() else None,
        "video_strategy": config.eval.video_strategy,
    }
    log.info("calibration: temperature %.3f (val log loss %.4f -> %.4f), threshold %.4f for FPR <= %.2g",
             temperature, before, after, threshold, config.eval.target_fpr)
    return calibration


def evaluate_run(run_dir: str | Path, splits=("val", "test")) -> dict:
    """Calibrate on validation and evaluate the best checkpoint of a run on ``splits``."""
    import keras

    from dfdetect.prepared import load_manifest, split_files
    from dfdetect.training.plots import plot_roc
    from dfdetect.training.config import load_run_config

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.is_file():
        from dfdetect.errors import BadInputError

        raise BadInputError(f"{run_dir} has no {CHECKPOINT}: the run did not finish an epoch")
    model = keras.models.load_model(checkpoint)
    manifest = load_manifest(config.data.prepared)
    size, batch = config.model.image_size, config.eval.batch_size

    val = score_split(model, split_files(config.data.prepared, manifest, "val"), size, batch)
    calibration = calibrate(val, config)
    (run_dir / CALIBRATION).write_text(json.dumps(calibration, indent=1))

    results = {"calibration": calibration, "splits": {}}
    for name in splits:
        scores = val if name == "val" else score_split(
            model, split_files(config.data.prepared, manifest, name, need_both_classes=False), size, batch)
        (fy, fp), (vy, vp) = frame_and_video_scores(scores, calibration["temperature"], config.eval.video_strategy)
        threshold = calibration["threshold"]
        results["splits"][name] = {"frame": metrics.summary(fy, fp, threshold),
                                   "video": metrics.summary(vy, vp, threshold)}
        curves = {}
        for level, (y, p) in (("frame", (fy, fp)), ("video", (vy, vp))):
            if metrics.has_both_classes(y):
                fpr, tpr, _ = metrics.roc_curve(y, p)
                curves[f"{level} level"] = (fpr, tpr, metrics.roc_auc(y, p))
        if curves:
            plot_roc(curves, run_dir / f"roc_{name}.png", f"ROC, {name} split ({config.preset})")
    (run_dir / METRICS).write_text(json.dumps(results, indent=1))
    return results


def format_metrics(results: dict) -> str:
    """A readable table of a metrics.json."""
    keys = ("auc", "log_loss", "eer", "average_precision", "accuracy", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct")
    lines = [f"{'split':6s} {'level':6s} {'count':>6s} " + " ".join(f"{k:>17s}" for k in keys)]
    for split, levels in results["splits"].items():
        for level, m in levels.items():
            values = " ".join(f"{m[k]:17.4f}" if k in m else f"{'-':>17s}" for k in keys)
            lines.append(f"{split:6s} {level:6s} {m['count']:6d} {values}")
    c = results["calibration"]
    lines.append(f"threshold {c['threshold']:.4f} (FPR <= {c['target_fpr']:g} on validation frames), "
                 f"temperature {c['temperature']:.3f}")
    return "\n".join(lines)
