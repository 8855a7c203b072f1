import random
from collections import Counter

import pytest

from dfdetect.errors import BadInputError
from dfdetect.training.datasets import MediaItem
from dfdetect.training.splits import SPLITS, assign_splits, find_leaks, in_shard, parse_ratios


def _dataset(groups: int, rng: random.Random) -> list[MediaItem]:
    """Groups of one real video and 0-4 fakes made from it (DFDC-like)."""
    items = []
    for g in range(groups):
        items.append(MediaItem(f"/d/r{g}.mp4", f"r{g}.mp4", 0, f"g{g}", "video"))
        for k in range(rng.randint(0, 4)):
            items.append(MediaItem(f"/d/f{g}_{k}.mp4", f"f{g}_{k}.mp4", 1, f"g{g}", "video"))
    return items


@pytest.mark.parametrize("seed", range(10))
def test_no_video_and_no_source_group_crosses_splits(seed):
    rng = random.Random(seed)
    items = _dataset(rng.randint(3, 200), rng)
    plan = assign_splits(items, (8, 1, 1), seed=seed)
    # Every video is in exactly one split ...
    assert set(plan.assignment) == {i.video_id for i in items}
    assert set(plan.assignment.values()) <= set(SPLITS)
    # ... and each source group in exactly one.
    assert find_leaks(items, plan.assignment) == []
    by_group = {}
    for item in items:
        by_group.setdefault(item.group, set()).add(plan.assignment[item.video_id])
    assert all(len(s) == 1 for s in by_group.values())


def test_find_leaks_detects_a_crossing_group():
    items = [MediaItem("/a", "a", 0, "g", "video"), MediaItem("/b", "b", 1, "g", "video")]
    assert find_leaks(items, {"a": "train", "b": "test"}) == ["g"]


def test_ratios_are_respected_by_video():
    items = _dataset(500, random.Random(1))
    counts = Counter(assign_splits(items, (8, 1, 1), seed=0).assignment.values())
    total = len(items)
    assert abs(counts["train"] / total - 0.8) < 0.02
    assert abs(counts["val"] / total - 0.1) < 0.02
    assert abs(counts["test"] / total - 0.1) < 0.02


def test_tiny_dataset_fills_every_split():
    items = _dataset(10, random.Random(2))
    assert set(assign_splits(items, (8, 1, 1)).assignment.values()) == set(SPLITS)


def test_split_is_seeded_and_independent_of_order():
    items = _dataset(60, random.Random(3))
    a = assign_splits(items, seed=7).assignment
    b = assign_splits(list(reversed(items)), seed=7).assignment
    c = assign_splits(items, seed=8).assignment
    assert a == b
    assert a != c


def test_imposed_test_split_is_honoured_and_group_mates_are_excluded():
    items = [MediaItem("/t", "official.mp4", 0, "id2", "video", fixed_split="test"),
             MediaItem("/u", "mate.mp4", 1, "id2", "video"),
             *_dataset(30, random.Random(4))]
    plan = assign_splits(items, (8, 1, 1))
    assert plan.assignment["official.mp4"] == "test"
    assert "mate.mp4" not in plan.assignment and "id2" in plan.excluded["mate.mp4"]
    # The imposed test split takes no other group; the rest is divided train:val = 8:1.
    assert [v for v, s in plan.assignment.items() if s == "test"] == ["official.mp4"]
    assert {"train", "val"} <= set(plan.assignment.values())
    assert find_leaks(items, plan.assignment) == []


@pytest.mark.parametrize("text, expected", [("8:1:1", (8.0, 1.0, 1.0)), ("0.7,0.15,0.15", (0.7, 0.15, 0.15)),
                                            ("1:0:0", (1.0, 0.0, 0.0))])
def test_parse_ratios(text, expected):
    assert parse_ratios(text) == expected


@pytest.mark.parametrize("text", ["8:1", "a:b:c", "-1:1:1", "0:1:1"])
def test_parse_ratios_rejects(text):
    with pytest.raises(BadInputError, match="8:1:1"):
        parse_ratios(text)


def test_shards_partition_the_videos():
    ids = [f"video{i}.mp4" for i in range(400)]
    shares = [{v for v in ids if in_shard(v, s, 4)} for s in range(4)]
    assert set().union(*shares) == set(ids)
    assert sum(len(s) for s in shares) == len(ids)
    assert all(60 < len(s) < 140 for s in shares)


def test_bad_shard_numbers():
    with pytest.raises(BadInputError, match="--shard"):
        in_shard("x", 4, 4)
    with pytest.raises(BadInputError, match="--num-shards"):
        in_shard("x", 0, 0)
