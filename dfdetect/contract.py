"""The model contract: what every stage agrees on (see DESIGN.md).

One place for the label convention, the signature and tensor names and the repository layout,
so that training, export, serving and the client cannot drift apart.
"""

from typing import Final

# Label convention: 1 = fake. Every score the product shows is the probability of "fake".
FAKE: Final = 1
REAL: Final = 0
LABEL_NAMES: Final = {REAL: "real", FAKE: "fake"}


def label_name(label: int) -> str:
    """Name of a label value ("real" or "fake")."""
    try:
        return LABEL_NAMES[int(label)]
    except KeyError:
        raise ValueError(f"label must be {REAL} (real) or {FAKE} (fake), got {label!r}") from None


# SavedModel signatures.
SIGNATURE_PIXELS: Final = "serving_default"
SIGNATURE_BYTES: Final = "serve_image_bytes"
INPUT_PIXELS: Final = "images"
INPUT_BYTES: Final = "image_bytes"
OUTPUT_SCORE: Final = "fake_probability"

# Model repository layout.
DEFAULT_MODEL_NAME: Final = "deepfake"
ONNX_SUFFIX: Final = "-onnx"
WARMUP_FILE: Final = "assets.extra/tf_serving_warmup_requests"
MODEL_CARD_FILE: Final = "assets.extra/model_card.json"

# Face crops: size S (clients read it from model metadata) and the margin used to cut them.
DEFAULT_CROP_SIZE: Final = 224
DEFAULT_CROP_MARGIN: Final = 0.3

# Ports of TensorFlow Serving, kept by the local server.
GRPC_PORT: Final = 8500
REST_PORT: Final = 8501
WEB_PORT: Final = 8080  # the web page and its API (dfdetect web)
