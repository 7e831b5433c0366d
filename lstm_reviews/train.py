"""Trains the IMDB sentiment LSTM: `python -m lstm_reviews.train --help`.

    tokens (cache) -> batches -> model, started from the word vectors and the pretrained
    language model -> Keras fit -> the run directory (rundir) -> the SavedModel (export)

Keras' fit and callbacks do the work: BackupAndRestore (resume a killed run),
ModelCheckpoint (best on validation, written atomically), EarlyStopping, TensorBoard,
CSVLogger, TerminateOnNaN. Training reads the token cache (tokens.prepare_tokens), so it
runs on the JAX backend too; TensorFlow is imported only where the TF backend is used.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np

from lstm_reviews import batches, embeddings, pretrain, tokens
from lstm_reviews.config import Config, config_from_args, option, resume_conflicts
from lstm_reviews.errors import UserError, run_command
from lstm_reviews.model import build_model, compile_model
from lstm_reviews.rundir import MODEL, RunDir

# Keras' dtype policy of each --mixed-precision choice.
POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
# Accuracy is what we report, so it picks the best epoch and stops training.
MONITOR, MONITOR_MODE = "val_accuracy", "max"
# Backups within an epoch keep the weights of at most this many batches ago; Keras then
# replays that epoch from its first batch on resume (it restores weights, not the position).
BACKUP_EVERY_BATCHES = 100


def _tensorflow_or_none():
    """TensorFlow if importable, else None (JAX/PyTorch set-ups may lack it)."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf


def set_up_backend(config: Config) -> None:
    """Seeds every generator and picks the float policy; call before building the model.

    Under TensorFlow, op determinism makes the same seed give the same run on a CPU.
    """
    keras.utils.set_random_seed(config.seed)
    if keras.backend.backend() == "tensorflow":
        tf = _tensorflow_or_none()
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
        tf = _tensorflow_or_none()
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


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that writes to a temporary file, then renames it over `filepath`.

    os.replace is atomic, so a crash mid-write leaves the previous best model whole.
    """

    def __init__(self, filepath, **kwargs):
        self.final_path = Path(filepath)
        # Keras requires the .keras suffix on the file it writes.
        self.partial_path = self.final_path.with_name(".partial-" + self.final_path.name)
        super().__init__(str(self.partial_path), **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.partial_path.exists():
            os.replace(self.partial_path, self.final_path)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that, on a resumed run, starts from the history so far.

    Keras resets `best` and `wait` at the start of every fit; a resumed run would
    otherwise forget the best epoch before the interruption.
    """

    def __init__(self, history_rows=(), **kwargs):
        super().__init__(**kwargs)
        self.history_rows = list(history_rows)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        values = [float(row[self.monitor]) for row in self.history_rows if row.get(self.monitor)]
        if values:
            best_index = int(np.argmax(values) if self.mode == "max" else np.argmin(values))
            self.best = values[best_index]
            self.best_epoch = best_index
            self.wait = len(values) - 1 - best_index
            # best_weights stay None: the weights of that epoch are in model.keras, which
            # train_and_evaluate reloads at the end in any case.


class EpochAndBatchBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore saving every `save_freq` batches and also at each epoch's end.

    With an integer save_freq Keras saves only every N batches; a run killed just after an
    epoch ended would then train that whole epoch again.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)  # marks the epoch done
        if self.save_freq != "epoch":
            self._save_model()
            self._batches_seen_since_last_saving = 0  # count the next epoch's batches afresh


class TrainingClock(keras.callbacks.Callback):
    """Seconds spent in training batches (validation excluded), for tokens/s."""

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.epochs = 0
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def _stop(self):
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.epochs += 1
            self._start = None

    def on_test_begin(self, logs=None):  # validation starts after the epoch's last batch
        self._stop()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()


