"""Training and evaluation end to end on tiny generated data: real Keras models, real tf.data."""

import json

import keras
import numpy as np
import pytest

from conftest import TINY_TRAINING as TINY
from conftest import separable_crops, write_prepared
from dfdetect.cli import main
from dfdetect.errors import BadInputError
from dfdetect.prepared import evaluation_dataset, load_manifest, split_files
from dfdetect.training import data
from dfdetect.training.config import load_config
from dfdetect.training.model import build_model
from dfdetect.runs import latest_run
from dfdetect.training.train import train


def tiny_config(prepared, runs, *extra):
    return load_config("smoke", sets=[*TINY, f"data.prepared={prepared}", f"runs_dir={runs}", *extra])


@pytest.fixture(scope="module")
def separable(separable_prepared):
    return separable_prepared


@pytest.fixture(scope="module")
def trained(tiny_run):
    """One tiny run through the command line: train, calibrate, evaluate (shared, see conftest)."""
    return tiny_run


def test_loss_falls_and_auc_rises_above_chance(trained):
    import csv

    rows = list(csv.DictReader(open(trained / "history.csv")))
    losses = [float(r["loss"]) for r in rows]
    assert len(rows) >= 2 and min(losses[1:]) < losses[0]
    results = json.loads((trained / "metrics.json").read_text())
    assert results["splits"]["val"]["frame"]["auc"] > 0.75
    assert results["splits"]["test"]["frame"]["auc"] > 0.75


