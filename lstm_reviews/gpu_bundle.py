"""The caches a training run needs, made where TensorFlow is, for a GPU machine with JAX alone.

    python -m lstm_reviews.gpu_bundle BUNDLE_DIR [training options]

Where TensorFlow and the reviews are, this makes in BUNDLE_DIR what needs them: the token ids
of every split and of the unlabeled reviews, stored compact (uint16, zip-compressed: a third
of their size, since only the checkout and a few tens of MiB travel to a GPU machine). The
word vectors (NumPy and SciPy's sparse product there) and the language model (JAX) are made by
the GPU run from those ids, the same numbers within float32 rounding; --no-vectors-on-gpu and
--no-language-model-on-gpu make them here instead (the language model takes about 20 minutes
on 2 CPU cores, and both add their size to the bundle). It writes BUNDLE_DIR/train.sh, which
trains under JAX from those files alone: `--data` names the token cache, `--cache-dir` the
bundle, and the training options given here are repeated. Then:

    carry BUNDLE_DIR (and this repository) to the GPU machine
    sh BUNDLE_DIR/train.sh --output-dir runs/gpu      # PYTHON=... to pick the interpreter
    bring runs/gpu back, and where TensorFlow is: python -m lstm_reviews.export runs/gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from lstm_reviews.config import Config, option
from lstm_reviews.data import tokens
from lstm_reviews.data.cache import write_text_atomically
from lstm_reviews.errors import UserError, run_command
from lstm_reviews.options import apply_preset, build_parser
from lstm_reviews.presets import PRESETS
from lstm_reviews.startup import deferred_import

# Imported on first use: --help and option errors answer without Keras or TensorFlow.
embeddings = deferred_import("lstm_reviews.data.embeddings")
pretrain = deferred_import("lstm_reviews.training.pretrain")

# Where each machine keeps its own: the GPU run names its data, caches and outputs itself.
_NOT_CARRIED = ("data", "cache_dir", "output_dir", "export_dir", "resume", "export")


def training_options(config: Config) -> list:
    """The command-line options that give `config`, _NOT_CARRIED left out, and those at the
    value its --preset gives (which the options carry): a value is left out only where the
    parser that reads them back would give it anyway.

    Worked example: Config(units=8, bidirectional=False) -> ["--units", "8", "--no-bidirectional"].
    """
    preset = PRESETS[config.preset]
    argv = []
    for field in dataclasses.fields(Config):
        value = getattr(config, field.name)
        if field.name in _NOT_CARRIED or value == preset.get(field.name, field.default):
            continue
        if isinstance(value, bool):
            argv.append(option(field.name) if value else "--no-" + option(field.name)[2:])
        else:
            argv += [option(field.name), str(value)]
    return argv


def make_bundle(config: Config, language_model: bool = False, vectors: bool = False) -> Path:
    """Makes the caches training on `config` needs TensorFlow or the reviews for, in
    config.cache_dir, compacted; and the word vectors and language model if told. Writes
    train.sh and returns its path.
    """
    bundle = Path(config.cache_dir)
    token_data = tokens.prepare_tokens(config)
    carried = [tokens.token_cache_path(config, token_data.settings)]
    if config.pretrain_embeddings or config.lm_epochs:
        tokens.unlabeled_ids(config, token_data)
        carried.append(tokens.unlabeled_cache_path(config, token_data))
    if config.pretrain_embeddings and vectors:
        embeddings.pretrained_embeddings(config, token_data)
    if config.lm_epochs and language_model:
        # train.sh trains under JAX, where "auto" batch shapes are fixed: the language model's
        # batches (and so its cache) as the GPU run would make them.
        shapes = "fixed" if config.batch_shapes == "auto" else config.batch_shapes
        pretrain.reader_weights(dataclasses.replace(config, batch_shapes=shapes), token_data)
    for path in carried:
        tokens.compact_cache(path)
    token_cache = carried[0]
    command = [
        '"${PYTHON:-python}"',
        "-m",
        "lstm_reviews.train",
        "--data",
        f'"$bundle/{token_cache.name}"',
        "--cache-dir",
        '"$bundle"',
        *map(shlex.quote, training_options(config)),
        '"$@"',
    ]
    script = bundle / "train.sh"
    write_text_atomically(
        script,
        "#!/bin/sh\n"
        "# Made by python -m lstm_reviews.gpu_bundle: trains under JAX from the caches beside\n"
        "# this file, without TensorFlow or the reviews. More options may follow.\n"
        'bundle="$(cd "$(dirname "$0")" && pwd)"\n'
        "export KERAS_BACKEND=jax\n"
        "exec " + " ".join(command) + "\n",
    )
    script.chmod(0o755)
    return script


def main(argv=None) -> int:
    parser = build_parser(
        description="Make the caches of a training run in BUNDLE_DIR, for training under JAX "
        "on a machine without TensorFlow (BUNDLE_DIR/train.sh).",
        prog="python -m lstm_reviews.gpu_bundle",
    )
    parser.add_argument("bundle_dir", metavar="BUNDLE_DIR", help="where the caches go")
    parser.add_argument(
        "--language-model-on-gpu",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="leave the language-model pretraining to the GPU run (its weights would add "
        "tens of MiB to the bundle)",
    )
    parser.add_argument(
        "--vectors-on-gpu",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="leave the word vectors to the GPU run, made from the carried ids",
    )
    apply_preset(parser, argv)
    values = vars(parser.parse_args(argv))
    bundle_dir = values.pop("bundle_dir")
    lm_on_gpu, vectors_on_gpu = values.pop("language_model_on_gpu"), values.pop("vectors_on_gpu")
    try:
        config = Config(**{**values, "cache_dir": bundle_dir})
    except UserError as error:
        parser.error(str(error))

    def body():
        tokens.check_data_path(config)  # before Keras: a wrong path answers at once
        script = make_bundle(config, language_model=not lm_on_gpu, vectors=not vectors_on_gpu)
        size = sum(path.stat().st_size for path in script.parent.iterdir() if path.is_file())
        print(
            f"Bundle ready in {script.parent} ({size / 2**20:.1f} MiB); "
            f"on the GPU machine: sh {script} [options]"
        )

    return run_command(
        body,
        on_interrupt=lambda: (
            "Interrupted: the caches made so far are kept; the same command finishes the bundle."
        ),
        outputs={"BUNDLE_DIR": bundle_dir},
    )


if __name__ == "__main__":
    sys.exit(main())