def _prepare_run_dir(config: Config, run_dir: RunDir) -> tuple[list[dict], int]:
    """Checks the run directory against --resume; returns (history rows kept, epochs done)."""
    path = run_dir.path
    if path.exists() and not path.is_dir():
        raise UserError(f"--output-dir {path} is a file; expected a directory for the run")
    exists = path.exists() and any(path.iterdir())
    if exists and not config.resume:
        raise UserError(
            f"run directory {path} already exists and is not empty; pass --resume "
            f"to continue it, or choose another --output-dir"
        )
    path.mkdir(parents=True, exist_ok=True)
    if not config.resume:
        return [], 0
    if not exists or not (run_dir / "config.json").exists():
        raise UserError(f"--resume: {path} holds no run to resume (no config.json)")
    saved = run_dir.read_config()
    changed = resume_conflicts(saved, config)
    if changed:
        details = ", ".join(
            f"{option(name)} {getattr(saved, name)!r} -> {getattr(config, name)!r}"
            for name in changed
        )
        raise UserError(f"--resume: settings differ from the run in {path}: {details}")
    epochs_done = run_dir.backup_epochs()
    if not epochs_done and not run_dir.backup.exists() and (run_dir / "metrics.json").exists():
        raise UserError(f"--resume: the run in {path} already finished (metrics.json exists)")
    return run_dir.trim_history(epochs_done), epochs_done


def make_callbacks(
    config: Config,
    run_dir: RunDir,
    history_rows=(),
    backup_every_batches: int = BACKUP_EVERY_BATCHES,
) -> list:
    """Keras' callbacks for a run in `run_dir`; `history_rows` are a resumed run's epochs."""
    best_so_far = [float(row[MONITOR]) for row in history_rows if row.get(MONITOR)]
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        # Before CSVLogger, so a kill between the two loses a row rather than duplicating one
        # (and RunDir.trim_history drops any row past the backup anyway).
        EpochAndBatchBackup(str(run_dir.backup), save_freq=backup_every_batches),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=config.resume),
        AtomicModelCheckpoint(
            run_dir / MODEL,
            monitor=MONITOR,
            mode=MONITOR_MODE,
            save_best_only=True,
            initial_value_threshold=(max(best_so_far) if best_so_far else None),
            verbose=1,
        ),
        ResumableEarlyStopping(
            history_rows,
            monitor=MONITOR,
            mode=MONITOR_MODE,
            patience=config.patience,
            restore_best_weights=True,
            verbose=1,
        ),
    ]
    if _tensorflow_or_none() is not None and importlib.util.find_spec("tensorboard"):
        # Keras' TensorBoard writes through tf.summary, which needs the tensorboard package.
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir.logs)))
    else:
        print("TensorBoard logs skipped: they need the tensorflow and tensorboard packages")
    return callbacks


def export_or_explain(config: Config, run_dir: Path):
    """Exports the SavedModel when possible; otherwise prints the command that will."""
    later = f"KERAS_BACKEND=tensorflow python -m lstm_reviews.export {run_dir}"
    if not config.export:
        print(f"Export skipped (--no-export). To export later: {later}")
        return None
    if keras.backend.backend() != "tensorflow" or _tensorflow_or_none() is None:
        print(f"SavedModel export needs the TensorFlow backend. To export later: {later}")
        return None
    from lstm_reviews.export import export_saved_model

    path = export_saved_model(run_dir, config.export_dir)
    print(f"SavedModel exported to {path}")
    return path


