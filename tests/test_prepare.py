"""Data preparation end to end: real videos with real faces, real MTCNN, real TFRecords."""

import json
import os

import cv2
import numpy as np
import pytest

from conftest import blank_frames, face_frames, write_dfdc
from dfdetect.cli import main
from dfdetect.errors import BadInputError
from dfdetect.training.prepare import PrepareConfig, run_prepare, video_key
from dfdetect.records import read_face_records
from dfdetect.training.splits import in_shard


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, photos):
    """Three real videos with a fake each, a corrupt video and one without any face."""
    root = tmp_path_factory.mktemp("dfdc")
    meta, frames = {}, {}
    for g, name in enumerate(["astronaut", "grace_hopper", "astronaut"]):
        photo = photos[name] if g < 2 else photos[name][:, ::-1].copy()
        real = face_frames(photo, 4)
        frames[f"real{g}.mp4"] = real
        frames[f"fake{g}.mp4"] = [np.clip(f.astype(int) + [25, -10, 0], 0, 255).astype(np.uint8) for f in real]
        meta[f"real{g}.mp4"] = {"label": "REAL", "split": "train"}
        meta[f"fake{g}.mp4"] = {"label": "FAKE", "split": "train", "original": f"real{g}.mp4"}
    frames["corrupt.mp4"] = b"\x00garbage, not an mp4\x00" * 64
    meta["corrupt.mp4"] = {"label": "FAKE", "original": "real0.mp4"}
    frames["noface.mp4"] = blank_frames(4)
    meta["noface.mp4"] = {"label": "REAL"}
    return write_dfdc(root, meta, frames)


def _config(data, out, **kw):
    return PrepareConfig(data=str(data), out=str(out), frames=4, crop_size=96, workers=1, **kw)


@pytest.fixture(scope="module")
def prepared(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    return out, run_prepare(_config(dataset, out), progress=False)


def test_manifest_counts_and_problems(prepared):
    out, manifest = prepared
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["videos_done"] == manifest["videos_expected"] == 8
    assert [f["video_id"] for f in manifest["failed"]] == ["corrupt.mp4"]
    assert "corrupt" in manifest["failed"][0]["error"] or "cannot open" in manifest["failed"][0]["error"]
    assert manifest["no_face"] == ["noface.mp4"]
    assert manifest["frames_without_face"] >= 4
    videos = manifest["videos"]
    for g in range(3):
        assert videos[f"real{g}.mp4"]["faces"] >= 3 and videos[f"fake{g}.mp4"]["faces"] >= 3
    total_faces = sum(e["faces"]["real"] + e["faces"]["fake"] for e in manifest["splits"].values())
    assert total_faces == sum(v["faces"] for v in videos.values())
    assert manifest["label_convention"] == {"0": "real", "1": "fake"}
    # Which detector made the crops, and how.
    assert {k: manifest["settings"][k] for k in ("detector", "enhance", "min_confidence", "candidate_confidence")} \
        == {"detector": "onnx", "enhance": "clahe", "min_confidence": 0.95, "candidate_confidence": 0.85}
    assert manifest["detector"]["backend"] == "onnx" and manifest["detector"]["enhance"] == "clahe"
    assert {"denoise_sigma", "clahe_clip", "clahe_tiles"} <= set(manifest["detector"])
    assert all(videos[f"real{g}.mp4"]["tracks"] == 1 for g in range(3)), "one person per demo video"


def test_records_carry_labels_and_stay_in_their_split(prepared):
    out, manifest = prepared
    for split, entry in manifest["splits"].items():
        for rel in entry["records"]:
            assert rel.startswith(f"{split}/")
            records = read_face_records([out / rel])
            assert records
            for r in records:
                vid = r["video_id"].decode()
                assert manifest["videos"][vid]["split"] == split
                assert r["label"] == (1 if vid.startswith("fake") else 0)
                assert r["group"].decode() == manifest["videos"][vid]["group"]
                crop = cv2.imdecode(np.frombuffer(r["image/encoded"], np.uint8), cv2.IMREAD_COLOR)
                assert crop.shape == (96, 96, 3)
                assert r["confidence"] >= 0.95 and len(r["box"]) == 4 and r["timestamp"] >= 0
    # A fake and the real video it was made from share a split.
    for g in range(3):
        assert manifest["videos"][f"real{g}.mp4"]["split"] == manifest["videos"][f"fake{g}.mp4"]["split"]


def test_resume_skips_done_videos(dataset, tmp_path):
    out = tmp_path / "out"
    first = run_prepare(_config(dataset, out), progress=False)
    key = video_key("real1.mp4")
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "status").iterdir() if "corrupt" not in p.name}
    os.remove(out / "status" / f"{key}.json")
    record = out / first["videos"]["real1.mp4"]["record"]
    os.remove(record)
    second = run_prepare(_config(dataset, out), progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "status").iterdir() if "corrupt" not in p.name}
    redone = {name for name in after if after[name] != stamps.get(name)}
    assert redone == {f"{key}.json"}  # only the video whose status was removed was processed again
    assert record.exists() and second["videos"] == first["videos"]


