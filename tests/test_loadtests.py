"""loadtests/: `locust -f loadtests/` run headless, as users run it, against the local model server
(in this process, serving the tiny trained model), through real gRPC stubs and real HTTP."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import start_server

REPO = Path(__file__).resolve().parents[1]
LOADTESTS = REPO / "loadtests"
LOCUST = Path(sys.executable).with_name("locust")
RUN_TIME = "6s"  # short, but long enough for a loaded CI machine to make requests in it
USERS = 4  # two per user class
TIMEOUT = 240  # seconds a locust process may take, start-up included, before the test gives up


@pytest.fixture(scope="module")
def server(tiny_export):
    _, repository, _ = tiny_export
    srv = start_server(model_base_path=str(repository / "deepfake"))
    yield srv
    srv.stop()


def _locust(cwd: Path, *args: str) -> subprocess.Popen:
    if not LOCUST.is_file():
        pytest.fail(f"locust is not installed in this environment ({LOCUST} is missing): "
                    f"pip install -e '.[loadtest]' (or make install)")
    # Only the options given here: none from the caller's LOCUST_* variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    return subprocess.Popen([str(LOCUST), "-f", str(LOADTESTS), *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _headless(server, cwd: Path, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
    prefix = cwd / name
    return _locust(cwd, "--headless", "-u", str(USERS), "-r", str(USERS), "-t", RUN_TIME, "--only-summary",
                   "--host", f"http://127.0.0.1:{server.rest_port}", "--grpc-host", f"127.0.0.1:{server.grpc_port}",
                   "--csv", str(prefix), *args), prefix


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"locust did not finish within {TIMEOUT} s:\n{output[-4000:]}")
    return process.returncode, output


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(server, tmp_path_factory):
    """Every locust run of this module, started together (each spends most of its time starting
    up): a clean run, an unknown model (every request fails), a p95 bound no server can meet
    (over the pixel signature), and an option out of range."""
    cwd = tmp_path_factory.mktemp("loadtest")
    started = {
        "clean": _headless(server, cwd, "clean", "--max-p95-ms", "30000"),
        "unknown_model": _headless(server, cwd, "unknown", "--model-name", "no_such_model"),
        "p95": _headless(server, cwd, "p95", "--max-p95-ms", "1", "--signature", "serving_default"),
        "bad_option": (_locust(cwd, "--headless", "-t", "1s", "--max-failure-ratio", "2"), None),
    }
    try:
        return {name: (*_finish(process), prefix) for name, (process, prefix) in started.items()}
    finally:
        for process, _ in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_both_user_classes_make_requests_and_none_fail(runs):
    code, output, prefix = runs["clean"]
    assert code == 0, output
    # `-f loadtests/` finds exactly the two user classes (helpers starting with _ are no locustfiles).
    assert 'All users spawned: {"GrpcUser": 2, "RestUser": 2}' in output, output
    assert "load test within the thresholds" in output, output
    stats = [r for r in _rows(Path(f"{prefix}_stats.csv")) if r["Name"] != "Aggregated"]
    made = {(r["Type"], r["Name"]) for r in stats if int(r["Request Count"]) > 0}
    # Each class's calls, named alike: gRPC as type "grpc", REST by HTTP method.
    assert {("grpc", "predict 1 face"), ("grpc", "predict 16 faces"), ("POST", "predict 1 face"),
            ("POST", "predict 16 faces")} <= made, made
    assert {t for t, _ in made} <= {"grpc", "GET", "POST"}, made
    assert all(int(r["Failure Count"]) == 0 for r in stats), stats
    assert _rows(Path(f"{prefix}_failures.csv")) == []

    classes = {r["user_class"]: r for r in _rows(Path(f"{prefix}_users.csv"))}
    assert set(classes) == {"GrpcUser", "RestUser", "all"}
    for r in classes.values():
        assert int(r["requests"]) > 0 and int(r["failures"]) == 0 and float(r["requests_per_s"]) > 0
        assert 0 <= float(r["p50_ms"]) <= float(r["p95_ms"]) <= float(r["p99_ms"]) and float(r["p95_ms"]) > 0
    assert int(classes["all"]["requests"]) == sum(int(classes[c]["requests"]) for c in ("GrpcUser", "RestUser"))
    assert Path(f"{prefix}_stats_history.csv").is_file()

    # What `make loadtest` prints after the run.
    printed = subprocess.run([sys.executable, str(LOADTESTS / "_summary.py"), str(prefix)], capture_output=True,
                             text=True, check=True).stdout
    lines = {line.split()[0]: line.split() for line in printed.splitlines()[3:]}
    assert set(lines) == {"GrpcUser", "RestUser", "all"}, printed
    assert lines["GrpcUser"][1] == classes["GrpcUser"]["requests"], printed


def test_failed_requests_give_exit_code_1(runs):
    code, output, prefix = runs["unknown_model"]
    assert code == 1, output
    assert "load test failed the thresholds" in output and "requests failed" in output, output
    assert "GrpcUser" in output and "RestUser" in output, output
    # The errors as locust's report gives them at the end of the run. (Its _failures.csv is
    # rewritten once a second while the run goes: a loaded machine whose users start late can
    # end the run before the failures reach it, so the file is only checked to be there.)
    assert "Error report" in output, output
    errors = output[output.index("Error report"):]
    assert "NOT_FOUND" in errors and "HTTP 404" in errors and "no_such_model" in errors, errors
    assert Path(f"{prefix}_failures.csv").is_file()


def test_a_slow_p95_gives_exit_code_1(runs):
    code, output, prefix = runs["p95"]
    assert code == 1, output
    assert "load test failed the thresholds" in output and "exceeds 1 ms" in output, output
    stats = _rows(Path(f"{prefix}_stats.csv"))
    # The requests themselves succeeded, over uint8 pixels this time: only the bound failed.
    assert all(int(r["Failure Count"]) == 0 for r in stats) and int(stats[-1]["Request Count"]) > 0, stats


def test_bad_options_are_refused_before_the_run(runs):
    code, output, _ = runs["bad_option"]
    assert code == 2 and "--max-failure-ratio: expected a ratio between 0 and 1, got '2'" in output, output
