"""Building and writing the SavedModel that reads raw review text (`python -m
lstm_reviews.export` is its command line; the layout and signature are described there).

    serving function   raw strings -> standardize, look up, last max_length tokens, pad,
                       the model -> probability, logit, tokens
    export_saved_model a run directory -> a new published version (serving/versions.py)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from lstm_reviews.backend import runs_on_tensorflow
from lstm_reviews.crashpoints import crash_point
from lstm_reviews.errors import UserError, tensorflow_os_error
from lstm_reviews.rundir import RunDir, check_run_files, load_run
from lstm_reviews.serving import versions
from lstm_reviews.serving.warmup import write_warmup_requests
from lstm_reviews.startup import quiet_start

INPUT_NAME = "reviews"


def require_tensorflow_backend() -> None:
    """The serving graph mixes TF string ops with the model's call: TF backend only."""
    quiet_start()
    if not runs_on_tensorflow():
        import keras

        raise UserError(
            "exporting a SavedModel needs the TensorFlow backend, but Keras runs on "
            f"{keras.backend.backend()!r}: "
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
    run = load_run(run_dir)
    config = run.config
    if eval_max_length is not None:  # validated as the run's own would be
        config = dataclasses.replace(config, eval_max_length=eval_max_length)
    archive = _serving_archive(run, config)
    out_dir = Path(config.export_dir if out_dir is None else out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _write_version(archive, out_dir, lambda: _export_info(run_dir, run_id, config))


def _serving_archive(run, config):
    """The Keras ExportArchive of the run's model behind the "serve" endpoint."""
    import keras

    from lstm_reviews.data.text import vectorizer_from_vocabulary

    vectorizer = vectorizer_from_vocabulary(run.vocabulary)
    model = run.model
    serve = build_serving_function(model, vectorizer, config.eval_max_length)

    serve.get_concrete_function()  # traces it once

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(vectorizer.table)  # the lookup table is a resource the SavedModel must carry
    archive.add_endpoint("serve", serve)  # the first endpoint also becomes "serving_default"
    return archive


def _export_info(run_dir, run_id: str | None, config) -> dict:
    """assets.extra/export.json: where the version came from."""
    import keras
    import tensorflow as tf

    return {
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
    }


def _write_version(archive, out_dir: Path, describe) -> Path:
    """Writes the archive and export.json (describe(): its contents, asked once the archive
    is written) into a staging directory of out_dir, flushed, then published as the next
    version (versions.publish); nothing is published on a failure."""
    import tensorflow as tf

    # mkdir, not tempfile.mkdtemp: that makes the directory 0700, which would hide the
    # published version from a TF Serving that runs as another user.
    versions.remove_abandoned_staging(out_dir)
    staging = out_dir / f"{versions.STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        staging.mkdir()
        versions.write_saved_model(archive, staging)
        extra = staging / "assets.extra"  # TF Serving's place for files beside the model
        extra.mkdir()
        info = json.dumps(describe(), indent=2)
        (extra / "export.json").write_text(info + "\n", encoding="utf-8")
        write_warmup_requests(staging, out_dir.resolve().name, INPUT_NAME)
        versions.fsync_tree(staging)
        crash_point("export")  # the version written, not yet published
        return versions.publish(staging, out_dir)
    # The hidden staging directory means nothing to the user: the model directory is named.
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(out_dir)) from error
    except tf.errors.OpError as error:  # TensorFlow writes the graph and variables itself
        raise tensorflow_os_error(error, out_dir) from error
    finally:
        if staging.exists():  # failed before the rename: leave no partial version behind
            shutil.rmtree(staging, ignore_errors=True)
