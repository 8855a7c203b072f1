import json

import pytest

from dfdetect.contract import FAKE, REAL
from dfdetect.errors import BadInputError
from dfdetect.training.datasets import detect_layout, load_dataset


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def dfdc(tmp_path):
    root = tmp_path / "dfdc"
    part0, part1 = root / "dfdc_train_part_0", root / "dfdc_train_part_1"
    meta0 = {"aaa.mp4": {"label": "REAL", "split": "train"},
             "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
             "ccc.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
             "gone.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
             "odd.mp4": {"label": "MAYBE"}}
    meta1 = {"ddd.mp4": {"label": "REAL"}, "eee.mp4": {"label": "FAKE", "original": "ddd.mp4"}}
    for name in ("aaa", "bbb", "ccc", "odd", "stray"):
        _touch(part0 / f"{name}.mp4")
    for name in ("ddd", "eee"):
        _touch(part1 / f"{name}.mp4")
    (part0 / "metadata.json").write_text(json.dumps(meta0))
    (part1 / "metadata.json").write_text(json.dumps(meta1))
    _touch(root / "dfdc_train_part_2" / "fff.mp4")  # a part that lost its metadata.json
    return root


def test_dfdc_labels_and_groups(dfdc):
    ds = load_dataset(dfdc)
    assert ds.layout == "dfdc"
    items = {i.video_id: i for i in ds.items}
    assert sorted(items) == ["dfdc_train_part_0/aaa.mp4", "dfdc_train_part_0/bbb.mp4",
                             "dfdc_train_part_0/ccc.mp4", "dfdc_train_part_1/ddd.mp4",
                             "dfdc_train_part_1/eee.mp4"]
    assert items["dfdc_train_part_0/aaa.mp4"].label == REAL
    assert items["dfdc_train_part_0/bbb.mp4"].label == FAKE
    # Fakes share the group of the real video they were made from.
    groups = {i.video_id.split("/")[1]: i.group for i in ds.items}
    assert groups["aaa.mp4"] == groups["bbb.mp4"] == groups["ccc.mp4"] != groups["ddd.mp4"]
    assert groups["ddd.mp4"] == groups["eee.mp4"]


def test_dfdc_reports_every_problem(dfdc):
    problems = {p["path"]: p["problem"] for p in load_dataset(dfdc).problems}
    assert "missing on disk" in problems["dfdc_train_part_0/gone.mp4"]
    assert "expected REAL or FAKE" in problems["dfdc_train_part_0/odd.mp4"]
    assert "not listed in metadata.json" in problems["dfdc_train_part_0/stray.mp4"]
    assert "no metadata.json: 1 videos skipped" in problems["dfdc_train_part_2"]


def test_dfdc_unreadable_metadata(tmp_path):
    root = tmp_path / "dfdc"
    _touch(root / "a" / "x.mp4")
    (root / "a" / "metadata.json").write_text("{not json")
    _touch(root / "b" / "y.mp4")
    (root / "b" / "metadata.json").write_text(json.dumps({"y.mp4": {"label": "REAL"}}))
    ds = load_dataset(root)
    assert [i.video_id for i in ds.items] == ["b/y.mp4"]
    assert "unreadable metadata.json" in ds.problems[0]["problem"] and ds.problems[0]["path"] == "a/metadata.json"


def test_dfdc_without_any_metadata_fails_at_once(tmp_path):
    _touch(tmp_path / "videos" / "x.mp4")
    with pytest.raises(BadInputError, match="no metadata.json"):
        load_dataset(tmp_path / "videos", layout="dfdc")


