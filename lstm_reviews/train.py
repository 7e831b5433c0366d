"""Trains the IMDB sentiment LSTM: `python -m lstm_reviews.train --help`.

    tokens (cache) -> batches -> model, started from the word vectors and the pretrained
    language model -> epochs of Keras train_on_batch -> the run directory (rundir) -> the
    SavedModel (export)

A run is a sequence of committed states (RunState, in state.json): started, k batches of
epoch e trained, epoch e done (its history row, best model and backup all written), fit
done, evaluated, exported. Each file is written under a temporary name and renamed; the
state is committed last, so a kill at any moment leaves the last committed state whole, and
--resume continues from it: a finished epoch is never trained again, a missing evaluation
or export is made. Each epoch's batches depend on (seed, epoch) alone (batches.epoch_batches)
and the backup holds every variable (dropout seed states too), so a resumed run ends with
the metrics of the uninterrupted one. Keras does the steps (train_on_batch), the evaluation,
the progress bar, TerminateOnNaN and TensorBoard. Training reads the token cache
(tokens.prepare_tokens), so it runs on the JAX backend too; TensorFlow is imported only where
the TF backend is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import sys
import time
import types
import uuid
from pathlib import Path

import numpy as np

from lstm_reviews.backend import (
    describe_device,
    runs_on_tensorflow,
    set_up_backend,
    tensorflow_or_none,
)
from lstm_reviews.config import Config, config_from_args, option, resume_conflicts
from lstm_reviews.crashpoints import crash_point
from lstm_reviews.data import tokens
from lstm_reviews.errors import UserError, batch_end_interrupts, check_interrupt, run_command
from lstm_reviews.rundir import (
    CONFIG,
    LOCK,
    METRICS,
    MODEL,
    PREVIOUS_STATE,
    STATE,
    DamagedFile,
    RunDir,
    warn,
)
from lstm_reviews.startup import deferred_import

# Imported on first use: --help and option errors answer without Keras or TensorFlow.
keras = deferred_import("keras")
batches = deferred_import("lstm_reviews.data.batches")
embeddings = deferred_import("lstm_reviews.data.embeddings")
pretrain = deferred_import("lstm_reviews.training.pretrain")
models = deferred_import("lstm_reviews.model.classifier")
distribute = deferred_import("lstm_reviews.training.distribute")

# Accuracy is what we report, so it picks the best epoch and stops training.
MONITOR, MONITOR_MODE = "val_accuracy", "max"
# A killed run loses at most this many batches (and at most a quarter epoch): the backup
# within an epoch holds the variables and the position, and the resumed run goes on from it.
BACKUP_EVERY_BATCHES = 100
_STATE_FORMAT = 1


def initialize_reader(model: keras.Model, config: Config, token_data) -> None:
    """Starts the embedding, and with --lm-epochs the LSTM too, from the unlabeled reviews:
    the word vectors (embeddings.py), then the language model pretrained from them (pretrain.py)."""
    if config.lm_epochs:
        pretrain.load_into(model, pretrain.reader_weights(config, token_data))
    elif config.pretrain_embeddings:
        model.get_layer("embedding").set_weights(
            [embeddings.pretrained_embeddings(config, token_data)]
        )


def evaluate(model: keras.Model, dataset) -> dict:
    """{"loss", "accuracy"} of `model` over the reviews of `dataset`'s batches, padding rows
    (weight 0) left out: the mean cross-entropy and accuracy per review.

    With fixed shapes "loss" is the cross_entropy metric (model.compile_model): Keras' own
    "loss" averages the batches' losses, each batch counted by its rows, padding rows
    included. With dynamic shapes (no padding rows, no such metric) it is Keras' own.
    """
    results = model.evaluate(dataset, return_dict=True, verbose=0)
    loss = results["cross_entropy"] if "cross_entropy" in results else results["loss"]
    return {"loss": float(loss), "accuracy": float(results["accuracy"])}


@dataclasses.dataclass
class RunState:
    """Where a run is: state.json. It changes only by a commit (_commit), made after every
    file it names is written, so whatever moment a run is killed at, the last committed
    state and its files are whole."""

    data: dict  # the data's identity (_data_identity): --resume must bring the same
    # The settings the variables were trained with (the Config as a dict): config.json is
    # checked against them on --resume. None in runs from before it was recorded.
    config: dict | None = None
    epochs_done: int = 0  # epochs whose history row, best model and backup are all written
    step: int = 0  # batches of epoch epochs_done + 1 trained: the position `backup` holds
    backup: str | None = None  # backup/<name> at (epochs_done, step); None: not started
    backup_sha256: str | None = None
    running: dict = dataclasses.field(default_factory=dict)  # {log: [sum, reviews]} so far
    history: list = dataclasses.field(default_factory=list)  # a row per epoch done
    best_epoch: int = 0  # the 1-based epoch model.keras holds; 0: none yet
    best_value: float | None = None  # its validation accuracy
    fit_done: bool = False  # the last epoch, or early stopping's, is done
    evaluated: bool = False  # metrics.json is written
    exported: str | None = None  # the SavedModel version written for this run
    # Its exports carry it (export.json): after a kill between the publishing of a version and
    # the commit naming it, the resumed run finds that version instead of publishing another.
    run_id: str | None = None  # None: a run of a version before run ids
    train_seconds: float = 0.0  # in training batches, every process of the run together
    train_tokens: int = 0
    format: int = _STATE_FORMAT

    @classmethod
    def from_dict(cls, values: dict) -> RunState:
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def _commit(run_dir: RunDir, state: RunState) -> None:
    """Makes `state` the run's state, then deletes the backups neither it nor the state it
    replaces names (that one stays, to fall back on)."""
    replaced = run_dir.state_backup_name()
    run_dir.write_state(dataclasses.asdict(state))
    run_dir.remove_unused_backups({state.backup, replaced})


def _pending_best_model(run_dir: RunDir, epoch: int) -> Path:
    """Where epoch's model waits, between its save and the state naming it best: a kill
    there must not leave model.keras holding an epoch the history does not call best."""
    return run_dir / f".best-epoch-{epoch}.keras"


def _save_model_atomically(model: keras.Model, path: Path) -> None:
    partial = path.with_name(".partial" + path.name)  # Keras wants the .keras suffix
    model.save(partial)
    crash_point("checkpoint-save")  # the model written, not yet renamed
    os.replace(partial, path)


def _settle_files(run_dir: RunDir, state: RunState) -> None:
    """Makes the run's files agree with `state`: the best epoch's pending model becomes
    model.keras (a kill came between the commit and the rename), other pending or partial
    models go, history.csv is written from the state's rows."""
    pending = _pending_best_model(run_dir, state.best_epoch)
    if state.best_epoch and pending.exists():
        os.replace(pending, run_dir / MODEL)
    for stale in [*run_dir.path.glob(".best-epoch-*.keras"), *run_dir.path.glob(".partial*")]:
        stale.unlink(missing_ok=True)
    run_dir.write_history(state.history)


