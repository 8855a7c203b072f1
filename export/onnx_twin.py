"""The ONNX twin of a SavedModel: converted with the tf2onnx command line, checked with
onnxruntime, described for NVIDIA Triton's onnxruntime backend.

Only the ``serving_default`` (uint8 pixels) signature converts; the bytes signature decodes
images in the graph, which ONNX cannot express.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np

from dfdetect.contract import INPUT_PIXELS, OUTPUT_SCORE, SIGNATURE_PIXELS

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4


class OnnxError(RuntimeError):
    """Conversion failed or the twin does not match TensorFlow."""


def convert(savedmodel_dir: str, out_path: str, opset: int = OPSET) -> None:
    """Run ``python -m tf2onnx.convert`` on the pixels signature."""
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", savedmodel_dir,
           "--signature_def", SIGNATURE_PIXELS, "--opset", str(opset), "--output", out_path]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise OnnxError(f"tf2onnx failed (exit {result.returncode}):\n{tail}")


class OnnxModel:
    """An ONNX model run with onnxruntime on the CPU."""

    def __init__(self, path: str, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.output = self.session.get_outputs()[0]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run([self.output.name], {self.input.name: images})[0].reshape(-1)


def parity(onnx_path: str, images: np.ndarray, reference: np.ndarray) -> float:
    """Max absolute difference between onnxruntime and TensorFlow on the same crops."""
    twin = OnnxModel(onnx_path)
    if twin.input.name != INPUT_PIXELS or twin.output.name != OUTPUT_SCORE:
        raise OnnxError(f"the ONNX model's tensors are {twin.input.name!r} -> {twin.output.name!r}; "
                        f"expected {INPUT_PIXELS!r} -> {OUTPUT_SCORE!r}")
    return float(np.max(np.abs(twin(images) - reference)))


def triton_config(model_name: str, crop_size: int, max_batch_size: int = 64) -> str:
    """config.pbtxt for Triton's onnxruntime backend: uint8 crops in, one float per crop out,
    dynamic batching on."""
    return f"""name: "{model_name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{INPUT_PIXELS}"
    data_type: TYPE_UINT8
    dims: [ {crop_size}, {crop_size}, 3 ]
  }}
]
output [
  {{
    name: "{OUTPUT_SCORE}"
    data_type: TYPE_FP32
    dims: [ 1 ]
    reshape: {{ shape: [ ] }}
  }}
]
dynamic_batching {{
  preferred_batch_size: [ 8, 16, 32 ]
  max_queue_delay_microseconds: 2000
}}
instance_group [
  {{
    count: 1
    kind: KIND_AUTO
  }}
]
"""
