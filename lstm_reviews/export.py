"""Exports a run's model as a SavedModel that reads raw review text, in TF Serving's layout.

    python -m lstm_reviews.export RUN_DIR [--out saved_models/imdb_lstm]

RUN_DIR is a training run directory (config.json, vocabulary.txt, model.keras). Each export
is a new numbered version, OUT/<version>/ with version = the highest existing one + 1, as
TensorFlow Serving expects:

    OUT/1/saved_model.pb
    OUT/1/variables/
    OUT/1/assets.extra/export.json     where it came from: run dir and id, config, versions
    OUT/1/assets.extra/tf_serving_warmup_requests   requests TF Serving replays on loading

A version appears whole or not at all: it is written into a hidden staging directory in OUT
(TF Serving ignores names that are not numbers), flushed to disk, then renamed into place.
The next export deletes the staging directories that killed exports left.

Signature "serving_default" (also "serve"):

    inputs:  reviews      <string>[batch]    raw review text, UTF-8 (invalid bytes are replaced)
    outputs: probability  <float32>[batch]   P(positive)
             logit        <float32>[batch]   log-odds of positive; probability = sigmoid(logit)
             tokens       <int32>[batch]     tokens the model read, after truncation

Inside: the training standardizer and vocabulary (text.vectorizer_from_vocabulary), then
the last config.eval_max_length tokens of each review (4,096 by default: every IMDB review
whole, as the test set was read; `--eval-max-length` overrides it), right-padded with 0,
then the model. The SavedModel needs TensorFlow only,
not this package.

Exit codes: 0 exported (the new version's path is printed), 2 bad run directory or
backend, an unfinished run (without --allow-unfinished), one another process trains or
exports, or an OUT that cannot be written (a file in its way, no permission); 1 the disk
failed the export (full, read-only): "error: cannot write to OUT: <why> (--out)".
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import re
import shutil
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

from lstm_reviews.config import Config
from lstm_reviews.crashpoints import crash_point
from lstm_reviews.data.cache import process_alive
from lstm_reviews.errors import UserError, run_command, tensorflow_os_error
from lstm_reviews.rundir import RunDir, check_run_files, load_run
from lstm_reviews.serving.warmup import write_warmup_requests
from lstm_reviews.startup import quiet_start

INPUT_NAME = "reviews"
_VERSION_NAME = re.compile(r"[0-9]+")
_STAGING_PREFIX = ".export-"  # hidden, not a number: TF Serving never picks it up


def require_tensorflow_backend() -> None:
    """The serving graph mixes TF string ops with the model's call: TF backend only."""
    quiet_start()
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise UserError(
            f"exporting a SavedModel needs the TensorFlow backend, but Keras runs on {backend!r}: "
            "run with KERAS_BACKEND=tensorflow"
        )


def build_serving_function(model, vectorizer, max_length: int):
    """The tf.function behind "serving_default": raw strings in, probabilities out.
    max_length: tokens kept per review (its last ones): a server inherits this bound.

    reviews <string>[batch] -> {"probability": <float32>[batch], "logit": <float32>[batch],
    "tokens": <int32>[batch]}.
    """
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
    def serve(reviews):
        # A client may send any bytes; the standardizer's UTF-8 ops would fail on bad ones.
        reviews = tf.strings.unicode_transcode(reviews, "UTF-8", "UTF-8", errors="replace")
        ids = vectorizer(reviews)  # ragged <int64>[batch, (tokens)]
        ids = ids[:, -max_length:]  # the ending of a long review, as in evaluation
        tokens = tf.cast(ids.row_lengths(), tf.int32)
        ids = tf.cast(ids.to_tensor(default_value=0), tf.int32)  # <int32>[batch, time]
        # At least one (padding) step: an RNN over zero steps fails when every review is empty.
        ids = tf.pad(ids, [[0, 0], [0, tf.maximum(1 - tf.shape(ids)[1], 0)]])
        logits = tf.cast(model(ids, training=False), tf.float32)[:, 0]
        return {"probability": tf.sigmoid(logits), "logit": logits, "tokens": tokens}

    return serve


