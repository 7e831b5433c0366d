"""The epoch loop of a run (fit): Keras' train_on_batch over each epoch's batches, a committed
state with a backup every few batches and at each epoch's end, the validation that picks
the best model and stops early.

Each epoch's batches depend on (seed, epoch) alone (batches.epoch_batches) and the backup
holds every variable (dropout seed states too), so a run resumed from any commit ends with
the metrics of the uninterrupted one. Keras does the steps, the progress bar,
TerminateOnNaN and TensorBoard.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time

import numpy as np

from lstm_reviews.backend import tensorflow_or_none
from lstm_reviews.config import Config
from lstm_reviews.crashpoints import crash_point
from lstm_reviews.data import tokens
from lstm_reviews.errors import check_interrupt
from lstm_reviews.processes import writes_files
from lstm_reviews.rundir import RunDir
from lstm_reviews.startup import deferred_import
from lstm_reviews.training.state import (
    RunState,
    commit,
    pending_best_model,
    save_backup,
    save_model_atomically,
    settle_files,
)

keras = deferred_import("keras")
batches = deferred_import("lstm_reviews.data.batches")
distribute = deferred_import("lstm_reviews.training.distribute")

# Accuracy is what we report, so it picks the best epoch and stops training.
MONITOR = "val_accuracy"


@dataclasses.dataclass
class _Fit:
    """What every epoch of one fit shares."""

    model: keras.Model
    config: Config
    run_dir: RunDir
    callbacks: keras.callbacks.CallbackList
    unlabeled: batches.UnlabeledRows | None  # the unlabeled reviews of --vat-epsilon
    every: int  # batches between two commits within an epoch
    token_data: tokens.TokenData
    boundaries: list | None  # the length buckets of fixed shapes (batches.split_boundaries)


def make_callbacks(config: Config, run_dir: RunDir, extra=()) -> list:
    """Keras' callbacks for the epochs: TerminateOnNaN, `extra`, TensorBoard."""
    callbacks = [keras.callbacks.TerminateOnNaN(), *extra]
    if not writes_files():
        pass  # logs of process 0 alone, in a run of several processes
    elif tensorflow_or_none() is not None and importlib.util.find_spec("tensorboard"):
        # Keras' TensorBoard writes through tf.summary, which needs the tensorboard package.
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir.logs)))
    else:
        print("TensorBoard logs skipped: they need the tensorflow and tensorboard packages")
    return callbacks


def _validation_step_hook():
    """A test hook in the validation of each epoch (crashpoints.py)."""
    return keras.callbacks.LambdaCallback(
        on_test_batch_end=lambda batch, logs: crash_point("validation-step")
    )


def fit(
    model, config, run_dir, state, token_data, boundaries, validation_batches, callbacks, every
) -> RunState:
    """Trains the epochs `state` has not done, committing a state every `every` batches and
    at each epoch's end; returns the state with fit_done. Within batch_end_interrupts, Ctrl-C
    stops it after the batch (or the epoch's validation) it came in."""
    callback_list = keras.callbacks.CallbackList(
        make_callbacks(config, run_dir, callbacks),
        add_history=False,
        add_progbar=True,
        model=model,
        verbose=1,
        epochs=config.epochs,
        steps=None,
    )
    callback_list.on_train_begin()
    unlabeled = (
        batches.UnlabeledRows(
            tokens.unlabeled_ids(config, token_data), config.max_length, config.seed
        )
        if config.vat_epsilon > 0
        else None
    )
    run = _Fit(model, config, run_dir, callback_list, unlabeled, every, token_data, boundaries)
    for epoch in range(state.epochs_done, config.epochs):
        state, logs, train_seconds, tokens_trained = _train_epoch(run, state, epoch)
        state = _end_epoch(
            run, state, epoch, logs, validation_batches, train_seconds, tokens_trained
        )
        if state.fit_done:
            break
        check_interrupt()  # one that came during the validation: the epoch is kept
    callback_list.on_train_end()
    if not state.fit_done:  # --epochs lowered on resume below the epochs done
        state = dataclasses.replace(state, fit_done=True)
        commit(run_dir, state)
    return state


