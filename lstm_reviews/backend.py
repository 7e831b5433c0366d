"""The backend's set-up and the questions asked of it: is TensorFlow installed, does Keras
run on it, what device computes. One place, so the data, training and serving code ask alike."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from lstm_reviews.config import Config
from lstm_reviews.startup import deferred_import, quiet_start

keras = deferred_import("keras")

# Keras' dtype policy of each --mixed-precision choice.
POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def tensorflow_or_none():
    """TensorFlow if importable, else None (JAX/PyTorch set-ups may lack it). Under another
    backend it is first imported here: quietly (startup.quiet_start), as Keras' import is."""
    try:
        quiet_start("tensorflow")
    except ImportError:
        return None
    return sys.modules["tensorflow"]


def set_up_backend(config: Config) -> None:
    """Seeds every generator and picks the float policy; call before building the model.

    Under TensorFlow, op determinism makes the same seed give the same run on a CPU.
    """
    tensorflow_or_none()  # Keras seeds TensorFlow too where it is installed, importing it
    keras.utils.set_random_seed(config.seed)
    if keras.backend.backend() == "tensorflow":
        tf = tensorflow_or_none()
        if tf is not None:
            tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(POLICIES[config.mixed_precision])


def describe_device() -> str:
    """The accelerator the backend computes on, in words (e.g. "CPU", "GPU: NVIDIA H100")."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"{device.platform.upper()}: {device.device_kind}"
    if backend == "tensorflow":
        tf = tensorflow_or_none()
        gpus = tf.config.list_physical_devices("GPU") if tf else []
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU: {details.get('device_name', gpus[0].name)}"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU: {cpu_model()}, {os.cpu_count()} cores"


def cpu_model() -> str:
    """The CPU's model name where Linux tells it, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runs_on_tensorflow() -> bool:
    """Whether Keras runs on TensorFlow and TensorFlow is importable (tf.data, SavedModel)."""
    return keras.backend.backend() == "tensorflow" and tensorflow_or_none() is not None
