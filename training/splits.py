"""Leak-free train/val/test splits: by video, grouped by source.

Frames of one video are near-duplicates, and a fake shares everything but the face with the
real video it was made from. Splitting by frame, or by video while ignoring the source, puts the
same content on both sides and inflates every score. Here a whole source group goes to one split.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from dfdetect.errors import BadInputError
from dfdetect.training.datasets import MediaItem

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (8.0, 1.0, 1.0)


def parse_ratios(text: str | Sequence[float]) -> tuple[float, float, float]:
    """'8:1:1', '0.8,0.1,0.1' or three numbers -> train, val, test weights."""
    if isinstance(text, str):
        parts = [p for p in text.replace(",", ":").split(":") if p.strip()]
    else:
        parts = list(text)
    try:
        ratios = tuple(float(p) for p in parts)
    except ValueError:
        raise BadInputError(f"split ratios must be three numbers like 8:1:1, got {text!r}") from None
    if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0:
        raise BadInputError(f"split ratios must be three non-negative numbers train:val:test with "
                            f"train > 0, like 8:1:1; got {text!r}")
    return ratios  # type: ignore[return-value]


@dataclass
class SplitPlan:
    assignment: dict[str, str]  # video_id -> split
    excluded: dict[str, str] = field(default_factory=dict)  # video_id -> why it is left out

    def split_of(self, video_id: str) -> str | None:
        return self.assignment.get(video_id)


def assign_splits(items: Iterable[MediaItem], ratios: Sequence[float] = DEFAULT_RATIOS,
                  seed: int = 0) -> SplitPlan:
    """Assign every item a split so that no source group crosses splits.

    Groups are shuffled with ``seed`` (the result does not depend on the order of ``items``)
    and handed, largest first, to the split furthest below its share of videos.

    A split the dataset imposes (Celeb-DF's official test list) is honoured: its videos go
    there, the split takes no other groups, and the other videos of a group that has some in
    it are excluded (they would leak the test identities into training), not moved.
    """
    ratios = parse_ratios(ratios)
    groups: dict[str, list[MediaItem]] = defaultdict(list)
    for item in items:
        groups[item.group].append(item)

    assignment: dict[str, str] = {}
    excluded: dict[str, str] = {}
    imposed: set[str] = set()
    free_groups: list[str] = []
    for name in sorted(groups):
        members = groups[name]
        fixed = {m.fixed_split for m in members if m.fixed_split}
        if not fixed:
            free_groups.append(name)
            continue
        if len(fixed) > 1:
            raise BadInputError(f"source group {name} is listed in several imposed splits: {sorted(fixed)}")
        split = fixed.pop()
        imposed.add(split)
        for m in members:
            if m.fixed_split:
                assignment[m.video_id] = split
            else:
                excluded[m.video_id] = f"shares source group {name} with the imposed {split} split"

    shares = {s: (0.0 if s in imposed else r) for s, r in zip(SPLITS, ratios)}
    total_share = sum(shares.values())
    free_videos = sum(len(groups[g]) for g in free_groups)
    if total_share == 0:
        for g in free_groups:
            for m in groups[g]:
                excluded[m.video_id] = "every split is imposed by the dataset"
        return SplitPlan(assignment, excluded)
    target = {s: free_videos * shares[s] / total_share for s in SPLITS}
    count = dict.fromkeys(SPLITS, 0)

    rng = random.Random(seed)
    rng.shuffle(free_groups)
    free_groups.sort(key=lambda g: -len(groups[g]))  # stable: the shuffle breaks ties
    for g in free_groups:
        split = max((s for s in SPLITS if shares[s] > 0), key=lambda s: target[s] - count[s])
        for m in groups[g]:
            assignment[m.video_id] = split
        count[split] += len(groups[g])
    return SplitPlan(assignment, excluded)


def find_leaks(items: Iterable[MediaItem], assignment: dict[str, str]) -> list[str]:
    """Source groups whose videos sit in more than one split (empty when the split is clean)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for item in items:
        split = assignment.get(item.video_id)
        if split is not None:
            seen[item.group].add(split)
    return sorted(g for g, splits in seen.items() if len(splits) > 1)


def in_shard(video_id: str, shard: int, num_shards: int) -> bool:
    """Whether a video belongs to shard ``shard`` of ``num_shards`` (stable under reordering)."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise BadInputError(f"--shard must be in [0, --num-shards) with --num-shards >= 1; "
                            f"got shard {shard} of {num_shards}")
    digest = hashlib.sha1(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards == shard
