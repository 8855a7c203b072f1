"""Training: a run folder, a distribution strategy, Keras fit with checkpoints, resume and logs.

Run folder (``runs/<preset>-<time>/``, or ``runs/<name>/`` for a named run)::

    config.yaml        the resolved config
    best.keras         the checkpoint with the lowest validation loss
    backup/            the last epoch's state (model, optimizer, epoch): an interrupted run
                       resumes from here
    trained.json       written when training ends: epochs run, time taken (a finished run is
                       not trained again when its Job restarts)
    history.csv        loss and metrics per epoch
    curves.png         training curves (loss, AUC)
    tensorboard/       TensorBoard logs
    calibration.json   temperature and decision threshold (written by evaluation)
    metrics.json, roc_<split>.png   evaluation results

``runs/LATEST`` names the newest run; export takes its best checkpoint by default. The file
names, finding the latest run and reading a run's config are ``dfdetect.runs`` (export reads runs
too).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import keras

from dfdetect.errors import BadInputError
from dfdetect.runs import CHECKPOINT, CURVES, HISTORY, TRAINED, has_config, mark_latest, write_run_config
from dfdetect.training.config import RunConfig

log = logging.getLogger(__name__)



def new_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(config.runs_dir) / f"{config.preset}-{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    run_dir.mkdir(parents=True)
    return run_dir


class EpochProgress(keras.callbacks.Callback):
    """One log line per epoch: the figures people watch, and the time it took."""

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = total_epochs
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        figures = "  ".join(f"{k} {float(v):.4f}" for k, v in sorted((logs or {}).items()))
        log.info("epoch %d/%d (%.1f s)  %s", epoch + 1, self.total_epochs,
                 time.perf_counter() - self._started, figures)


def build_compiled_model(config: RunConfig, strategy):
    """The model, compiled for training (Adam, binary cross-entropy on the logit, AUC), in the
    strategy's scope."""
    from dfdetect.training.model import build_model

    with strategy.scope():
        model = build_model(config.model)
        model.compile(
            optimizer=keras.optimizers.Adam(config.train.learning_rate),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            metrics=[keras.metrics.AUC(from_logits=True, name="auc"),
                     keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")],
        )
    return model


def train(config: RunConfig, run_dir: str | Path | None = None, callbacks=()) -> Path:
    """Train a model; returns the run folder. ``run_dir``: an interrupted run to resume, or a
    folder to start the run in (a named run). ``callbacks`` are added to the product's own
    (checkpoints, early stopping, logs). When TF_CONFIG names several workers they train together
    (``training.distributed``) and worker 0 alone writes the run folder."""
    from dfdetect.prepared import load_manifest, split_files
    from dfdetect.training import data
    from dfdetect.training.distributed import choose_strategy, cluster_from_env, fit_across_workers
    from dfdetect.training.plots import plot_history

    config.validate()
    cluster = cluster_from_env()
    if cluster.multi_worker and run_dir is None:
        raise BadInputError(f"TF_CONFIG names {cluster.workers} workers: they share one run folder, so it needs "
                            "a name (`dfdetect train --run-name NAME`; the Kubernetes Job passes its own name)")
    # The saved config must find the data from anywhere (export, evaluate, other folders).
    config.data.prepared = str(Path(config.data.prepared).resolve())
    manifest = load_manifest(config.data.prepared)
    train_split = split_files(config.data.prepared, manifest, "train")
    val_split = split_files(config.data.prepared, manifest, "val")

    if run_dir is None:
        run_dir = new_run_dir(config)
        write_run_config(run_dir, config.to_dict())
    else:
        run_dir = Path(run_dir)
        if (run_dir / TRAINED).is_file():
            log.info("%s has finished training (%s): nothing to resume", run_dir, (run_dir / TRAINED).read_text().strip())
            return run_dir
        if has_config(run_dir):
            log.info("resuming %s", run_dir)
        elif cluster.is_chief:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_run_config(run_dir, config.to_dict())
            log.info("new run %s", run_dir)
    if cluster.is_chief:
        mark_latest(run_dir)

    keras.utils.set_random_seed(config.train.seed)
    strategy = choose_strategy(cluster)
    balance = config.data.balance
    weights = data.class_weights(train_split.faces) if balance == "class_weight" else None
    log.info("train: %d faces (%d real, %d fake); val: %d faces; balance: %s%s", train_split.total,
             train_split.faces[0], train_split.faces[1], val_split.total, balance,
             f" (weights real {weights[0]:.2f}, fake {weights[1]:.2f})" if weights else "")
    if config.data.sbi_rate:
        log.info("self-blended pseudo-fakes: %.0f%% of real training crops", 100 * config.data.sbi_rate)

    size = config.model.image_size
    train_ds = data.training_dataset(train_split, config.data, size, seed=config.train.seed)
    val_ds = data.validation_dataset(val_split, size, config.eval.batch_size)
    # The training set repeats; an epoch is one pass over the training faces unless set.
    steps = config.train.steps_per_epoch or max(1, -(-train_split.total // config.data.batch_size))

    model = build_compiled_model(config, strategy)
    writers = [  # into the run folder: the chief's alone
        keras.callbacks.ModelCheckpoint(str(run_dir / CHECKPOINT), monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(str(run_dir / HISTORY), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False, profile_batch=0),
        EpochProgress(config.train.epochs),
    ] if cluster.is_chief else []
    product = [
        *writers,
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.train.early_stopping_patience,
                                      restore_best_weights=True),
        keras.callbacks.TerminateOnNaN(),
        *callbacks,  # after the product's: an epoch is saved and logged before they see it
    ]
    started = time.perf_counter()
    if cluster.multi_worker:
        fit_across_workers(model, strategy, cluster, run_dir, train_ds, val_ds, epochs=config.train.epochs,
                           steps=steps, class_weight=weights, callbacks=product)
    else:
        model.fit(train_ds, validation_data=val_ds, epochs=config.train.epochs, steps_per_epoch=steps,
                  class_weight=weights, shuffle=False, verbose=0,  # the data shuffles itself
                  callbacks=[keras.callbacks.BackupAndRestore(str(run_dir / "backup")), *product])
    seconds = time.perf_counter() - started
    log.info("training took %.1f s", seconds)
    if not cluster.is_chief:
        return run_dir
    if not (run_dir / CHECKPOINT).is_file():
        raise RuntimeError(f"training wrote no checkpoint into {run_dir}")
    epochs_run = len((run_dir / HISTORY).read_text().splitlines()) - 1
    (run_dir / TRAINED).write_text(json.dumps({"epochs": epochs_run, "of_at_most": config.train.epochs,
                                               "last_session_seconds": round(seconds, 1)}) + "\n")
    plot_history(run_dir / HISTORY, run_dir / CURVES)
    log.info("best checkpoint %s; curves %s", run_dir / CHECKPOINT, run_dir / CURVES)
    return run_dir