def _training_variables(model: keras.Model) -> list:
    """Everything a step reads and changes: model.variables (the weights and the dropout
    layers' seed-generator states, which model.weights leaves out) and the optimizer's
    (step count, moments)."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return [*model.variables, *model.optimizer.variables]


def _save_backup(model: keras.Model, run_dir: RunDir, name: str) -> str:
    # variable.numpy(): keras.ops.convert_to_numpy warns under NumPy 2 with TensorFlow 2.21.
    arrays = {str(k): v.numpy() for k, v in enumerate(_training_variables(model))}
    return run_dir.write_backup(name, arrays)


def _restore_backup(model: keras.Model, run_dir: RunDir, state: RunState) -> None:
    """Sets every training variable from the state's backup; DamagedFile if it cannot.

    UserError if the backup is whole (its checksum is the state's) but made for another
    model than config.json describes: config.json was changed, and the other backups,
    written by the same run, would not fit either."""
    path = run_dir.backup / state.backup
    arrays = run_dir.read_backup(state.backup, state.backup_sha256)
    variables = _training_variables(model)
    if len(arrays) != len(variables):
        _config_does_not_fit(
            run_dir, path, f"it holds {len(arrays)} variables, the model has {len(variables)}"
        )
    for index, variable in enumerate(variables):
        value = arrays[str(index)]
        if tuple(value.shape) != tuple(variable.shape):
            _config_does_not_fit(
                run_dir,
                path,
                f"its variable {index} has shape {value.shape}, {variable.path} has "
                f"{tuple(variable.shape)}",
            )
        variable.assign(value)


def _config_does_not_fit(run_dir: RunDir, backup: Path, details: str) -> None:
    raise UserError(
        f"--resume: {backup} is whole (its checksum is the one {STATE} recorded) but does "
        f"not fit the model {run_dir / CONFIG} describes ({details}): was config.json "
        f"edited? Restore the settings the run was trained with in it and resume with them"
    )


def _trained_config(run_dir: RunDir) -> tuple[Path, Config] | None:
    """(state file, Config) the newest readable state records the run was trained with;
    None if no state records one (older runs). Damaged states are left to read_states."""
    for path in (run_dir / STATE, run_dir / PREVIOUS_STATE):
        try:
            return path, Config.from_dict(json.loads(path.read_text(encoding="utf-8"))["config"])
        except (OSError, ValueError, KeyError, TypeError, UserError):
            continue
    return None


def _check_config_file(run_dir: RunDir, saved: Config) -> None:
    """UserError if config.json (`saved`) differs from the settings the state records the
    run was trained with, in a setting a resumed run may not change: a hand edit."""
    trained = _trained_config(run_dir)
    if trained is None:
        return
    state_path, config = trained
    edited = resume_conflicts(config, saved)
    if edited:
        details = ", ".join(
            f"{name} {getattr(config, name)!r} (config.json: {getattr(saved, name)!r})"
            for name in edited
        )
        raise UserError(
            f"--resume: {run_dir / CONFIG} differs from the settings the run was trained "
            f'with, which {state_path} records under "config": {details}; its backups are '
            f"whole: restore config.json to those settings and resume with them"
        )


def _data_identity(token_data) -> dict:
    """What --resume compares: the token settings (source, vocabulary size, validation split,
    standardization...) and where the reviews are, not the files' times or sizes."""
    settings = {key: value for key, value in token_data.settings.items() if key != "data"}
    data = dict(token_data.settings.get("data") or {})
    data.pop("mtime_ns", None)
    if isinstance(data.get("tarball"), dict):
        data["tarball"] = data["tarball"].get("path")
    return {**settings, "data": data}


def _check_same_data(run_dir: RunDir, saved: dict | None, now: dict, vocabulary: list) -> None:
    """UserError if the resumed run would read other data or another vocabulary than the
    weights were trained on. saved: the state's data identity (None: no state yet)."""
    saved = now if saved is None else saved
    changed = sorted(key for key in {*saved, *now} if saved.get(key) != now.get(key))
    if changed:
        details = ", ".join(f"{key} {saved.get(key)!r} -> {now.get(key)!r}" for key in changed)
        raise UserError(
            f"--resume: the data differ from the run's in {run_dir.path}: {details}; resume "
            f"with the run's --data, or train in another --output-dir"
        )
    path = run_dir / "vocabulary.txt"
    if not path.exists():
        return
    kept = run_dir.read_vocabulary()
    if kept != vocabulary:
        line = next(
            (k for k, (a, b) in enumerate(zip(kept, vocabulary)) if a != b),
            min(len(kept), len(vocabulary)),
        )
        saved_token = kept[line] if line < len(kept) else "(end)"
        new_token = vocabulary[line] if line < len(vocabulary) else "(end)"
        raise UserError(
            f"--resume: {path} ({len(kept)} tokens) differs from the vocabulary the data give "
            f"now ({len(vocabulary)} tokens), first at line {line + 1}: {saved_token!r} -> "
            f"{new_token!r}; the weights were trained on the saved words"
        )


def _make_run_dir(config: Config, run_dir: RunDir) -> None:
    """Creates the run directory of a new run (where its lock is taken); refuses a file, or
    --resume of a directory that does not exist (without creating it)."""
    path = run_dir.path
    if path.exists() and not path.is_dir():
        raise UserError(f"--output-dir {path} is a file; expected a directory for the run")
    if config.resume and not path.exists():
        raise UserError(f"--resume: {path} holds no run to resume (it does not exist)")
    path.mkdir(parents=True, exist_ok=True)


def _check_run_dir(config: Config, run_dir: RunDir) -> None:
    """Checks the run directory against --resume, and a resumed run's settings (with the
    directory's lock held: what it holds cannot change meanwhile)."""
    path = run_dir.path
    # The lock file alone (a run killed before writing anything) is no run.
    exists = any(entry.name != LOCK for entry in path.iterdir())
    if exists and not config.resume:
        raise UserError(
            f"run directory {path} already exists and is not empty; pass --resume "
            f"to continue it, or choose another --output-dir"
        )
    if not config.resume:
        return
    if not exists:  # killed before it wrote anything (its tokens, say): nothing to lose
        print(f"--resume: {path} holds nothing of its run yet (stopped early): starting it")
        return
    if not (run_dir / "config.json").exists():
        raise UserError(f"--resume: {path} holds no run to resume (no config.json)")
    saved = run_dir.read_config()
    _check_config_file(run_dir, saved)
    changed = resume_conflicts(saved, config)
    if changed:
        details = ", ".join(
            f"{option(name)} {getattr(saved, name)!r} -> {getattr(config, name)!r}"
            for name in changed
        )
        raise UserError(f"--resume: settings differ from the run in {path}: {details}")


def _choose_state(run_dir: RunDir, model: keras.Model, states: list):
    """(path, state): the newest committed state whose files are whole, its variables loaded
    into `model`; (None, None) if there is none to resume (killed before its first commit)."""
    for path, values in states:
        state = RunState.from_dict(values)
        if state.fit_done or state.backup is None:
            return path, state
        try:
            _restore_backup(model, run_dir, state)
        except DamagedFile as error:
            warn(f"{error}; falling back to the state before {path.name}")
            continue
        return path, state
    if states:
        raise UserError(
            f"--resume: no state in {run_dir.path} has whole files (see the warnings above); "
            f"delete {run_dir.path} to train the run again"
        )
    return None, None


def make_callbacks(config: Config, run_dir: RunDir, extra=()) -> list:
    """Keras' callbacks for the epochs: TerminateOnNaN, `extra`, TensorBoard."""
    callbacks = [keras.callbacks.TerminateOnNaN(), *extra]
    if tensorflow_or_none() is not None and importlib.util.find_spec("tensorboard"):
        # Keras' TensorBoard writes through tf.summary, which needs the tensorboard package.
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir.logs)))
    else:
        print("TensorBoard logs skipped: they need the tensorflow and tensorboard packages")
    return callbacks


