"""--distribute data: Keras' DataParallel over every local device, under JAX.

Each device holds a copy of every variable; each batch is split along its first axis, one
slice per device; the gradients are averaged across devices before the update, so a step
is the one-device step up to float rounding (the sums are taken in another order). Keras
does the work (keras.distribution); this module checks that it can, with one-line errors.

Every batch a step sees must divide by the device count: training batches (with virtual
adversarial training, its unlabeled rows on top), evaluation batches, and the language
model's pretraining batches, which run under the same distribution.
"""

from __future__ import annotations

import keras

from lstm_reviews.errors import UserError


def batch_sizes(config) -> dict[str, int]:
    """The rows of every kind of batch a run steps on, by the option that sets it."""
    from lstm_reviews.data.batches import eval_batch_size

    sizes = {"--batch-size": config.batch_size, "--eval-batch-size": eval_batch_size(config)}
    if config.vat_epsilon > 0:
        sizes["--batch-size + --vat-batch-size"] = config.batch_size + config.vat_batch_size
    if config.lm_epochs:
        sizes["--lm-batch-size"] = config.lm_batch_size
    return sizes


def set_up_distribution(config):
    """Sets Keras' distribution per config.distribute; returns it, or None for "off".

    Raises UserError for another backend than JAX, a single device, a batch that does not
    divide by the device count, or dynamic batch shapes (a short last batch).
    """
    if config.distribute == "off":
        return None
    backend = keras.backend.backend()
    if backend != "jax":
        raise UserError(
            f"--distribute data needs the JAX backend, but Keras runs on {backend!r}: "
            "run with KERAS_BACKEND=jax"
        )
    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        raise UserError(
            f"--distribute data needs several devices, but JAX sees one ({devices[0]}); on "
            "a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N of it"
        )
    for option, size in batch_sizes(config).items():
        if size % len(devices):
            raise UserError(
                f"--distribute data splits each batch over {len(devices)} devices, but "
                f"{option} is {size}: use a multiple of {len(devices)}"
            )
    from lstm_reviews.data.batches import fixed_shapes

    if not fixed_shapes(config):
        raise UserError(
            "--distribute data needs batches of one size (--batch-shapes fixed or auto): "
            "dynamic shapes end a bucket with a short batch"
        )
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    return distribution