def version_dirs(model_dir: Path) -> list[Path]:
    """The numbered version directories in model_dir (TF Serving's layout), lowest first."""
    versions = [
        path
        for path in Path(model_dir).iterdir()
        if _VERSION_NAME.fullmatch(path.name) and path.is_dir()
    ]
    return sorted(versions, key=lambda path: int(path.name))


def _next_version(out_dir: Path) -> int:
    versions = version_dirs(out_dir)
    return int(versions[-1].name) + 1 if versions else 1


def _fsync_tree(root: Path) -> None:
    """Flushes every file and directory under root, so the rename publishes finished bytes."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the data files are synced already
    finally:
        os.close(fd)


def _remove_abandoned_staging(out_dir: Path) -> None:
    """Deletes the staging directories of exports whose process is gone (killed mid-write);
    those of exports still running stay."""
    for staging in out_dir.glob(f"{_STAGING_PREFIX}*"):
        pid = staging.name[len(_STAGING_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, out_dir: Path) -> Path:
    """Renames staging to the next free version number; retries if another export took it."""
    for _ in range(100):
        target = out_dir / str(_next_version(out_dir))
        try:
            os.rename(staging, target)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue  # a concurrent export published this number first
            raise
        _fsync_dir(out_dir)
        return target
    raise UserError(f"could not find a free version number in {out_dir}")


def write_saved_model(archive, path: Path) -> None:
    """TensorFlow writes the archive's graph and variables as a SavedModel in `path`."""
    import tensorflow as tf

    # TensorFlow logs "Assets written to: <the hidden staging path>" at INFO: a path that
    # is renamed a moment later only misleads; the published version is printed instead.
    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel("WARNING")
    try:
        archive.write_out(str(path), verbose=False)
    finally:
        tf_logger.setLevel(level)


def published_version(model_dir: Path, run_id: str) -> Path | None:
    """The version of model_dir that export.json says the run `run_id` published (the last,
    if several); None if none did."""
    model_dir = Path(model_dir)
    found = None
    if model_dir.is_dir():
        for version in version_dirs(model_dir):
            try:
                info = json.loads((version / "assets.extra" / "export.json").read_text())
            except (OSError, ValueError):
                continue  # not one of ours, or damaged: not this run's
            if isinstance(info, dict) and info.get("run_id") == run_id:
                found = version
    return found


def export_saved_model(
    run_dir, out_dir=None, eval_max_length: int | None = None, *, allow_unfinished: bool = False
) -> Path:
    """Exports run_dir's model to out_dir/<next version>/ and returns that path.

    out_dir: the model directory (default: the run's config.export_dir).
    eval_max_length: tokens the SavedModel keeps per review (default: the run's).
    allow_unfinished: export a run whose training has not finished (state.json's fit_done
    false, e.g. killed mid-training): its model.keras is the best epoch so far. Otherwise
    such a run is refused (UserError), as is one another process trains (RunDir.locked).
    A failed write raises an OSError naming out_dir (TensorFlow's errors too), and publishes
    nothing.
    """
    check_run_files(run_dir)  # before Keras: a wrong path answers at once
    require_tensorflow_backend()
    run = RunDir(run_dir)
    if not run.path.is_dir():
        return _export_saved_model(run_dir, out_dir, None)  # load_run says what is wrong
    with run.locked():
        states = run.read_states()
        state = states[0][1] if states else {}  # no state.json: a run older than states
        if states and not state.get("fit_done") and not allow_unfinished:
            raise UserError(
                f"{run.path} holds an unfinished run (its training stopped after "
                f"{state.get('epochs_done')} epoch(s)); finish it with python -m "
                f"lstm_reviews.train and the run's options plus --resume, or pass "
                f"--allow-unfinished to export its best epoch so far"
            )
        return _export_saved_model(run_dir, out_dir, state.get("run_id"), eval_max_length)


