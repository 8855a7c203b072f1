"""TensorFlow Serving's own model-server tests, run against `dfdetect serve`.

    python tests/tfs_suite.py PATH_TO_TENSORFLOW_SERVING_CHECKOUT [-k NAME ...]   (make tfs-suite TFS=PATH)

Runs ``tensorflow_serving/model_servers/tensorflow_model_server_test.py`` of a tensorflow/serving
checkout, unmodified, with its ``test_util`` and the test models under
``tensorflow_serving/servables/tensorflow/testdata``, against a ``tensorflow_model_server`` that
execs ``dfdetect serve "$@"`` (the suite finds the binary under ``$TEST_SRCDIR``, as Bazel lays
it out; this script builds that layout in a temporary folder of links). Nothing of the suite is
copied into this repository. Out of scope: the two TFLite tests, ``test_tf_text`` (needs
tensorflow-text's ops) and the profiler test.

Prints one line per test (ok, FAIL, ERROR) and the count; exit status 0 when every in-scope
test passes. Not part of ``make test``: it needs the checkout and takes minutes. The suite's
Keras models are made with tf.keras as Keras 2 (``tf-keras``, which ``make tfs-suite``
installs, with ``TF_USE_LEGACY_KERAS=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

OUT_OF_SCOPE = {"testPredictOnTfLite", "testPredictWithSignatureDefOnTfLite", "test_tf_text",
                "test_profiler_service_with_valid_trace_request"}
SUITE = "tensorflow_serving/model_servers/tensorflow_model_server_test.py"
# Tests that set up TensorFlow's devices themselves (virtual CPUs), which only a process where
# TensorFlow has not run yet allows: each runs in a child process of its own.
OWN_PROCESS = {"test_distrat_sequential_keras_saved_model_save"}

# The child process: the checkout's test_util joins the installed tensorflow_serving package (the
# tensorflow-serving-api wheel has no model_servers), then unittest runs the chosen tests.
CHILD = r"""
import json, sys, unittest
checkout, names, report = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
import tensorflow_serving
tensorflow_serving.__path__.append(checkout + "/tensorflow_serving")
from absl import flags
flags.FLAGS(sys.argv[:1])
import importlib.util
spec = importlib.util.spec_from_file_location("tensorflow_model_server_test", checkout + "/" + %r)
suite_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite_module)
suite_module.tf.enable_eager_execution()
case = suite_module.TensorflowModelServerTest
tests = unittest.TestSuite(case(name) for name in names)
result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(tests)
def why(trace):
    lines = trace.strip().splitlines()
    details = [l.strip() for l in lines if l.strip().startswith("details = ")]
    return (details[-1][len("details = "):].strip('"') if details else lines[-1])[:160]
outcome = {name: "ok" for name in names}
for test, trace in result.failures:
    outcome[test._testMethodName] = "FAIL: " + why(trace)
for test, trace in result.errors:
    outcome[test._testMethodName] = "ERROR: " + why(trace)
json.dump(outcome, open(report, "w"), indent=1)
""" % SUITE


def in_scope_tests(suite: Path) -> list[str]:
    names = re.findall(r"^  def (test\w+)\(self\)", suite.read_text(), flags=re.M)
    return [n for n in names if n not in OUT_OF_SCOPE]


def test_srcdir(checkout: Path, root: Path) -> Path:
    """$TEST_SRCDIR as the suite expects it: tf_serving/tensorflow_serving/{servables,model_servers}."""
    base = root / "tf_serving" / "tensorflow_serving"
    servers = base / "model_servers"
    servers.mkdir(parents=True)
    (base / "servables").symlink_to(checkout / "tensorflow_serving" / "servables")
    for item in (checkout / "tensorflow_serving" / "model_servers").iterdir():
        (servers / item.name).symlink_to(item)
    wrapper = servers / "tensorflow_model_server"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dfdetect serve "$@"\n')
    wrapper.chmod(0o755)
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a tensorflow/serving checkout (its work tree)")
    parser.add_argument("-k", action="append", default=[], metavar="NAME", help="run only tests named so")
    args = parser.parse_args(argv)
    suite = args.checkout / SUITE
    if not suite.is_file():
        parser.error(f"{suite} not found: give the root of a tensorflow/serving checkout")
    names = [n for n in in_scope_tests(suite) if not args.k or n in args.k]
    with tempfile.TemporaryDirectory(prefix="dfdetect-tfs-suite-") as tmp:
        srcdir = test_srcdir(args.checkout.resolve(), Path(tmp) / "srcdir")
        report = Path(tmp) / "report.json"
        # TF_USE_LEGACY_KERAS: the suite's Keras models are written for tf.keras as Keras 2 (the
        # tf-keras package); under Keras 3 a Sequential model's input alias is "inputs", not "x".
        env = {**os.environ, "TEST_SRCDIR": str(srcdir), "TEST_TMPDIR": str(Path(tmp) / "tmp"),
               "TF_USE_LEGACY_KERAS": "1",
               "DFDETECT_LOG_LEVEL": os.environ.get("DFDETECT_LOG_LEVEL", "WARNING")}
        (Path(tmp) / "tmp").mkdir()
        groups = [[n for n in names if n not in OWN_PROCESS]] + [[n] for n in names if n in OWN_PROCESS]
        outcome = {}
        for group in filter(None, groups):
            report.unlink(missing_ok=True)
            subprocess.run([sys.executable, "-c", CHILD, str(args.checkout.resolve()), ",".join(group), str(report)],
                           env=env, cwd=tmp)
            outcome.update(json.loads(report.read_text()) if report.is_file() else
                           {n: "ERROR: the suite did not run" for n in group})
    passed = sum(v == "ok" for v in outcome.values())
    print(f"\nTensorFlow Serving's {Path(SUITE).name} against dfdetect serve:")
    for name in names:
        print(f"  {name:52s} {outcome.get(name, 'not run')}")
    print(f"{passed} of {len(names)} in-scope tests pass (out of scope: {', '.join(sorted(OUT_OF_SCOPE))})")
    return 0 if passed == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
