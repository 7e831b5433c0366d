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
import sys

from lstm_reviews.config import Config
from lstm_reviews.errors import run_command
from lstm_reviews.rundir import RunDir
from lstm_reviews.serving.savedmodel import export_saved_model


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
