"""A run's committed state (RunState, state.json) and the files it names: the backups of
every training variable, the best model, history.csv.

A state changes only by a commit, made after every file it names is written, so whatever
moment a run is killed at, the last committed state and its files are whole.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from lstm_reviews.crashpoints import crash_point
from lstm_reviews.errors import UserError
from lstm_reviews.processes import writes_files
from lstm_reviews.rundir import CONFIG, MODEL, STATE, DamagedFile, RunDir, warn
from lstm_reviews.startup import deferred_import

keras = deferred_import("keras")

_STATE_FORMAT = 1


@dataclasses.dataclass
class RunState:
    """Where a run is: state.json. It changes only by a commit (commit), made after every
    file it names is written, so whatever moment a run is killed at, the last committed
    state and its files are whole."""

    data: dict  # the data's identity (resume.data_identity): --resume must bring the same
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


def commit(run_dir: RunDir, state: RunState) -> None:
    """Makes `state` the run's state, then deletes the backups neither it nor the state it
    replaces names (that one stays, to fall back on)."""
    replaced = run_dir.state_backup_name()
    run_dir.write_state(dataclasses.asdict(state))
    run_dir.remove_unused_backups({state.backup, replaced})


def pending_best_model(run_dir: RunDir, epoch: int) -> Path:
    """Where epoch's model waits, between its save and the state naming it best: a kill
    there must not leave model.keras holding an epoch the history does not call best."""
    return run_dir / f".best-epoch-{epoch}.keras"


def save_model_atomically(model: keras.Model, path: Path) -> None:
    if not writes_files():
        # Of several processes (processes.py): saving runs collectives under JAX (values
        # placed on every process's devices), so each saves, the others into a scratch file.
        with tempfile.TemporaryDirectory() as scratch:
            model.save(Path(scratch) / path.name)
        return
    partial = path.with_name(".partial" + path.name)  # Keras wants the .keras suffix
    model.save(partial)
    crash_point("checkpoint-save")  # the model written, not yet renamed
    os.replace(partial, path)


def settle_files(run_dir: RunDir, state: RunState) -> None:
    """Makes the run's files agree with `state`: the best epoch's pending model becomes
    model.keras (a kill came between the commit and the rename), other pending or partial
    models go, history.csv is written from the state's rows. Process 0 alone (processes.py)."""
    if not writes_files():
        return
    pending = pending_best_model(run_dir, state.best_epoch)
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


def save_backup(model: keras.Model, run_dir: RunDir, name: str) -> str:
    """Writes every training variable to backup/<name>; returns the file's checksum."""
    # variable.numpy(): keras.ops.convert_to_numpy warns under NumPy 2 with TensorFlow 2.21.
    arrays = {str(k): v.numpy() for k, v in enumerate(_training_variables(model))}
    return run_dir.write_backup(name, arrays)


def restore_backup(model: keras.Model, run_dir: RunDir, state: RunState) -> None:
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


def choose_state(run_dir: RunDir, model: keras.Model, states: list):
    """(path, state): the newest committed state whose files are whole, its variables loaded
    into `model`; (None, None) if there is none to resume (killed before its first commit)."""
    for path, values in states:
        state = RunState.from_dict(values)
        if state.fit_done or state.backup is None:
            return path, state
        try:
            restore_backup(model, run_dir, state)
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
