"""Detection metrics as the field reports them, in plain NumPy.

Scores are fake probabilities (or any score that grows with "fake"); labels are 1 = fake. The
tests hold every function to scikit-learn's reference implementation on random inputs.
"""

from __future__ import annotations

import numpy as np


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size == 0:
        raise ValueError("no samples to score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return y, s


def has_both_classes(labels) -> bool:
    y = np.asarray(labels).ravel()
    return bool((y == 1).any() and (y == 0).any())


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and thresholds (descending), one point per
    distinct score, starting at (0, 0) with an infinite threshold."""
    y, s = _check(labels, scores)
    if not has_both_classes(y):
        raise ValueError("the ROC curve needs both real and fake samples")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # The last index of each run of equal scores: a threshold admits all of a tie at once.
    distinct = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thresholds


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (ties count half)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def average_precision(labels, scores) -> float:
    """Mean precision at each recall step: sum over thresholds of (R_n - R_{n-1}) P_n."""
    y, s = _check(labels, scores)
    if not (y == 1).any():
        raise ValueError("average precision needs at least one fake sample")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[distinct]
    precision = tps / (distinct + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(labels, probabilities, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of fake probabilities (clipped to [eps, 1 - eps])."""
    y, p = _check(labels, probabilities)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def equal_error_rate(labels, scores) -> float:
    """The rate where false positives equal false negatives, interpolated on the ROC curve."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    diff = fpr - fnr  # rises from -1 to +1 along the curve
    i = int(np.flatnonzero(diff >= 0)[0])
    if diff[i] == 0 or i == 0:
        return float(fpr[i])
    # Linear interpolation between the points on both sides of the crossing.
    w = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(labels, scores, max_fpr: float) -> float:
    """The best true-positive rate among operating points with false-positive rate <= max_fpr."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def threshold_for_fpr(labels, scores, max_fpr: float) -> float:
    """The lowest threshold t such that calling "fake" when score >= t keeps the false-positive
    rate on these samples at or below max_fpr."""
    y, s = _check(labels, scores)
    negatives = np.sort(s[y == 0])[::-1]
    if negatives.size == 0:
        raise ValueError("a threshold for a false-positive rate needs real samples")
    allowed = int(np.floor(max_fpr * negatives.size + 1e-9))
    if allowed >= negatives.size:
        return float(negatives[-1])
    # Strictly above the first real score that must be rejected.
    return float(np.nextafter(negatives[allowed], np.inf))


def accuracy(labels, scores, threshold: float) -> float:
    y, s = _check(labels, scores)
    return float(np.mean((s >= threshold).astype(np.int64) == y))


def summary(labels, probabilities, threshold: float) -> dict:
    """Every figure of one set of scores, as a JSON-ready dict."""
    y, p = _check(labels, probabilities)
    out = {"count": int(y.size), "fake": int(y.sum()), "real": int((1 - y).sum()),
           "log_loss": log_loss(y, p), "threshold": float(threshold), "accuracy": accuracy(y, p, threshold)}
    if has_both_classes(y):
        out.update(auc=roc_auc(y, p), eer=equal_error_rate(y, p), average_precision=average_precision(y, p),
                   tpr_at_fpr_1pct=tpr_at_fpr(y, p, 0.01), tpr_at_fpr_5pct=tpr_at_fpr(y, p, 0.05))
    return out
