"""The toolchain: structured-sparse split MLPs from training to microcontroller, edge board and server.

Importing the package is cheap on purpose: TensorFlow is imported lazily by the modules that need it,
so the edge runtime (`toolchain run`) works on a Raspberry Pi without TensorFlow installed.
"""

import os

__version__ = "0.1.0"

# TensorFlow reads these at import time; set them before any module imports it.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
