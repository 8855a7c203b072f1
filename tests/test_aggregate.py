import numpy as np
import pytest

from dfdetect.faces.aggregate import group_scores, video_score


def test_a_frame_scores_as_its_most_suspicious_face():
    grouped = group_scores(["a", "a", "a", "b"], [0, 0, 1, 0], [0.2, 0.9, 0.4, 0.3])
    assert grouped == {"a": {0: 0.9, 1: 0.4}, "b": {0: 0.3}}


def test_mean_strategy():
    assert video_score([0.2, 0.4, 0.9], "mean") == pytest.approx(0.5)


def test_confident_strategy():
    # Enough confidently fake frames (more than 40%): their mean, not diluted by the rest.
    assert video_score([0.9, 0.95, 0.1, 0.1], "confident") == pytest.approx(0.925)
    # Nearly all confidently real: their mean.
    assert video_score([0.05] * 19 + [0.5], "confident") == pytest.approx(0.05)
    # Neither: the overall mean.
    mixed = [0.9, 0.3, 0.4, 0.5, 0.1]
    assert video_score(mixed, "confident") == pytest.approx(np.mean(mixed))


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one frame"):
        video_score([], "mean")
    with pytest.raises(ValueError, match="unknown video strategy 'median'"):
        video_score([0.5], "median")