def _export_saved_model(
    run_dir, out_dir, run_id: str | None, eval_max_length: int | None = None
) -> Path:
    import keras
    import tensorflow as tf

    from lstm_reviews.data.text import vectorizer_from_vocabulary

    run = load_run(run_dir)
    config = run.config
    if eval_max_length is not None:  # validated as the run's own would be
        config = dataclasses.replace(config, eval_max_length=eval_max_length)
    vectorizer = vectorizer_from_vocabulary(run.vocabulary)
    model = run.model
    serve = build_serving_function(model, vectorizer, config.eval_max_length)

    serve.get_concrete_function()  # traces it once

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(vectorizer.table)  # the lookup table is a resource the SavedModel must carry
    archive.add_endpoint("serve", serve)  # the first endpoint also becomes "serving_default"

    out_dir = Path(config.export_dir if out_dir is None else out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # mkdir, not tempfile.mkdtemp: that makes the directory 0700, which would hide the
    # published version from a TF Serving that runs as another user.
    _remove_abandoned_staging(out_dir)
    staging = out_dir / f"{_STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        staging.mkdir()
        write_saved_model(archive, staging)
        extra = staging / "assets.extra"  # TF Serving's place for files beside the model
        extra.mkdir()
        (extra / "export.json").write_text(
            json.dumps(
                {
                    "run_dir": str(Path(run_dir).resolve()),
                    # A resumed run finds the version it published before a kill stopped it
                    # from recording it (train._export), instead of publishing it again.
                    "run_id": run_id,
                    "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "tensorflow": tf.__version__,
                    "keras": keras.__version__,
                    "input": INPUT_NAME,
                    "outputs": ["probability", "logit", "tokens"],
                    "config": json.loads(config.to_json()),
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        write_warmup_requests(staging, out_dir.resolve().name, INPUT_NAME)
        _fsync_tree(staging)
        crash_point("export")  # the version written, not yet published
        return _publish(staging, out_dir)
    # The hidden staging directory means nothing to the user: the model directory is named.
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(out_dir)) from error
    except tf.errors.OpError as error:  # TensorFlow writes the graph and variables itself
        raise tensorflow_os_error(error, out_dir) from error
    finally:
        if staging.exists():  # failed before the rename: leave no partial version behind
            shutil.rmtree(staging, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_reviews.export",
        description="Export a training run's model as a SavedModel (raw review strings in), "
        "as a new numbered version in TensorFlow Serving's layout.",
        epilog="exit codes: 0 exported (prints the new version's path), 1 the export failed "
        "while writing, 2 bad arguments, run directory or Keras backend, an unfinished run "
        "(without --allow-unfinished) or one that another process trains or exports",
    )
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="training run directory holding config.json, vocabulary.txt, model.keras",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="model directory that receives the new version "
        f"(default: the run's export_dir, normally {Config().export_dir})",
    )
    parser.add_argument(
        "--eval-max-length",
        metavar="N",
        type=int,
        default=None,
        help="tokens the SavedModel reads per review, its last ones: the bound on what one "
        "request can cost (default: the run's, normally "
        f"{Config().eval_max_length})",
    )
    parser.add_argument(
        "--allow-unfinished",
        action="store_true",
        help="export a run whose training has not finished (killed or interrupted): its best "
        "epoch so far; without it such a run is refused (finish it with train --resume)",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.eval_max_length is not None and args.eval_max_length <= 0:
        parser.error(f"--eval-max-length must be positive, got {args.eval_max_length}")

    def body():
        print(
            export_saved_model(
                args.run_dir, args.out, args.eval_max_length, allow_unfinished=args.allow_unfinished
            )
        )

    def outputs():  # asked only if a write fails; then the run's config.json was read
        if args.out is not None:
            return {"--out": args.out}
        label = "the run's export_dir; --out chooses another"
        return {label: RunDir(args.run_dir).read_config().export_dir}

    return run_command(
        body, on_interrupt=lambda: "Interrupted: no new version was published.", outputs=outputs
    )


if __name__ == "__main__":
    sys.exit(main())
