"""Export end to end: a tiny trained run -> SavedModel version, warm-up, model card, ONNX twin."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from dfdetect.cli import main
from dfdetect.contract import MODEL_CARD_FILE, WARMUP_FILE
from dfdetect.errors import BadInputError
from dfdetect.export import exporter
from dfdetect.export.exporter import ValidationError, export_run, sample_crops, validate_savedmodel
from dfdetect.export.onnx_twin import OnnxModel
from dfdetect.export.repository import ModelRepository
from dfdetect.export.savedmodel import LoadedModel
from dfdetect.export.warmup import read_warmup
from dfdetect.modelsconfig import read_model_server_config
from dfdetect.runs import read_run_config


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_signatures_names_dtypes_and_shapes(tiny_export):
    result, repository, _ = tiny_export
    assert result.version == 1 and (repository / "deepfake" / "1" / "saved_model.pb").is_file()
    loaded = tf.saved_model.load(result.path)
    pixels = loaded.signatures["serving_default"]
    (_, inputs), outputs = pixels.structured_input_signature, pixels.structured_outputs
    assert inputs["images"].dtype == tf.uint8 and inputs["images"].shape.as_list() == [None, 32, 32, 3]
    assert outputs["fake_probability"].dtype == tf.float32 and outputs["fake_probability"].shape.as_list() == [None]
    raw = loaded.signatures["serve_image_bytes"]
    (_, inputs), outputs = raw.structured_input_signature, raw.structured_outputs
    assert inputs["image_bytes"].dtype == tf.string and inputs["image_bytes"].shape.as_list() == [None]
    assert list(outputs) == ["fake_probability"]


def test_both_signatures_score_real_crops_and_agree(tiny_export, tiny_run):
    result, _, _ = tiny_export
    model = LoadedModel(result.path)
    crops = sample_crops(read_run_config(tiny_run)["data"]["prepared"], 32)
    scores = model.pixels(crops)
    assert scores.shape == (len(crops),) and scores.min() >= 0 and scores.max() <= 1
    assert scores.std() > 0.05  # a trained model: its outputs vary
    # JPEG crops of another size go through the bytes signature (decoded and resized in the graph).
    import cv2

    big = [cv2.imencode(".jpg", cv2.resize(c, (80, 80)))[1].tobytes() for c in crops[:4]]
    assert model.image_bytes(big).shape == (4,)


def test_warmup_records_parse_as_prediction_logs(tiny_export):
    result, _, _ = tiny_export
    logs = read_warmup(f"{result.path}/{WARMUP_FILE}")
    signatures = {log.predict_log.request.model_spec.signature_name for log in logs}
    assert signatures == {"serving_default", "serve_image_bytes"}
    assert all(log.predict_log.request.model_spec.name == "deepfake" for log in logs)
    pixels = next(log for log in logs if log.predict_log.request.model_spec.signature_name == "serving_default")
    tensor = tf.make_ndarray(pixels.predict_log.request.inputs["images"])
    assert tensor.dtype == np.uint8 and tensor.shape[1:] == (32, 32, 3)


def test_model_card(tiny_export, tiny_run):
    result, _, _ = tiny_export
    card = json.loads(open(f"{result.path}/{MODEL_CARD_FILE}").read())
    assert card == result.card
    assert card["model_name"] == "deepfake" and card["version"] == 1
    assert card["backbone"] == "efficientnet_b0" and card["crop_size"] == 32
    assert card["label_convention"] == {"0": "real", "1": "fake"}
    calibration = json.loads((tiny_run / "calibration.json").read_text())
    assert card["threshold"] == calibration["threshold"] and card["temperature"] == calibration["temperature"]
    assert card["training_config"]["model"]["image_size"] == 32
    assert card["metrics"]["splits"]["test"]["video"]["auc"] >= 0
    assert card["validation"]["max_abs_diff_in_memory"] <= 1e-5
    assert card["onnx"]["published"] and card["onnx"]["max_abs_diff"] <= 1e-4
    assert len(card["git_revision"]) >= 7 and card["created"].endswith("+00:00")
    assert "crop_margin" in card and card["dataset"]["prepared"]


def test_onnx_twin_matches_and_triton_accepts_its_config(tiny_export, tiny_run):
    from tritonclient.grpc import model_config_pb2

    result, repository, _ = tiny_export
    onnx_file = repository / "deepfake-onnx" / "1" / "model.onnx"
    assert result.onnx_path and onnx_file.is_file()
    crops = sample_crops(read_run_config(tiny_run)["data"]["prepared"], 32)
    twin = OnnxModel(str(onnx_file))
    np.testing.assert_allclose(twin(crops), LoadedModel(result.path).pixels(crops), atol=1e-4)
    config = text_format.Parse((repository / "deepfake-onnx" / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert config.name == "deepfake-onnx" and config.backend == "onnxruntime"
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    (inp,), (out,) = config.input, config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == (twin.input.name, model_config_pb2.TYPE_UINT8, [32, 32, 3])
    assert (out.name, out.data_type) == (twin.output.name, model_config_pb2.TYPE_FP32)


@pytest.fixture
def repo_copy(tiny_export, tmp_path):
    """A copy of the exported repository (version 1, with its ONNX twin) to change freely."""
    _, repository, _ = tiny_export
    shutil.copytree(repository, tmp_path / "repo")
    return tmp_path / "repo"


def test_versions_number_upwards_and_are_never_overwritten(tiny_run, repo_copy, tmp_path, capsys):
    # Through the command line: the next version is the largest existing + 1.
    assert main(["export", "--run", str(tiny_run), "--model-repository", str(repo_copy), "--no-onnx",
                 "--models-config", str(tmp_path / "none.config")]) == 0
    out = capsys.readouterr().out
    assert "published deepfake version 2" in out and "crop size 32" in out
    repo = ModelRepository(str(repo_copy), "deepfake")
    assert repo.versions() == [1, 2] and repo.next_version() == 3
    before = _tree(repo_copy)
    with pytest.raises(BadInputError, match="version 2 of deepfake already exists"):
        export_run(tiny_run, str(repo_copy), version=2, onnx=False)
    with pytest.raises(BadInputError, match="versions are positive integers"):
        export_run(tiny_run, str(repo_copy), version=0, onnx=False)
    assert _tree(repo_copy) == before


def test_next_version_ignores_temporary_and_foreign_folders(tmp_path):
    for name in ("1", "3", "10", ".tmp-11-abc", "notes", "0"):
        (tmp_path / "deepfake" / name).mkdir(parents=True)
    (tmp_path / "deepfake" / "12").write_text("a file, not a version")
    repo = ModelRepository(str(tmp_path), "deepfake")
    assert repo.versions() == [1, 3, 10] and repo.next_version() == 11


def test_a_failure_before_the_rename_leaves_no_visible_version(tiny_run, repo_copy, tmp_path, monkeypatch):
    before = _tree(repo_copy)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dfdetect.export.warmup.write_warmup", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_run(tiny_run, str(repo_copy), models_config=tmp_path / "none.config")
    assert _tree(repo_copy) == before  # no version 2, no temporary folder, no ONNX twin
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError, match="No space left"):
        export_run(tiny_run, str(fresh), models_config=tmp_path / "none.config")
    assert _tree(fresh) == []  # not even empty model folders


def test_the_gate_refuses_a_savedmodel_that_differs_from_the_trained_model(tiny_export, tiny_run):
    from dfdetect.training.config import load_config
    from dfdetect.training.model import build_model

    result, _, _ = tiny_export
    other = build_model(load_config("smoke", sets=["model.image_size=32", "model.dense_units=[16]"]).model)
    crops = sample_crops(read_run_config(tiny_run)["data"]["prepared"], 32)
    with pytest.raises(ValidationError, match="differs from the trained model"):
        validate_savedmodel(result.path, other, result.card["temperature"], crops)


def test_labels(tmp_path):
    for v in (1, 2, 3):
        (tmp_path / "repo" / "deepfake" / str(v)).mkdir(parents=True)
    config = tmp_path / "models.config"
    shutil.copy(exporter.DEFAULT_MODELS_CONFIG, config)
    args = ["--model-repository", str(tmp_path / "repo"), "--models-config", str(config)]
    assert main(["export", "label", "stable=1", "canary=3", *args]) == 0
    model = read_model_server_config(config).model_config_list.config[0]
    assert dict(model.version_labels) == {"stable": 1, "canary": 3}
    assert list(model.model_version_policy.specific.versions) == [1, 3]
    assert config.read_text().startswith("#")  # the file's comment header survives
    before = config.read_text()
    assert main(["export", "label", "stable=9", *args]) == 2  # version 9 does not exist
    assert main(["export", "label", "stable", *args]) == 2
    assert config.read_text() == before


def test_retention_keeps_the_newest_and_every_labelled_version(tiny_run, repo_copy, tmp_path):
    for v in (2, 3):
        shutil.copytree(repo_copy / "deepfake" / "1", repo_copy / "deepfake" / str(v))
        shutil.copytree(repo_copy / "deepfake-onnx" / "1", repo_copy / "deepfake-onnx" / str(v))
    config = tmp_path / "models.config"
    shutil.copy(exporter.DEFAULT_MODELS_CONFIG, config)
    assert main(["export", "label", "stable=1", "--model-repository", str(repo_copy),
                 "--models-config", str(config)]) == 0
    result = export_run(tiny_run, str(repo_copy), onnx=False, keep=2, models_config=config)
    assert result.version == 4 and result.removed == [2]
    assert ModelRepository(str(repo_copy), "deepfake").versions() == [1, 3, 4]
    assert not (repo_copy / "deepfake-onnx" / "2").exists()  # the twin goes with its version


def test_bad_inputs_leave_the_repository_unchanged(tiny_run, tmp_path, capsys, caplog):
    repo = tmp_path / "repo"
    repo.mkdir()
    assert main(["export", "--runs-dir", str(tmp_path / "no-runs"), "--model-repository", str(repo)]) == 2
    assert "no training run" in caplog.text
    broken = tmp_path / "broken-run"
    shutil.copytree(tiny_run, broken)
    (broken / "best.keras").write_bytes(b"not a keras file")
    assert main(["export", "--run", str(broken), "--model-repository", str(repo)]) == 2
    assert "cannot load checkpoint" in caplog.text
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["export", "--run", str(tiny_run), "--model-repository", str(blocker / "repo"), "--no-onnx"]) == 2
    assert "is not writable" in caplog.text
    assert _tree(repo) == []
