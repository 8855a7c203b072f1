"""dfdetect: a deepfake detector for face images and videos.

The stage folders of the repository map onto this package: ``dfdetect.training`` is
``training/``, ``dfdetect.export`` is ``export/``, and so on. What several stages share lives
here: the model contract, the face pipeline (``dfdetect.faces``), errors and logging.
"""

import os

# TensorFlow's C++ start-up chatter (CPU feature notes, CUDA probing) buries the product's own
# output. Users who want it back set TF_CPP_MIN_LOG_LEVEL themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