@contextlib.contextmanager
def averaged_weights(model: keras.Model):
    """Within: the model's trainable weights are the optimizer's moving averages (with
    --ema-momentum; otherwise unchanged), so validation and the best model see them. After:
    the trained weights again, bit for bit, and training goes on from them."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # loss scaling
    if not optimizer.use_ema:
        yield model
        return
    trained = [variable.numpy() for variable in model.trainable_variables]
    model.optimizer.finalize_variable_values(model.trainable_variables)
    for variable in model.trainable_variables:
        # Under JAX the assignment shares the average's buffer, which a step that donates
        # the weights' buffers (evaluate) would then delete: a copy of its own.
        variable.assign(variable.numpy())
    try:
        yield model
    finally:
        for variable, value in zip(model.trainable_variables, trained):
            variable.assign(value)


def _validation_step_hook():
    """A test hook in the validation of each epoch (crashpoints.py)."""
    return keras.callbacks.LambdaCallback(
        on_test_batch_end=lambda batch, logs: crash_point("validation-step")
    )


def _fit(
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
    for epoch in range(state.epochs_done, config.epochs):
        number = epoch + 1
        running = {key: list(pair) for key, pair in state.running.items()}
        logs = {key: total / count for key, (total, count) in running.items()}
        callback_list.on_epoch_begin(epoch)
        clock_started, tokens_trained = time.perf_counter(), 0
        epoch_batches = batches.epoch_batches(
            token_data.train, config, boundaries, epoch, first_step=state.step
        )
        for step, (ids, labels, *weights) in enumerate(epoch_batches, start=state.step):
            callback_list.on_train_batch_begin(step)
            sample_weight = weights[0] if weights else None
            # The epoch's logs: per-review means over its batches (a topped-up batch's
            # padding rows count for nothing), as exact after a resume as without one.
            reviews = float(np.sum(sample_weight)) if weights else float(len(labels))
            inputs, targets = ids, labels
            if unlabeled is not None:
                rows = unlabeled.rows(config.vat_batch_size, ids.shape[1], epoch, step)
                inputs, targets, sample_weight = batches.with_unlabeled(
                    ids, labels, sample_weight, rows
                )
            batch_logs = model.train_on_batch(
                inputs, targets, sample_weight=sample_weight, return_dict=True
            )
            for key, value in batch_logs.items():
                total, count = running.get(key, (0.0, 0.0))
                running[key] = [total + float(value) * reviews, count + reviews]
            logs = {key: total / count for key, (total, count) in running.items()}
            tokens_trained += int(keras.ops.count_nonzero(ids))
            callback_list.on_train_batch_end(step, logs)
            crash_point("epoch-step")
            check_interrupt()
            if model.stop_training:  # TerminateOnNaN, or a callback of the caller
                break
            if (step + 1) % every == 0:
                name = f"epoch-{number}-step-{step + 1}.npz"
                state = dataclasses.replace(
                    state,
                    step=step + 1,
                    backup=name,
                    backup_sha256=_save_backup(model, run_dir, name),
                    running=running,
                    train_seconds=state.train_seconds + time.perf_counter() - clock_started,
                    train_tokens=state.train_tokens + tokens_trained,
                )
                _commit(run_dir, state)
                clock_started, tokens_trained = time.perf_counter(), 0
        if not np.isfinite(logs.get("loss", 0.0)):
            raise RuntimeError(
                f"sentiment training stopped on a NaN loss in epoch {number}: no "
                f"metrics.json written; train again in a new --output-dir, e.g. with a lower "
                f"--learning-rate"
            )
        train_seconds = state.train_seconds + time.perf_counter() - clock_started
        with averaged_weights(model):
            validation = model.evaluate(
                validation_batches, return_dict=True, verbose=0, callbacks=[_validation_step_hook()]
            )
            logs = {**logs, **{f"val_{key}": float(value) for key, value in validation.items()}}
            improved = state.best_value is None or logs[MONITOR] > state.best_value
            if improved:
                _save_model_atomically(model, _pending_best_model(run_dir, number))
        callback_list.on_epoch_end(epoch, logs)
        name = f"epoch-{number}.npz"
        sha256 = _save_backup(model, run_dir, name)
        crash_point("after-backup")  # the backup written, the epoch not yet committed
        best_epoch = number if improved else state.best_epoch
        stop = model.stop_training or (not improved and number - best_epoch >= config.patience)
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
            fit_done=stop or number == config.epochs,
            train_seconds=train_seconds,
            train_tokens=state.train_tokens + tokens_trained,
        )
        _commit(run_dir, state)
        crash_point("after-commit")  # committed; the best model not yet renamed into place
        _settle_files(run_dir, state)
        if stop and number < config.epochs:
            print(f"Epoch {number}: early stopping, best epoch {best_epoch}")
        if state.fit_done:
            break
        check_interrupt()  # one that came during the validation: the epoch is kept
    callback_list.on_train_end()
    if not state.fit_done:  # --epochs lowered on resume below the epochs done
        state = dataclasses.replace(state, fit_done=True)
        _commit(run_dir, state)
    return state


def export_or_explain(config: Config, run_dir: Path):
    """Exports the SavedModel when possible; otherwise prints the command that will."""
    later = f"KERAS_BACKEND=tensorflow python -m lstm_reviews.export {run_dir}"
    if not config.export:
        print(f"Export skipped (--no-export). To export later: {later}")
        return None
    if not runs_on_tensorflow():
        print(f"SavedModel export needs the TensorFlow backend. To export later: {later}")
        return None
    from lstm_reviews.serving.savedmodel import export_saved_model

    path = export_saved_model(run_dir, config.export_dir)
    print(f"SavedModel exported to {path}")
    return path


def _export(config: Config, run_dir: RunDir, state: RunState) -> None:
    if state.run_id is None:  # a run of an older version: its export needs an id to carry
        state = dataclasses.replace(state, run_id=uuid.uuid4().hex)
        _commit(run_dir, state)
    path = _published_before(config, state) or export_or_explain(config, run_dir.path)
    if path is not None:
        crash_point("after-export")  # the version published, not yet committed
        _commit(run_dir, dataclasses.replace(state, exported=str(path)))


def _published_before(config: Config, state: RunState) -> Path | None:
    """The version this run published before a kill came ahead of the commit naming it; TF
    Serving would take the same model published again for a new one."""
    if not (config.export and runs_on_tensorflow()):
        return None
    from lstm_reviews.serving.versions import published_version

    path = published_version(Path(config.export_dir), state.run_id)
    if path is not None:
        print(f"SavedModel already exported to {path} (before the run was stopped)")
    return path


def train_and_evaluate(
    config: Config, run_dir=None, *, callbacks=(), backup_every_batches: int = BACKUP_EVERY_BATCHES
) -> dict:
    """Trains per `config` in `run_dir` (default config.output_dir); returns metrics.json's dict.

    With config.resume, continues the run from its last committed state (RunState).
    callbacks: extra Keras callbacks, called as fit calls them (tests use them).
    backup_every_batches: the most batches between two backups within an epoch (there are
    at least four an epoch).
    Raises UserError for a run directory or data the user must fix, or one that another
    process trains or exports (RunDir.locked).
    """
    run_dir = RunDir(run_dir or config.output_dir)
    _make_run_dir(config, run_dir)
    with run_dir.locked():
        return _train_and_evaluate(config, run_dir, callbacks, backup_every_batches)


def _train_and_evaluate(
    config: Config, run_dir: RunDir, callbacks, backup_every_batches: int
) -> dict:
    _check_run_dir(config, run_dir)
    states = run_dir.read_states() if config.resume else []
    if config.resume and not states:
        if (run_dir / METRICS).exists():
            raise UserError(
                f"--resume: the run in {run_dir.path} already finished (metrics.json exists)"
            )
        if (run_dir / STATE).exists():  # damaged, and no earlier state to fall back on
            raise UserError(
                f"--resume: {run_dir / STATE} is damaged and there is no earlier state; "
                f"delete {run_dir.path} to train the run again"
            )
    started = time.perf_counter()
    set_up_backend(config)
    distribution = distribute.set_up_distribution(config)  # before any model: it places the weights
    print(f"Config:\n{config.to_json()}")
    print(f"Backend: {keras.backend.backend()}, device: {describe_device()}")
    if distribution is not None:
        print(f"Data parallel over {distribution.device_mesh.devices.size} devices")

    token_data = tokens.prepare_tokens(config)
    vocabulary = list(token_data.vocabulary)
    data = _data_identity(token_data)
    if config.resume:
        _check_same_data(run_dir, states[0][1].get("data") if states else None, data, vocabulary)
    if states:
        newest = RunState.from_dict(states[0][1])
        if newest.evaluated:
            if not (config.export and newest.exported is None and runs_on_tensorflow()):
                raise UserError(
                    f"--resume: the run in {run_dir.path} already finished (metrics.json exists)"
                )
            print(f"Resuming {run_dir.path}: trained and evaluated, exporting")
            _export(config, run_dir, newest)
            return run_dir.read_metrics()
    run_dir.write_config(config)
    run_dir.write_vocabulary(vocabulary)
    print(
        f"Reviews: {len(token_data.train)} train, {len(token_data.validation)} validation, "
        f"{len(token_data.test)} test; vocabulary {len(vocabulary)} tokens"
    )

    # Fixed shapes: the training split's length buckets serve every split, one set of batch
    # lengths. Dynamic: None, each split buckets its own reviews.
    boundaries = batches.split_boundaries(token_data.train, config)
    validation_batches = batches.make_batches(token_data.validation, config, boundaries)
    test_batches = batches.make_batches(token_data.test, config, boundaries)
    if boundaries is None:
        print("Batch lengths: each batch's longest review (dynamic shapes)")
    else:
        print(f"Batch lengths (length buckets): {[bound - 1 for bound in boundaries]}")

    # Bucketing makes the count vary a little between epochs (fixed shapes: a bucket's last
    # batch topped up): the schedule needs only its scale, the one the recipe was measured with.
    steps_per_epoch = -(-len(token_data.train) // config.batch_size)
    model = models.compile_model(
        models.build_model(config, len(vocabulary)), config, steps_per_epoch
    )
    path, state = _choose_state(run_dir, model, states)
    if state is not None and state.backup is not None:
        if path != run_dir / STATE:  # a fallback: it becomes current, the damaged one goes
            _commit(run_dir, state)
        _settle_files(run_dir, state)
        print(
            f"Resuming {run_dir.path} after epoch {state.epochs_done} of {config.epochs}"
            + (f", batch {state.step} of epoch {state.epochs_done + 1}" if state.step else "")
        )
    else:  # a new run, or one killed before its first backup: start afresh
        initialize_reader(model, config, token_data)
        name = "epoch-1-step-0.npz"
        state = RunState(
            data=data,
            config=dataclasses.asdict(config),
            backup=name,
            backup_sha256=_save_backup(model, run_dir, name),
            run_id=uuid.uuid4().hex,
        )
        _commit(run_dir, state)
        run_dir.write_history([])
    if not state.fit_done:
        every = max(1, min(backup_every_batches, steps_per_epoch // 4))
        with batch_end_interrupts():
            state = _fit(
                model,
                config,
                run_dir,
                state,
                token_data,
                boundaries,
                validation_batches,
                callbacks,
                every,
            )
    crash_point("after-fit")

    history = state.history
    if not (run_dir / MODEL).exists():
        raise RuntimeError(
            f"training produced no checkpoint in {run_dir.path}: did every epoch fail?"
        )
    # The best checkpoint, not the last weights: also right for a resumed run.
    best = keras.saving.load_model(run_dir / MODEL)
    models.compile_model(best, config)
    validation = evaluate(best, validation_batches)
    test = evaluate(best, test_batches)
    seconds = state.train_seconds
    metrics = {
        "validation_accuracy": validation["accuracy"],
        "validation_loss": validation["loss"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "epochs": len(history),
        "best_epoch": state.best_epoch,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "train_seconds": round(seconds, 1),
        "tokens_per_second": round(state.train_tokens / seconds, 1) if seconds else 0.0,
        "train_reviews": len(token_data.train),
        "validation_reviews": len(token_data.validation),
        "test_reviews": len(token_data.test),
        "vocabulary_size": len(vocabulary),
        "backend": keras.backend.backend(),
        "device": describe_device(),
        "keras_version": keras.__version__,
    }
    run_dir.write_metrics(metrics)
    state = dataclasses.replace(state, evaluated=True)
    _commit(run_dir, state)
    print(
        f"Best epoch {metrics['best_epoch']} of {metrics['epochs']}: "
        f"validation accuracy {validation['accuracy']:.4f}, test accuracy {test['accuracy']:.4f} "
        f"(loss {test['loss']:.4f}); {metrics['tokens_per_second']:.0f} tokens/s"
    )
    _export(config, run_dir, state)
    return metrics


def _interrupted_message(config: Config) -> str:
    """What Ctrl-C leaves, said as it is at that moment."""
    run_dir = RunDir(config.output_dir)
    if (run_dir / "config.json").exists() and not (run_dir / METRICS).exists():
        return (
            f"Interrupted. Continue with the same options plus --resume "
            f"(the run directory is {run_dir.path})."
        )
    if (run_dir / METRICS).exists():
        states = run_dir.read_states()
        if (
            config.export
            and states
            and states[0][1].get("exported") is None
            and runs_on_tensorflow()
        ):
            return (
                f"Interrupted during the export; the run in {run_dir.path} is trained and "
                f"evaluated: --resume exports it."
            )
        return f"Interrupted after training finished; the run in {run_dir.path} is complete."
    return "Interrupted before the run started: nothing was saved; run the same command again."


def main(argv=None) -> int:
    """CLI entry: exit 0 on success, 2 on a user mistake, 130 on Ctrl-C, 1 on a bug."""
    config = config_from_args(
        argv, description="Train the IMDB sentiment LSTM.", prog="python -m lstm_reviews.train"
    )

    def body():
        tokens.check_data_path(config)  # before Keras: a wrong path answers at once
        train_and_evaluate(config)

    outputs = {"--output-dir": config.output_dir, "--cache-dir": config.cache_dir}
    if config.export:
        outputs["--export-dir"] = config.export_dir
    return run_command(body, on_interrupt=lambda: _interrupted_message(config), outputs=outputs)


class _CallableModule(types.ModuleType):
    """The package's attribute `train` is this module (Python binds a submodule there once it
    is imported), so the module itself answers the API's call: lstm_reviews.train(config,
    run_dir) trains and returns the finished run, lstm_reviews.api.train."""

    def __call__(self, config: Config | None = None, run_dir=None):
        from lstm_reviews.api import train

        return train(config, run_dir)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
