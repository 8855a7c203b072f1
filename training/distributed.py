"""Training on several machines: the cluster from TF_CONFIG, the strategy, and the training loop
that runs under MultiWorkerMirroredStrategy.

Keras 3's ``model.fit`` cannot train under MultiWorkerMirroredStrategy (it fails converting the
per-replica batches, keras-team/keras#20585), so several workers train with this loop instead:
the same model, optimizer, loss, class weights and metrics as ``fit``, one synchronous step over
every replica (``strategy.run``), the product's Keras callbacks called at the same points.

Fault tolerance: workers train in lockstep, so when one is lost the others fail at their next step
(measured: at once, TensorFlow's collectives see the socket close). Each epoch ends with a
checkpoint of the model, the optimizer and the epoch in ``<run>/backup/``; a restarted worker set
(the Job's pods, restarted by Kubernetes) restores it and continues with the next epoch. The chief
(worker 0) writes the run folder; the others save their checkpoint copies to a scratch folder
(every worker must take part in a save), which they delete.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from dfdetect.runs import HISTORY

log = logging.getLogger(__name__)

BACKUP = "backup"
ALL_REDUCE_PACK_BYTES = 32 << 20


@dataclass(frozen=True)
class Cluster:
    """Where this process sits in the training cluster TF_CONFIG describes."""

    workers: int = 1
    index: int = 0

    @property
    def multi_worker(self) -> bool:
        return self.workers > 1

    @property
    def is_chief(self) -> bool:
        """Worker 0 writes the run folder, the checkpoints and the logs."""
        return self.index == 0


def cluster_from_env() -> Cluster:
    """The cluster TF_CONFIG names (one worker when it is unset)."""
    from dfdetect.errors import BadInputError

    raw = os.environ.get("TF_CONFIG", "") or "{}"
    try:
        tf_config = json.loads(raw)
        workers = tf_config.get("cluster", {}).get("worker", [])
        task = tf_config.get("task", {})
    except (ValueError, AttributeError) as e:
        raise BadInputError(f"TF_CONFIG is not the JSON object TensorFlow expects "
                            f'({{"cluster": {{"worker": [...]}}, "task": {{"type": "worker", "index": i}}}}): {e}')
    if len(workers) <= 1:
        return Cluster()
    if task.get("type") != "worker" or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(workers):
        raise BadInputError(f"TF_CONFIG names {len(workers)} workers but its task is {task!r}; expected "
                            f'{{"type": "worker", "index": i}} with i from 0 to {len(workers) - 1}')
    return Cluster(len(workers), task["index"])


def choose_strategy(cluster: Cluster = Cluster()):
    """MultiWorkerMirroredStrategy over the workers of TF_CONFIG; MirroredStrategy over the GPUs
    of one machine; the default strategy otherwise (CPU, or one GPU)."""
    import tensorflow as tf

    if cluster.multi_worker:
        log.info("multi-worker training: worker %d of %d", cluster.index, cluster.workers)
        # Gradients all-reduced in packs, not one exchange per variable (EfficientNet-B0 has 215).
        packing = tf.distribute.experimental.CommunicationOptions(bytes_per_pack=ALL_REDUCE_PACK_BYTES)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=packing)
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        log.info("mirrored training over %d GPUs", len(gpus))
        return tf.distribute.MirroredStrategy()
    log.info("training on %s", "one GPU" if gpus else "the CPU")
    return tf.distribute.get_strategy()


class LostWorkerError(RuntimeError):
    """A worker of the cluster went away mid-step; the run resumes from its last epoch on restart."""


def keep_history_before(history: Path, epoch: int) -> float | None:
    """Drop the rows of epochs at or after ``epoch`` (they were not checkpointed, and will run
    again); returns the lowest validation loss kept, the bar the best checkpoint must beat."""
    if not history.is_file():
        return None
    with history.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0]) if rows else []
    kept = [r for r in rows if int(r["epoch"]) < epoch]
    if len(kept) < len(rows):
        tmp = history.with_name(history.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fields)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, history)
    losses = [float(r["val_loss"]) for r in kept if r.get("val_loss")]
    return min(losses) if losses else None


def fit_across_workers(model, strategy, cluster: Cluster, run_dir: Path, train_ds, val_ds, *, epochs: int,
                       steps: int, class_weight: dict[int, float] | None, callbacks: list) -> None:
    """Train ``model`` (built and compiled in ``strategy``'s scope) like ``model.fit`` would, with
    a checkpoint per epoch that a restarted run resumes from."""
    import tensorflow as tf

    optimizer = model.optimizer
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True, reduction="none")
    with strategy.scope():
        epoch_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
        auc = keras.metrics.AUC(from_logits=True, name="auc")
        accuracy = keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")
        # Built now, not in the first step: a step that creates variables is traced twice.
        optimizer.build(model.trainable_variables)
    weights = tf.constant([class_weight[0], class_weight[1]], tf.float32) if class_weight else None

    options = tf.data.Options()
    # Every worker reads every shard and takes its share of the batches (the shards are few and
    # uneven; sharding by file would starve a worker).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = iter(strategy.experimental_distribute_dataset(train_ds.with_options(options)))

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = loss_fn(labels, logits)
            if weights is not None:
                per_example *= tf.gather(weights, tf.cast(tf.reshape(labels, [-1]), tf.int32))
            loss = tf.nn.compute_average_loss(per_example)
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        auc.update_state(labels, logits)
        accuracy.update_state(labels, logits)
        return loss

    @tf.function
    def train_step(iterator):
        losses = strategy.run(replica_step, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    @tf.function(reduce_retracing=True)  # the last validation batch is smaller
    def predict(images):
        return model(images, training=False)

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epochs_done=epoch_done)
    backup = run_dir / BACKUP
    scratch = None if cluster.is_chief else Path(tempfile.mkdtemp(prefix=f"dfdetect-worker-{cluster.index}-"))
    manager = tf.train.CheckpointManager(checkpoint, str(backup if cluster.is_chief else scratch), max_to_keep=1)
    latest = tf.train.latest_checkpoint(str(backup))  # every worker restores the chief's
    if latest:
        checkpoint.restore(latest).expect_partial()
    start = int(epoch_done.numpy())
    if start:
        log.info("resuming from epoch %d of %d (checkpoint %s)", start + 1, epochs, latest)
    best_so_far = keep_history_before(run_dir / HISTORY, start) if cluster.is_chief else None
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.ModelCheckpoint) and best_so_far is not None:
            cb.best = best_so_far  # a resumed run keeps the best checkpoint it already has

    callback_list = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs, steps=steps, verbose=0)
    model.stop_training = False
    callback_list.on_train_begin()
    try:
        for epoch in range(start, epochs):
            callback_list.on_epoch_begin(epoch)
            auc.reset_state()
            accuracy.reset_state()
            total = 0.0
            for step in range(steps):
                callback_list.on_train_batch_begin(step)
                loss = float(train_step(batches))
                total += loss
                callback_list.on_train_batch_end(step, {"loss": loss})
            logs = {"loss": total / steps, "auc": float(auc.result()), "accuracy": float(accuracy.result()),
                    **_validate(predict, loss_fn, val_ds)}
            callback_list.on_epoch_end(epoch, logs)
            epoch_done.assign(epoch + 1)
            manager.save()
            if model.stop_training:
                break
    except (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError) as e:
        raise LostWorkerError(f"worker {cluster.index} of {cluster.workers} lost its peers in epoch "
                              f"{int(epoch_done.numpy()) + 1} ({type(e).__name__}); restarted with the same run "
                              f"name, the workers resume after epoch {int(epoch_done.numpy())}") from e
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    callback_list.on_train_end()


def _validate(predict, loss_fn, val_ds) -> dict[str, float]:
    """Validation on this worker alone, over the whole set: every worker holds the same weights
    and gets the same figures, so early stopping decides alike everywhere."""
    auc = keras.metrics.AUC(from_logits=True)
    accuracy = keras.metrics.BinaryAccuracy(threshold=0.0)
    total, count = 0.0, 0
    started = time.perf_counter()
    for images, labels in val_ds:
        logits = predict(images)
        total += float(keras.ops.sum(loss_fn(labels, logits)))
        count += int(labels.shape[0])
        auc.update_state(labels, logits)
        accuracy.update_state(labels, logits)
    log.debug("validation took %.1f s", time.perf_counter() - started)
    return {"val_loss": total / max(1, count), "val_auc": float(auc.result()),
            "val_accuracy": float(accuracy.result())}