def test_run_folder_holds_everything(trained):
    for name in ("config.yaml", "best.keras", "history.csv", "curves.png", "calibration.json", "metrics.json",
                 "roc_val.png", "roc_test.png"):
        assert (trained / name).is_file(), name
    assert (trained / "tensorboard").is_dir()
    assert (trained / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((trained / "metrics.json").read_text())
    for split in ("val", "test"):
        for level in ("frame", "video"):
            m = results["splits"][split][level]
            assert {"auc", "log_loss", "eer", "average_precision", "accuracy", "tpr_at_fpr_1pct",
                    "tpr_at_fpr_5pct"} <= set(m)
    assert results["splits"]["test"]["video"]["count"] == 4  # 2 real + 2 fake videos


def test_calibration_lowers_log_loss_and_keeps_the_fpr(trained):
    c = json.loads((trained / "calibration.json").read_text())
    assert c["temperature"] > 0
    assert c["val_log_loss_after"] <= c["val_log_loss_before"] + 1e-9
    assert c["val_fpr_at_threshold"] <= c["target_fpr"]
    assert 0 <= c["threshold"] <= 1


def test_evaluate_command_uses_the_latest_run(trained, capsys):
    assert main(["evaluate", "--run", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "test   video" in out and "threshold" in out


def test_resume_after_an_interruption(separable, tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt("simulated preemption")

    config = tiny_config(separable, tmp_path, "train.epochs=3", "train.early_stopping_patience=10")
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[Interrupt()])
    run = latest_run(tmp_path)
    assert (run / "backup").is_dir()
    train(config, run_dir=run)
    epochs = [int(line.split(",")[0]) for line in (run / "history.csv").read_text().splitlines()[1:]]
    assert epochs == [0, 1, 2]  # epoch 0 before the interruption, 1-2 after: none repeated


def test_model_contract():
    config = load_config("smoke", sets=["model.image_size=32", "model.dense_units=[8]"])
    model = build_model(config.model)
    assert model.inputs[0].dtype == "uint8" and model.inputs[0].name == "images"
    assert tuple(model.inputs[0].shape) == (None, 32, 32, 3)
    out = model(np.stack([np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)]))
    out = np.asarray(out)
    assert out.shape == (2, 1) and out.dtype == np.float32 and np.isfinite(out).all()
    names = {layer.name for layer in model.layers}
    assert {"head_pool", "head_dense_0", "logit"} <= names


def test_resnet50_backbone_builds():
    config = load_config("smoke", sets=["model.backbone=resnet50", "model.image_size=32", "model.dense_units=[8]"])
    model = build_model(config.model)
    assert model(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 1)


def test_missing_or_empty_prepared_data(tmp_path):
    with pytest.raises(BadInputError, match="does not exist; run `dfdetect prepare`"):
        train(tiny_config(tmp_path / "nothing", tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no manifest.json"):
        train(tiny_config(tmp_path / "empty", tmp_path))
    assert not (tmp_path / "LATEST").exists()  # nothing started


def test_a_split_with_one_class_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    prepared = write_prepared(tmp_path / "p", {
        "a": (0, "train", separable_crops(0, 4, 32, rng)), "b": (0, "train", separable_crops(0, 4, 32, rng)),
        "c": (0, "val", separable_crops(0, 4, 32, rng)), "d": (1, "val", separable_crops(1, 4, 32, rng))})
    with pytest.raises(BadInputError, match="train split .* holds only real faces"):
        train(tiny_config(prepared, tmp_path))


def test_pipeline_shapes_augmentation_and_balance(tmp_path):
    rng = np.random.default_rng(1)
    spec = {f"r{i}": (0, "train", separable_crops(0, 6, 40, rng)) for i in range(6)}
    spec.update({"f0": (1, "train", separable_crops(1, 6, 40, rng))})
    prepared = write_prepared(tmp_path / "p", spec)
    manifest = load_manifest(prepared)
    split = split_files(prepared, manifest, "train")
    config = load_config("smoke", sets=["data.batch_size=32", "data.balance=sample", "data.sbi_rate=0"]).data
    ds = data.training_dataset(split, config, image_size=32)
    labels = []
    for images, y in ds.take(8):
        assert images.dtype == "uint8" and tuple(images.shape[1:]) == (32, 32, 3)
        labels.append(y.numpy())
    share = np.concatenate(labels).mean()
    assert 0.35 < share < 0.65  # 6 real videos to 1 fake, sampled to balance
    assert data.class_weights(split.faces) == pytest.approx({0: 42 / 72, 1: 42 / 12})


def test_self_blended_pseudo_fakes_from_real_crops(tmp_path):
    rng = np.random.default_rng(2)
    prepared = write_prepared(tmp_path / "p", {"r": (0, "train", separable_crops(0, 8, 64, rng)),
                                               "f": (1, "train", separable_crops(1, 1, 64, rng))})
    split = split_files(prepared, load_manifest(prepared), "train")
    config = load_config("smoke", sets=["data.sbi_rate=1.0", "data.augment=false", "data.batch_size=9",
                                        "data.balance=none"]).data
    images, labels = next(iter(data.training_dataset(split, config, image_size=64)))
    assert labels.numpy().ravel().tolist() == [1.0] * 9  # every real crop became a pseudo-fake
    originals = next(iter(evaluation_dataset(split, 64, 9)))[0].numpy()
    # The blends are not the originals: each output differs from every original crop.
    diffs = np.abs(images.numpy()[:, None].astype(int) - originals[None].astype(int)).mean(axis=(2, 3, 4))
    assert (diffs.min(axis=1) > 0.5).sum() >= 8


def test_a_named_run_resumes_and_a_finished_one_is_not_trained_again(separable, tmp_path, caplog):
    """The Kubernetes Job names its run: a restarted pod finds it; a finished run is left as is."""
    sets = [*TINY, f"data.prepared={separable}", f"runs_dir={tmp_path}", "train.epochs=1"]
    args = ["train", "--run-name", "train-job-7", "--no-evaluate", *[a for s in sets for a in ("--set", s)]]
    assert main(args) == 0
    run = tmp_path / "train-job-7"
    assert json.loads((run / "trained.json").read_text())["epochs"] == 1
    assert (tmp_path / "LATEST").read_text().strip() == "train-job-7"
    history = (run / "history.csv").read_text()

    caplog.clear()
    assert main([*args, "--set", "train.epochs=3"]) == 0  # the restarted Job, with other options
    assert "resuming it with its own config" in caplog.text and "differ in train.epochs" in caplog.text
    assert "has finished training" in caplog.text
    assert (run / "history.csv").read_text() == history  # not trained again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "train-job-7"]

    assert main(["train", "--run-name", "../elsewhere", "--no-evaluate"]) == 2
    assert main(["train", "--run-name", "x", "--resume", str(run)]) == 2


def test_the_cluster_comes_from_tf_config(separable, tmp_path, monkeypatch):
    from dfdetect.training.distributed import Cluster, cluster_from_env

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster_from_env() == Cluster(1, 0)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert not cluster_from_env().multi_worker  # one worker is one machine
    workers = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}
    monkeypatch.setenv("TF_CONFIG", json.dumps({**workers, "task": {"type": "worker", "index": 1}}))
    assert cluster_from_env() == Cluster(2, 1) and not cluster_from_env().is_chief
    monkeypatch.setenv("TF_CONFIG", json.dumps({**workers, "task": {"type": "worker", "index": 2}}))
    with pytest.raises(BadInputError, match="names 2 workers but its task is .*index.: 2.*from 0 to 1"):
        cluster_from_env()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(BadInputError, match="TF_CONFIG is not the JSON object TensorFlow expects"):
        cluster_from_env()
    # Several workers share one run folder, so it must be named.
    monkeypatch.setenv("TF_CONFIG", json.dumps({**workers, "task": {"type": "worker", "index": 0}}))
    with pytest.raises(BadInputError, match="share one run folder, so it needs a name.*--run-name"):
        train(tiny_config(separable, tmp_path))
    assert not (tmp_path / "LATEST").exists()
