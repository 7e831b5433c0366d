"""--distribute data: Keras' DataParallel over every device, under JAX: those of this process,
or of every process of a run on several hosts.

Each device holds a copy of every variable; each batch is split along its first axis, one
slice per device; the gradients are averaged across devices before the update, so a step
is the one-device step up to float rounding (the sums are taken in another order). Keras
does the work (keras.distribution); this module checks that it can, with one-line errors.

Every batch a step sees must divide by the device count: training batches (with virtual
adversarial training, its unlabeled rows on top), evaluation batches, and the language
model's pretraining batches, which run under the same distribution.

Several processes (hosts): when the environment sets Keras' own variables
KERAS_DISTRIBUTION_JOB_ADDRESSES (the coordinator's host:port, process 0's),
KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID, start_processes calls
keras.distribution.initialize (jax.distributed.initialize) and the mesh spans the devices of
every process. Each process runs the same command on the same data, so it makes the same
batches (they depend on the seed and the epoch alone) and takes every step with the others.
What it hands Keras is its own part of each global batch (this_process_part): under JAX, Keras
turns a batch into the global array with jax.make_array_from_process_local_data, which reads
the array it is given as this process's rows, not the whole batch; the global batch is the
processes' parts stacked in the order of their devices on the mesh. Keras' own per-process
split (auto_shard_dataset) covers tf.data alone, so it is off and the split is done here.
Process 0 alone writes files (processes.py).
"""

from __future__ import annotations

import functools
import os

from lstm_reviews import processes
from lstm_reviews.errors import UserError
from lstm_reviews.startup import deferred_import

# On first use: train_and_evaluate asks start_processes before the run directory's checks,
# and a run of one process must still answer a mistake there without loading Keras.
keras = deferred_import("keras")

# Keras' names for a run of several processes (keras.distribution.initialize reads them).
ADDRESSES, COUNT, INDEX = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def batch_sizes(config) -> dict[str, int]:
    """The rows of every kind of batch a run steps on, by the option that sets it."""
    from lstm_reviews.data.batches import eval_batch_size

    sizes = {"--batch-size": config.batch_size, "--eval-batch-size": eval_batch_size(config)}
    if config.vat_epsilon > 0:
        sizes["--batch-size + --vat-batch-size"] = config.batch_size + config.vat_batch_size
    if config.lm_epochs:
        sizes["--lm-batch-size"] = config.lm_batch_size
    return sizes


def _process_settings(config) -> tuple[str, int, int] | None:
    """(coordinator addresses, process count, this process's index) from the environment;
    None when it names no run of several processes. UserError for incomplete or
    contradictory settings."""
    values = {name: os.environ.get(name, "").strip() for name in (ADDRESSES, COUNT, INDEX)}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise UserError(
            f"a run of several processes needs {ADDRESSES}, {COUNT} and {INDEX}, but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set"
        )
    try:
        count, index = int(values[COUNT]), int(values[INDEX])
    except ValueError:
        raise UserError(
            f"{COUNT}={values[COUNT]!r} and {INDEX}={values[INDEX]!r} must be whole numbers"
        ) from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"{INDEX}={index} must be from 0 to {COUNT} - 1 = {count - 1}")
    addresses = values[ADDRESSES].split(",")
    if len(addresses) > 1 and len(addresses) != count:
        raise UserError(
            f"{ADDRESSES} names {len(addresses)} processes but {COUNT} is {count}: give "
            f"process 0's host:port alone, or one address per process"
        )
    if count > 1 and config.distribute != "data":
        raise UserError(
            f"{COUNT}={count} starts a run of several processes; it needs --distribute data"
        )
    return values[ADDRESSES], count, index


def start_processes(config) -> None:
    """Joins the run of several processes the environment names (see the module's
    docstring), before anything uses JAX; does nothing for a run of one process. Returns once
    every process has joined (jax.distributed.initialize waits for them)."""
    settings = _process_settings(config)
    if settings is None or settings[1] == 1:
        return
    _require_jax()
    import jax

    # Keras reads the three variables itself; it forwards them to jax.distributed.initialize.
    keras.distribution.initialize()
    processes.set_process(jax.process_index(), jax.process_count())


def wait_for_all(name: str) -> None:
    """A barrier: returns once every process of the run has reached the same `name`; at
    once in a run of one process. Process 0 writes files the others read after it."""
    if processes.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def this_process_part(batch):
    """This process's rows of every array in `batch` (any nesting of arrays and None), a
    global batch: what Keras takes from this process under DataParallel (see the module's
    docstring). The batch itself in a run of one process."""
    if processes.process_count() == 1:
        return batch
    return keras.tree.map_structure(
        lambda array: None if array is None else array[_process_rows(len(array))], batch
    )


@functools.cache
def _process_rows(rows: int) -> slice:
    """The rows of a global batch of `rows` that this process's devices hold: where
    jax.make_array_from_process_local_data puts what this process gives it."""
    sharding = keras.distribution.distribution().get_data_layout((rows,)).backend_layout
    spans = [
        index[0].indices(rows)
        for index in sharding.addressable_devices_indices_map((rows,)).values()
    ]
    start, stop = min(span[0] for span in spans), max(span[1] for span in spans)
    if stop - start != sum(span[1] - span[0] for span in spans):
        raise RuntimeError(f"this process's devices hold rows {spans} of {rows}, not one span")
    return slice(start, stop)


def process_part(batches):
    """`batches` for this process (ProcessPart); themselves in a run of one process."""
    if processes.process_count() == 1:
        return batches
    from lstm_reviews.training.process_part import ProcessPart  # subclasses Keras' PyDataset

    return ProcessPart(batches, this_process_part)


def _require_jax() -> None:
    backend = keras.backend.backend()
    if backend != "jax":
        raise UserError(
            f"--distribute data needs the JAX backend, but Keras runs on {backend!r}: "
            "run with KERAS_BACKEND=jax"
        )


def set_up_distribution(config):
    """Sets Keras' distribution per config.distribute; returns it, or None for "off".

    Raises UserError for another backend than JAX, a single device, a batch that does not
    divide by the device count, or dynamic batch shapes (a short last batch).
    """
    if config.distribute == "off":
        return None
    _require_jax()
    devices = keras.distribution.list_devices()  # every process's, after start_processes
    if len(devices) < 2:
        raise UserError(
            f"--distribute data needs several devices, but JAX sees one ({devices[0]}); on "
            "a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N of it"
        )
    where = f" of {processes.process_count()} processes" if processes.process_count() > 1 else ""
    for option, size in batch_sizes(config).items():
        if size % len(devices):
            raise UserError(
                f"--distribute data splits each batch over {len(devices)} devices{where}, "
                f"but {option} is {size}: use a multiple of {len(devices)}"
            )
    from lstm_reviews.data.batches import fixed_shapes

    if not fixed_shapes(config):
        raise UserError(
            "--distribute data needs batches of one size (--batch-shapes fixed or auto): "
            "dynamic shapes end a bucket with a short batch"
        )
    # auto_shard_dataset: Keras splits tf.data alone by process; this_process_part does it.
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    return distribution
