"""Imported before TensorFlow anywhere in `train`: TFRS needs the Keras 2 API.

TensorFlow 2.16+ ships Keras 3 as `tf.keras`; TensorFlow Recommenders is built
on Keras 2, which `tf_keras` provides when TF_USE_LEGACY_KERAS=1 is set before
TensorFlow is first imported.
"""

import os
import sys

from train.errors import TrainError

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off stderr

if "tensorflow" in sys.modules:
    import tensorflow as _tf

    if not _tf.keras.__name__.startswith("tf_keras"):
        raise TrainError(
            "TensorFlow was imported with Keras 3 before the training package; "
            "set TF_USE_LEGACY_KERAS=1 before importing TensorFlow, or import `train` first"
        )
