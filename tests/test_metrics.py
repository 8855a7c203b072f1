"""The metric code against scikit-learn, the reference, on random inputs."""

import numpy as np
import pytest
from sklearn import metrics as sk

from dfdetect.training import metrics


def _random_case(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    scores = np.clip(rng.normal(0.4 + 0.25 * y, 0.2), 0.001, 0.999)
    if ties:
        scores = np.round(scores, 1)  # many equal scores
    return y, scores


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_ap_match_sklearn(seed, ties):
    y, s = _random_case(seed, ties=ties)
    assert metrics.roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert metrics.average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_roc_curve_matches_sklearn(seed):
    y, s = _random_case(seed, ties=seed % 2 == 0)
    fpr, tpr, thr = metrics.roc_curve(y, s)
    ref_fpr, ref_tpr, ref_thr = sk.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thr[1:], ref_thr[1:])


@pytest.mark.parametrize("seed", range(8))
def test_log_loss_matches_sklearn(seed):
    y, s = _random_case(seed)
    assert metrics.log_loss(y, s) == pytest.approx(sk.log_loss(y, s), rel=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_tpr_at_fpr_matches_sklearn_curve(seed):
    y, s = _random_case(seed, ties=seed % 2 == 1)
    fpr, tpr, _ = sk.roc_curve(y, s)
    for target in (0.01, 0.05, 0.1):
        assert metrics.tpr_at_fpr(y, s, target) == pytest.approx(tpr[fpr <= target].max())


@pytest.mark.parametrize("seed", range(8))
def test_eer_lies_where_fpr_meets_fnr(seed):
    y, s = _random_case(seed)
    eer = metrics.equal_error_rate(y, s)
    fpr, tpr, _ = sk.roc_curve(y, s)
    fnr = 1 - tpr
    # The EER lies between the ROC points where FPR - FNR changes sign.
    i = np.flatnonzero(fpr - fnr >= 0)[0]
    lo, hi = sorted((fpr[i - 1], fpr[i]))
    assert lo - 1e-12 <= eer <= hi + 1e-12
    assert lo - 1e-12 <= eer and min(fnr[i - 1], fnr[i]) - 1e-12 <= eer <= max(fnr[i - 1], fnr[i]) + 1e-12


def test_extreme_cases():
    y = np.array([0, 0, 1, 1])
    assert metrics.roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.equal_error_rate(y, [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert metrics.roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert metrics.equal_error_rate(y, [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert metrics.roc_auc(y, [0.5] * 4) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_threshold_for_fpr_keeps_the_rate(seed):
    y, s = _random_case(seed, n=500)
    for target in (0.0, 0.01, 0.05, 0.2):
        t = metrics.threshold_for_fpr(y, s, target)
        achieved = np.mean(s[y == 0] >= t)
        assert achieved <= target + 1e-12
        # And it is the lowest such threshold: any lower real score would add a false positive.
        lower = s[(y == 0) & (s < t)]
        if lower.size:
            assert np.mean(s[y == 0] >= lower.max()) > target


def test_accuracy_and_summary():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.2, 0.6, 0.7, 0.4])
    assert metrics.accuracy(y, p, 0.5) == pytest.approx(sk.accuracy_score(y, p >= 0.5))
    s = metrics.summary(y, p, 0.5)
    assert set(s) >= {"auc", "log_loss", "eer", "average_precision", "accuracy", "tpr_at_fpr_1pct",
                      "tpr_at_fpr_5pct", "threshold", "count"}
    one_class = metrics.summary([1, 1], [0.7, 0.9], 0.5)
    assert "auc" not in one_class and one_class["accuracy"] == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="both real and fake"):
        metrics.roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="differ in length"):
        metrics.log_loss([0, 1], [0.5])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        metrics.log_loss([0, 2], [0.5, 0.5])