@pytest.fixture
def celebdf(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    for rel in ("Celeb-real/id0_0000.mp4", "Celeb-real/id0_0001.mp4", "Celeb-real/id1_0000.mp4",
                "Celeb-real/id2_0000.mp4", "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id1_id0_0000.mp4",
                "Celeb-synthesis/id2_id0_0000.mp4", "YouTube-real/00000.mp4", "YouTube-real/00001.mp4"):
        _touch(root / rel)
    # Celeb-DF's own convention in this list: 1 = real, 0 = fake.
    (root / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id2_0000.mp4\n0 Celeb-synthesis/id2_id0_0000.mp4\n1 YouTube-real/00001.mp4\n"
        "0 Celeb-synthesis/id9_id0_0000.mp4\n")
    return root


def test_celebdf_labels_groups_and_official_test_list(celebdf):
    ds = load_dataset(celebdf)
    assert ds.layout == "celebdf"
    items = {i.video_id: i for i in ds.items}
    assert items["Celeb-real/id0_0000.mp4"].label == REAL
    assert items["YouTube-real/00000.mp4"].label == REAL
    assert items["Celeb-synthesis/id0_id1_0000.mp4"].label == FAKE  # product convention: 1 = fake
    # A fake id<target>_id<source>_n is grouped with the target identity's real videos.
    assert (items["Celeb-synthesis/id0_id1_0000.mp4"].group == items["Celeb-real/id0_0000.mp4"].group
            == items["Celeb-real/id0_0001.mp4"].group)
    assert items["Celeb-synthesis/id1_id0_0000.mp4"].group == items["Celeb-real/id1_0000.mp4"].group
    assert items["YouTube-real/00000.mp4"].group != items["YouTube-real/00001.mp4"].group
    assert {v for v, i in items.items() if i.fixed_split == "test"} == {
        "Celeb-real/id2_0000.mp4", "Celeb-synthesis/id2_id0_0000.mp4", "YouTube-real/00001.mp4"}
    problems = {p["path"]: p["problem"] for p in ds.problems}
    assert "missing on disk" in problems["Celeb-synthesis/id9_id0_0000.mp4"]


def test_celebdf_missing_folder(tmp_path):
    _touch(tmp_path / "Celeb-real" / "id0_0000.mp4")
    with pytest.raises(BadInputError, match="lacks Celeb-synthesis/"):
        load_dataset(tmp_path, layout="celebdf")


def test_folder_layout_videos_images_and_groups(tmp_path):
    root = tmp_path / "mine"
    for rel in ("real/a.mp4", "real/b.jpg", "real/person1/x.png", "real/person1/y.png",
                "fake/c.mp4", "fake/person1/z.png", "fake/readme.txt"):
        _touch(root / rel)
    ds = load_dataset(root)
    assert ds.layout == "folder"
    items = {i.video_id: i for i in ds.items}
    assert set(items) == {"real/a.mp4", "real/b.jpg", "real/person1/x.png", "real/person1/y.png",
                          "fake/c.mp4", "fake/person1/z.png"}
    assert items["real/b.jpg"].kind == "image" and items["fake/c.mp4"].kind == "video"
    assert items["fake/c.mp4"].label == FAKE and items["real/a.mp4"].label == REAL
    assert items["real/person1/x.png"].group == items["fake/person1/z.png"].group != items["real/a.mp4"].group
    assert [p["path"] for p in ds.problems] == ["fake/readme.txt"]


def test_folder_layout_needs_both_folders(tmp_path):
    _touch(tmp_path / "real" / "a.mp4")
    with pytest.raises(BadInputError, match="lacks fake/"):
        load_dataset(tmp_path, layout="folder")


def test_unknown_layout_names_the_expected_ones(tmp_path):
    _touch(tmp_path / "clips" / "a.mp4")
    with pytest.raises(BadInputError, match="expected one of: dfdc .* celebdf .* folder"):
        detect_layout(tmp_path)
    with pytest.raises(BadInputError, match="unknown dataset layout 'kinetics'"):
        load_dataset(tmp_path, layout="kinetics")


def test_missing_and_empty_dataset_folders(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    with pytest.raises(BadInputError, match="holds no usable media"):
        load_dataset(tmp_path)