def test_resume_with_other_settings_is_refused(dataset, tmp_path):
    out = tmp_path / "out"
    run_prepare(_config(dataset, out), progress=False)
    with pytest.raises(BadInputError, match="crop_size 96 -> 128"):
        run_prepare(PrepareConfig(data=str(dataset), out=str(out), frames=4, crop_size=128, workers=1))
    # Other detector settings make other crops: refused the same way.
    base = _config(dataset, out)
    for change, message in [({"enhance": "none"}, "enhance 'clahe' -> 'none'"),
                            ({"detector": "mtcnn"}, "detector 'onnx' -> 'mtcnn'"),
                            ({"candidate_confidence": 0.95}, "candidate_confidence 0.85 -> 0.95")]:
        with pytest.raises(BadInputError, match=message):
            run_prepare(PrepareConfig(**{**base.__dict__, **change}), progress=False)


def test_folders_prepared_before_the_detector_was_recorded(dataset, tmp_path):
    """A folder from before: its crops came from the mtcnn package without enhancement."""
    out = tmp_path / "out"
    run_prepare(_config(dataset, out), progress=False)
    saved = json.loads((out / "prepare_config.json").read_text())
    for key in ("detector", "enhance", "candidate_confidence"):
        del saved[key]
    (out / "prepare_config.json").write_text(json.dumps(saved))
    with pytest.raises(BadInputError, match="detector 'mtcnn' -> 'onnx'"):
        run_prepare(_config(dataset, out), progress=False)


def test_bad_detector_settings(dataset, tmp_path):
    for change, message in [({"detector": "haar"}, "--detector"), ({"enhance": "hdr"}, "--enhance"),
                            ({"candidate_confidence": 0.5}, "--candidate-confidence")]:
        with pytest.raises(BadInputError, match=message):
            run_prepare(PrepareConfig(**{**_config(dataset, tmp_path / "x").__dict__, **change}), progress=False)


def test_shards_merge_into_the_whole_dataset(dataset, prepared, tmp_path):
    _, whole = prepared
    ids = list(whole["videos"]) + [f["video_id"] for f in whole["failed"]]
    assert any(in_shard(v, 0, 2) for v in ids) and any(in_shard(v, 1, 2) for v in ids)
    out = tmp_path / "sharded"
    first = run_prepare(_config(dataset, out, shard=0, num_shards=2), progress=False)
    assert not first["complete"] and 0 < first["videos_done"] < 8
    merged = run_prepare(_config(dataset, out, shard=1, num_shards=2), progress=False)
    assert merged["complete"]
    assert {v: e["split"] for v, e in merged["videos"].items()} == {v: e["split"] for v, e in whole["videos"].items()}
    assert {v: e["faces"] for v, e in merged["videos"].items()} == {v: e["faces"] for v, e in whole["videos"].items()}


def test_worker_processes_give_the_same_result(dataset, prepared, tmp_path):
    _, whole = prepared
    config = _config(dataset, tmp_path / "pool")
    config.workers = 2
    pooled = run_prepare(config, progress=False)
    assert {v: e["faces"] for v, e in pooled["videos"].items()} == {v: e["faces"] for v, e in whole["videos"].items()}
    assert [f["video_id"] for f in pooled["failed"]] == ["corrupt.mp4"]


def test_empty_dataset_folder_fails_clearly(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(BadInputError, match="cannot tell the layout"):
        run_prepare(_config(tmp_path / "data", tmp_path / "out"))


def test_command_line(dataset, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["prepare", "--data", str(dataset), "--out", str(out), "--frames", "4", "--crop-size", "64",
                 "--workers", "1", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "8/8 videos done" in printed and "failed: 1" in printed and "corrupt.mp4" in printed
    assert (out / "manifest.json").is_file()


def test_command_line_bad_input_exits_non_zero(tmp_path, caplog):
    code = main(["prepare", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    assert "does not exist" in caplog.text
