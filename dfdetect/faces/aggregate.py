"""From face scores to frame and video scores: shared by evaluation and the client.

A frame is as suspicious as its most suspicious face. A video's score comes from its frames by
one of two strategies:

- ``mean``: the mean frame score.
- ``confident``: the DFDC winner's rule. When enough frames are confidently fake, the mean of
  those (a face swap that shows in a few frames is not diluted by the rest); when nearly all are
  confidently real, the mean of those; otherwise the overall mean.
"""

from __future__ import annotations

from collections import defaultdict
import numpy as np

STRATEGIES = ("mean", "confident")
DEFAULT_MIN_EVIDENCE = 0.25  # a verdict on fewer than this share of the sampled frames is low evidence
DEFAULT_STRATEGY = "confident"  # evaluation's default (EvalConfig.video_strategy) and the client's

FAKE_CONFIDENT = 0.8  # a frame score above this is confidently fake
REAL_CONFIDENT = 0.2  # below this, confidently real
FAKE_SHARE = 0.4  # "enough" confidently fake frames: more than this share of the video
REAL_SHARE = 0.9  # "nearly all" confidently real: more than this share


def video_score(scores, strategy: str = DEFAULT_STRATEGY) -> float:
    """One score for a video from its frame scores."""
    s = np.asarray(list(scores), dtype=np.float64)
    if s.size == 0:
        raise ValueError("a video score needs at least one frame score")
    if strategy == "mean":
        return float(s.mean())
    if strategy != "confident":
        raise ValueError(f"unknown video strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    fake = s[s > FAKE_CONFIDENT]
    if fake.size > FAKE_SHARE * s.size:
        return float(fake.mean())
    real = s[s < REAL_CONFIDENT]
    if real.size > REAL_SHARE * s.size:
        return float(real.mean())
    return float(s.mean())


def group_scores(video_ids, frame_indices, face_scores) -> dict[str, dict[int, float]]:
    """Per video, per frame: the top face score (inputs are parallel arrays over faces)."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for vid, frame, score in zip(video_ids, frame_indices, face_scores):
        frames = out[vid]
        frames[int(frame)] = max(float(score), frames.get(int(frame), -np.inf))
    return dict(out)


def low_evidence(frames_with_face: int, frames_sampled: int, min_evidence: float = DEFAULT_MIN_EVIDENCE) -> bool:
    """Whether a verdict rests on too few frames: faces in fewer than ``min_evidence`` of those sampled."""
    return frames_with_face < min_evidence * frames_sampled
