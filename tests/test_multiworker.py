"""Multi-worker training on loopback: two `dfdetect train` processes under one TF_CONFIG, a worker
killed mid-run, and the restarted pair resuming the same named run from its last epoch."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY_TRAINING
from dfdetect.tooling import free_port

EPOCHS = 3


def _history_epochs(run):
    path = run / "history.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _start_workers(tmp_path, prepared, runs, attempt):
    ports = [free_port(), free_port()]
    sets = [*TINY_TRAINING, f"data.prepared={prepared}", f"runs_dir={runs}", f"train.epochs={EPOCHS}",
            # steps enough that a kill lands inside an epoch; patience so no early stop
            "train.steps_per_epoch=4", "train.early_stopping_patience=10"]
    workers = []
    for index in range(2):
        scratch = tmp_path / f"scratch-{attempt}-{index}"
        scratch.mkdir()
        env = {**os.environ, "TMPDIR": str(scratch), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                        "task": {"type": "worker", "index": index}})}
        log = open(tmp_path / f"worker-{attempt}-{index}.log", "wb")
        workers.append((subprocess.Popen(
            [sys.executable, "-m", "dfdetect", "train", "--run-name", "train-job-1", "--no-evaluate",
             *[a for s in sets for a in ("--set", s)]],
            stdout=log, stderr=subprocess.STDOUT, env=env), log, scratch))
    return workers


def _log(tmp_path, attempt, index):
    return (tmp_path / f"worker-{attempt}-{index}.log").read_text(errors="replace")


def _wait(process, seconds, what):
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{what} did not end within {seconds} s")


def test_a_lost_worker_fails_the_run_and_the_restart_resumes_it(separable_prepared, tmp_path):
    runs = tmp_path / "runs"
    run = runs / "train-job-1"
    workers = _start_workers(tmp_path, separable_prepared, runs, attempt=0)
    try:
        deadline = time.monotonic() + 240
        while not _history_epochs(run):
            for index, (p, _, _) in enumerate(workers):
                assert p.poll() is None, f"worker {index} ended early:\n{_log(tmp_path, 0, index)[-3000:]}"
            assert time.monotonic() < deadline, "no epoch finished in 240 s:\n" + _log(tmp_path, 0, 0)[-3000:]
            time.sleep(0.05)
        workers[1][0].send_signal(signal.SIGKILL)  # a node lost mid-run
        code = _wait(workers[0][0], 60, "the chief, after its peer was killed")
    finally:
        for p, log, _ in workers:
            p.kill()
            p.wait()
            log.close()
    chief_log = _log(tmp_path, 0, 0)
    assert code == 1, chief_log[-3000:]  # not 2 (bad input): Kubernetes retries it
    assert "worker 0 of 2 lost its peers" in chief_log and "resume after epoch" in chief_log, chief_log[-3000:]
    done = _history_epochs(run)
    assert done and done == list(range(len(done))) and len(done) < EPOCHS, done

    workers = _start_workers(tmp_path, separable_prepared, runs, attempt=1)
    try:
        codes = [_wait(p, 240, f"resumed worker {i}") for i, (p, _, _) in enumerate(workers)]
    finally:
        for p, log, _ in workers:
            p.kill()
            p.wait()
            log.close()
    assert codes == [0, 0], "\n".join(_log(tmp_path, 1, i)[-3000:] for i in range(2))
    resumed = _log(tmp_path, 1, 0)
    assert "resuming from epoch" in resumed, resumed[-3000:]
    # Every epoch once: the ones before the kill kept, the one in flight run again, none repeated.
    assert _history_epochs(run) == list(range(EPOCHS))
    for name in ("config.yaml", "best.keras", "curves.png"):
        assert (run / name).is_file(), name
    assert (runs / "LATEST").read_text().strip() == "train-job-1"
    assert sorted(p.name for p in runs.iterdir()) == ["LATEST", "train-job-1"], "one run folder for both workers"
    for _, _, scratch in workers:
        assert not any(scratch.iterdir()), "a worker left its checkpoint copies behind"
