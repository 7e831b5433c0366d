"""A training run from its Config to its run directory: train_and_evaluate.

    tokens (cache) -> batches -> model, started from the word vectors and the pretrained
    language model -> the epochs (loop.fit) -> evaluation of the best model -> the
    SavedModel (export)

A run is a sequence of committed states (state.RunState, in state.json): started, k batches
of epoch e trained, epoch e done (its history row, best model and backup all written), fit
done, evaluated, exported. Each file is written under a temporary name and renamed; the
state is committed last, so a kill at any moment leaves the last committed state whole, and
--resume continues from it: a finished epoch is never trained again, a missing evaluation
or export is made. Training reads the token cache (tokens.prepare_tokens), so it runs on the
JAX backend too; TensorFlow is imported only where the TF backend is used.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path

from lstm_reviews.backend import describe_device, runs_on_tensorflow, set_up_backend
from lstm_reviews.config import Config
from lstm_reviews.crashpoints import crash_point
from lstm_reviews.data import tokens
from lstm_reviews.errors import UserError, batch_end_interrupts
from lstm_reviews.processes import writes_files
from lstm_reviews.rundir import CONFIG, METRICS, MODEL, STATE, RunDir
from lstm_reviews.startup import deferred_import
from lstm_reviews.training import resume
from lstm_reviews.training.loop import fit
from lstm_reviews.training.state import RunState, choose_state, commit, save_backup, settle_files

# Imported on first use: --help and option errors answer without Keras or TensorFlow.
keras = deferred_import("keras")
batches = deferred_import("lstm_reviews.data.batches")
embeddings = deferred_import("lstm_reviews.data.embeddings")
pretrain = deferred_import("lstm_reviews.training.pretrain")
models = deferred_import("lstm_reviews.model.classifier")
distribute = deferred_import("lstm_reviews.training.distribute")

# A killed run loses at most this many batches (and at most a quarter epoch): the backup
# within an epoch holds the variables and the position, and the resumed run goes on from it.
BACKUP_EVERY_BATCHES = 100


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


def export_run(config: Config, run_dir: RunDir, state: RunState) -> None:
    """Exports the evaluated run (or says how to) and commits the version it published."""
    if state.run_id is None:  # a run of an older version: its export needs an id to carry
        state = dataclasses.replace(state, run_id=uuid.uuid4().hex)
        commit(run_dir, state)
    path = _published_before(config, state) or export_or_explain(config, run_dir.path)
    if path is not None:
        crash_point("after-export")  # the version published, not yet committed
        commit(run_dir, dataclasses.replace(state, exported=str(path)))


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
    In a run of several processes (distribute.start_processes), process 0 makes, locks and
    writes the run directory; the others read it, after it (distribute.wait_for_all).
    """
    distribute.start_processes(config)  # before anything uses JAX
    run_dir = RunDir(run_dir or config.output_dir)
    if not writes_files():
        distribute.wait_for_all("run directory made")
        return _train_and_evaluate(config, run_dir, callbacks, backup_every_batches)
    resume.make_run_dir(config, run_dir)
    with run_dir.locked():
        distribute.wait_for_all("run directory made")
        return _train_and_evaluate(config, run_dir, callbacks, backup_every_batches)