def train_and_evaluate(
    config: Config, run_dir=None, *, callbacks=(), backup_every_batches: int = BACKUP_EVERY_BATCHES
) -> dict:
    """Trains per `config` in `run_dir` (default config.output_dir); returns metrics.json's dict.

    callbacks: extra Keras callbacks (tests use one to interrupt a run).
    backup_every_batches: how often BackupAndRestore saves within an epoch.
    Raises UserError for a run directory or data the user must fix.
    """
    run_dir = RunDir(run_dir or config.output_dir)
    history_rows, epochs_done = _prepare_run_dir(config, run_dir)
    started = time.perf_counter()
    set_up_backend(config)
    print(f"Config:\n{config.to_json()}")
    print(f"Backend: {keras.backend.backend()}, device: {describe_device()}")

    token_data = tokens.prepare_tokens(config)
    vocabulary = list(token_data.vocabulary)
    run_dir.write_config(config)
    run_dir.write_vocabulary(vocabulary)
    print(
        f"Reviews: {len(token_data.train)} train, {len(token_data.validation)} validation, "
        f"{len(token_data.test)} test; vocabulary {len(vocabulary)} tokens"
    )

    # Fixed shapes: the training split's length buckets serve every split, one set of batch
    # lengths. Dynamic: None, each split buckets its own reviews.
    boundaries = batches.split_boundaries(token_data.train, config)
    train_batches = batches.make_batches(token_data.train, config, boundaries, train=True)
    validation_batches = batches.make_batches(token_data.validation, config, boundaries)
    test_batches = batches.make_batches(token_data.test, config, boundaries)
    if boundaries is None:
        print("Batch lengths: each batch's longest review (dynamic shapes)")
    else:
        print(f"Batch lengths (length buckets): {[bound - 1 for bound in boundaries]}")

    # Bucketing makes the count vary a little between epochs (fixed shapes: a bucket's last
    # batch topped up): the schedule needs only its scale, the one the recipe was measured with.
    steps_per_epoch = -(-len(token_data.train) // config.batch_size)
    model = compile_model(build_model(config, len(vocabulary)), config, steps_per_epoch)
    if epochs_done:  # BackupAndRestore brings the weights back: no fresh start to make
        print(f"Resuming {run_dir.path} after epoch {epochs_done} of {config.epochs}")
    else:
        initialize_reader(model, config, token_data)
    clock = TrainingClock()
    all_callbacks = make_callbacks(config, run_dir, history_rows, backup_every_batches)
    all_callbacks += [clock, *callbacks]
    fitted = model.fit(
        train_batches,
        validation_data=validation_batches,
        epochs=config.epochs,
        callbacks=all_callbacks,
        verbose=1,
        shuffle=False,
    )  # the batches come shuffled (and bucketed) from the batches module
    if not np.all(np.isfinite(fitted.history.get("loss", []))):  # TerminateOnNaN stopped it
        raise RuntimeError(
            f"sentiment training stopped on a NaN loss in epoch {fitted.epoch[-1] + 1}: no "
            f"metrics.json written; train again in a new --output-dir, e.g. with a lower "
            f"--learning-rate"
        )

    history = run_dir.read_history()
    if not (run_dir / MODEL).exists():
        raise RuntimeError(
            f"training produced no checkpoint in {run_dir.path}: did every epoch fail?"
        )
    # The best checkpoint, not the last weights: also right for a resumed run.
    best = keras.saving.load_model(run_dir / MODEL)
    compile_model(best, config)
    validation = evaluate(best, validation_batches)
    test = evaluate(best, test_batches)
    train_tokens = batches.count_tokens(token_data.train, config.max_length) * clock.epochs
    metrics = {
        "validation_accuracy": validation["accuracy"],
        "validation_loss": validation["loss"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "epochs": len(history),
        "best_epoch": (
            1 + int(np.argmax([float(row[MONITOR]) for row in history])) if history else 0
        ),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "train_seconds": round(clock.seconds, 1),
        "tokens_per_second": round(train_tokens / clock.seconds, 1) if clock.seconds else 0.0,
        "train_reviews": len(token_data.train),
        "validation_reviews": len(token_data.validation),
        "test_reviews": len(token_data.test),
        "vocabulary_size": len(vocabulary),
        "backend": keras.backend.backend(),
        "device": describe_device(),
        "keras_version": keras.__version__,
    }
    run_dir.write_metrics(metrics)
    print(
        f"Best epoch {metrics['best_epoch']} of {metrics['epochs']}: "
        f"validation accuracy {validation['accuracy']:.4f}, test accuracy {test['accuracy']:.4f} "
        f"(loss {test['loss']:.4f}); {metrics['tokens_per_second']:.0f} tokens/s"
    )
    export_or_explain(config, run_dir.path)
    return metrics


def _interrupted_message(config: Config) -> str:
    """What Ctrl-C leaves, said as it is at that moment."""
    run_dir = RunDir(config.output_dir)
    if (run_dir / "config.json").exists() and not (run_dir / "metrics.json").exists():
        return (
            f"Interrupted. Continue with the same options plus --resume "
            f"(the run directory is {run_dir.path})."
        )
    if (run_dir / "metrics.json").exists():
        return f"Interrupted after training finished; the run in {run_dir.path} is complete."
    return "Interrupted before the run started: nothing was saved; run the same command again."


def main(argv=None) -> int:
    """CLI entry: exit 0 on success, 2 on a user mistake, 130 on Ctrl-C, 1 on a bug."""
    config = config_from_args(
        argv, description="Train the IMDB sentiment LSTM.", prog="python -m lstm_reviews.train"
    )

    def body():
        train_and_evaluate(config)

    return run_command(body, on_interrupt=lambda: _interrupted_message(config))


if __name__ == "__main__":
    sys.exit(main())