def _train_epoch(run: _Fit, state: RunState, epoch: int):
    """Trains epoch's batches from batch state.step on, committing a state with a backup
    every run.every batches; returns (state, the epoch's logs, the run's training seconds
    so far, tokens trained since the last commit)."""
    running = {key: list(pair) for key, pair in state.running.items()}
    logs = {key: total / count for key, (total, count) in running.items()}
    run.callbacks.on_epoch_begin(epoch)
    clock_started, tokens_trained = time.perf_counter(), 0
    epoch_batches = batches.epoch_batches(
        run.token_data.train, run.config, run.boundaries, epoch, first_step=state.step
    )
    for step, (ids, labels, *weights) in enumerate(epoch_batches, start=state.step):
        run.callbacks.on_train_batch_begin(step)
        batch_logs, reviews = _train_step(run, epoch, step, ids, labels, weights)
        for key, value in batch_logs.items():
            total, count = running.get(key, (0.0, 0.0))
            running[key] = [total + float(value) * reviews, count + reviews]
        logs = {key: total / count for key, (total, count) in running.items()}
        tokens_trained += int(keras.ops.count_nonzero(ids))
        run.callbacks.on_train_batch_end(step, logs)
        crash_point("epoch-step")
        check_interrupt()
        if run.model.stop_training:  # TerminateOnNaN, or a callback of the caller
            break
        if (step + 1) % run.every == 0:
            name = f"epoch-{epoch + 1}-step-{step + 1}.npz"
            state = dataclasses.replace(
                state,
                step=step + 1,
                backup=name,
                backup_sha256=save_backup(run.model, run.run_dir, name),
                running=running,
                train_seconds=state.train_seconds + time.perf_counter() - clock_started,
                train_tokens=state.train_tokens + tokens_trained,
            )
            commit(run.run_dir, state)
            clock_started, tokens_trained = time.perf_counter(), 0
    if not np.isfinite(logs.get("loss", 0.0)):
        raise RuntimeError(
            f"sentiment training stopped on a NaN loss in epoch {epoch + 1}: no "
            f"metrics.json written; train again in a new --output-dir, e.g. with a lower "
            f"--learning-rate"
        )
    train_seconds = state.train_seconds + time.perf_counter() - clock_started
    return state, logs, train_seconds, tokens_trained


def _train_step(run: _Fit, epoch: int, step: int, ids, labels, weights) -> tuple[dict, float]:
    """One train_on_batch; returns (its logs, the reviews it counts for)."""
    sample_weight = weights[0] if weights else None
    # The epoch's logs: per-review means over its batches (a topped-up batch's padding rows
    # count for nothing), as exact after a resume as without one.
    reviews = float(np.sum(sample_weight)) if weights else float(len(labels))
    inputs, targets = ids, labels
    if run.unlabeled is not None:
        rows = run.unlabeled.rows(run.config.vat_batch_size, ids.shape[1], epoch, step)
        inputs, targets, sample_weight = batches.with_unlabeled(ids, labels, sample_weight, rows)
    # Of several processes, each gives Keras its own rows (distribute.this_process_part).
    inputs, targets, sample_weight = distribute.this_process_part((inputs, targets, sample_weight))
    batch_logs = run.model.train_on_batch(
        inputs, targets, sample_weight=sample_weight, return_dict=True
    )
    return batch_logs, reviews


def _end_epoch(
    run: _Fit, state, epoch, logs, validation_batches, train_seconds, tokens_trained
) -> RunState:
    """Validates the epoch, keeps its model if it is the best so far, backs it up and commits
    it done (fit_done after the last epoch or early stopping's); returns that state."""
    number = epoch + 1
    validation = run.model.evaluate(
        validation_batches, return_dict=True, verbose=0, callbacks=[_validation_step_hook()]
    )
    logs = {**logs, **{f"val_{key}": float(value) for key, value in validation.items()}}
    improved = state.best_value is None or logs[MONITOR] > state.best_value
    if improved:
        save_model_atomically(run.model, pending_best_model(run.run_dir, number))
    run.callbacks.on_epoch_end(epoch, logs)
    name = f"epoch-{number}.npz"
    sha256 = save_backup(run.model, run.run_dir, name)
    crash_point("after-backup")  # the backup written, the epoch not yet committed
    best_epoch = number if improved else state.best_epoch
    stop = run.model.stop_training or (not improved and number - best_epoch >= run.config.patience)
    state = dataclasses.replace(
        state,
        epochs_done=number,
        step=0,
        backup=name,
        backup_sha256=sha256,
        running={},
        history=[*state.history, {"epoch": epoch, **dict(sorted(logs.items()))}],
        best_epoch=best_epoch,
        best_value=logs[MONITOR] if improved else state.best_value,
        fit_done=stop or number == run.config.epochs,
        train_seconds=train_seconds,
        train_tokens=state.train_tokens + tokens_trained,
    )
    commit(run.run_dir, state)
    crash_point("after-commit")  # committed; the best model not yet renamed into place
    settle_files(run.run_dir, state)
    if stop and number < run.config.epochs:
        print(f"Epoch {number}: early stopping, best epoch {best_epoch}")
    return state