def _train_and_evaluate(
    config: Config, run_dir: RunDir, callbacks, backup_every_batches: int
) -> dict:
    states = _read_run_dir(config, run_dir)
    started = time.perf_counter()
    set_up_backend(config)
    distribution = distribute.set_up_distribution(config)  # before any model: it places the weights
    print(f"Config:\n{config.to_json()}")
    print(f"Backend: {keras.backend.backend()}, device: {describe_device()}")
    if distribution is not None:
        print(f"Data parallel over {distribution.device_mesh.devices.size} devices")

    token_data = tokens.prepare_tokens(config)
    vocabulary = list(token_data.vocabulary)
    data = resume.data_identity(token_data)
    if config.resume:
        resume.check_same_data(
            run_dir, states[0][1].get("data") if states else None, data, vocabulary
        )
    if states and RunState.from_dict(states[0][1]).evaluated:
        return _export_evaluated(config, run_dir, RunState.from_dict(states[0][1]))
    run_dir.write_config(config)
    run_dir.write_vocabulary(vocabulary)
    print(
        f"Reviews: {len(token_data.train)} train, {len(token_data.validation)} validation, "
        f"{len(token_data.test)} test; vocabulary {len(vocabulary)} tokens"
    )
    steps_per_epoch = -(-len(token_data.train) // config.batch_size)
    boundaries, validation_batches, test_batches = _evaluation_batches(config, token_data)
    model, state = _start_or_resume(config, run_dir, states, token_data, data, steps_per_epoch)
    if not state.fit_done:
        every = max(1, min(backup_every_batches, steps_per_epoch // 4))
        with batch_end_interrupts():
            state = fit(
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
    distribute.wait_for_all("best model saved")  # by process 0; every process evaluates it
    metrics = _evaluate_best(config, run_dir, state, token_data, validation_batches, test_batches)
    metrics["wall_time_s"] = round(time.perf_counter() - started, 1)
    metrics.update(_run_facts(state, token_data))
    run_dir.write_metrics(metrics)
    state = dataclasses.replace(state, evaluated=True)
    commit(run_dir, state)
    print(
        f"Best epoch {metrics['best_epoch']} of {metrics['epochs']}: "
        f"validation accuracy {metrics['validation_accuracy']:.4f}, test accuracy "
        f"{metrics['test_accuracy']:.4f} (loss {metrics['test_loss']:.4f}); "
        f"{metrics['tokens_per_second']:.0f} tokens/s"
    )
    export_run(config, run_dir, state)
    return metrics


def _read_run_dir(config: Config, run_dir: RunDir) -> list:
    """The run directory checked against config, and its committed states (newest first);
    read by every process before process 0 writes in it."""
    resume.check_run_dir(config, run_dir)
    states = resume.committed_states(config, run_dir)
    distribute.wait_for_all("run directory read")
    return states


def _export_evaluated(config: Config, run_dir: RunDir, state: RunState) -> dict:
    """Resumes a run killed after its evaluation: makes the missing export, or refuses a
    finished run."""
    if not (config.export and state.exported is None and runs_on_tensorflow()):
        raise UserError(
            f"--resume: the run in {run_dir.path} already finished (metrics.json exists)"
        )
    print(f"Resuming {run_dir.path}: trained and evaluated, exporting")
    export_run(config, run_dir, state)
    return run_dir.read_metrics()


def _evaluation_batches(config: Config, token_data) -> tuple:
    """(length buckets, validation batches, test batches). Fixed shapes: the training
    split's length buckets serve every split, one set of batch lengths. Dynamic: None, each
    split buckets its own reviews."""
    boundaries = batches.split_boundaries(token_data.train, config)
    validation_batches, test_batches = (
        distribute.process_part(batches.make_batches(split, config, boundaries))
        for split in (token_data.validation, token_data.test)
    )
    if boundaries is None:
        print("Batch lengths: each batch's longest review (dynamic shapes)")
    else:
        print(f"Batch lengths (length buckets): {[bound - 1 for bound in boundaries]}")
    return boundaries, validation_batches, test_batches


def _start_or_resume(config, run_dir, states, token_data, data, steps_per_epoch) -> tuple:
    """(model, state): the model built, and either the newest whole committed state loaded
    into it, or (a new run, or one killed before its first backup) started afresh from the
    pretrained reader and committed."""
    # Bucketing makes the count vary a little between epochs (fixed shapes: a bucket's last
    # batch topped up): the schedule needs only its scale, the one the recipe was measured with.
    vocabulary_size = len(token_data.vocabulary)
    model = models.compile_model(
        models.build_model(config, vocabulary_size), config, steps_per_epoch
    )
    path, state = choose_state(run_dir, model, states)
    if state is not None and state.backup is not None:
        if path != run_dir / STATE:  # a fallback: it becomes current, the damaged one goes
            commit(run_dir, state)
        settle_files(run_dir, state)
        print(
            f"Resuming {run_dir.path} after epoch {state.epochs_done} of {config.epochs}"
            + (f", batch {state.step} of epoch {state.epochs_done + 1}" if state.step else "")
        )
        return model, state
    initialize_reader(model, config, token_data)
    name = "epoch-1-step-0.npz"
    state = RunState(
        data=data,
        config=dataclasses.asdict(config),
        backup=name,
        backup_sha256=save_backup(model, run_dir, name),
        run_id=uuid.uuid4().hex,
    )
    commit(run_dir, state)
    run_dir.write_history([])
    return model, state


def _evaluate_best(config, run_dir, state, token_data, validation_batches, test_batches) -> dict:
    """The best epoch's model (not the last weights: also right for a resumed run) on the
    validation and test reviews: metrics.json's accuracies and losses."""
    if not (run_dir / MODEL).exists():
        raise RuntimeError(
            f"training produced no checkpoint in {run_dir.path}: did every epoch fail?"
        )
    best = keras.saving.load_model(run_dir / MODEL)
    models.compile_model(best, config)
    validation = evaluate(best, validation_batches)
    test = evaluate(best, test_batches)
    return {
        "validation_accuracy": validation["accuracy"],
        "validation_loss": validation["loss"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "epochs": len(state.history),
        "best_epoch": state.best_epoch,
    }


def _run_facts(state: RunState, token_data) -> dict:
    """metrics.json's account of the run: its speed, data and machine."""
    seconds = state.train_seconds
    return {
        "train_seconds": round(seconds, 1),
        "tokens_per_second": round(state.train_tokens / seconds, 1) if seconds else 0.0,
        "train_reviews": len(token_data.train),
        "validation_reviews": len(token_data.validation),
        "test_reviews": len(token_data.test),
        "vocabulary_size": len(token_data.vocabulary),
        "backend": keras.backend.backend(),
        "device": describe_device(),
        "keras_version": keras.__version__,
    }


def interrupted_message(config: Config) -> str:
    """What Ctrl-C leaves, said as it is at that moment."""
    run_dir = RunDir(config.output_dir)
    if (run_dir / CONFIG).exists() and not (run_dir / METRICS).exists():
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
