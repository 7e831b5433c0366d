"""The GPU recipe on this CPU: caches made here, training under JAX without TensorFlow or the
reviews from those caches alone, the run exported back here."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import keras_probabilities, tiny_flags

from lstm_reviews import gpu_bundle
from lstm_reviews.config import Config
from lstm_reviews.data import embeddings, tokens
from lstm_reviews.data.tokens import prepare_tokens
from lstm_reviews.errors import UserError
from lstm_reviews.options import config_from_args

REPOSITORY = Path(__file__).resolve().parent.parent
# The plain model; the gpu preset's adversarial steps under JAX: tests/test_recipe.py.
TINY = [
    "--adversarial-epsilon",
    "0",
    *tiny_flags(),
    "--eval-batch-size",
    "16",
    "--lm-epochs",
    "1",
    "--epochs",
    "1",
]


def test_training_options_worked_example_and_round_trip():
    config = Config(units=8, bidirectional=False)
    assert gpu_bundle.training_options(config) == ["--units", "8", "--no-bidirectional"]
    config = config_from_args(TINY + ["--mixed-precision", "bfloat16", "--learning-rate", "3e-4"])
    again = config_from_args(gpu_bundle.training_options(config))
    assert again == config  # data, caches and outputs are at their defaults in both
    carried = config_from_args(["--data", "x", "--output-dir", "y", "--no-export"])
    assert gpu_bundle.training_options(carried) == []  # each machine names its own


def carried(config: Config) -> dict:
    """The fields train.sh carries (each machine names its data, caches and outputs)."""
    values = dataclasses.asdict(config)
    return {key: value for key, value in values.items() if key not in gpu_bundle._NOT_CARRIED}


@pytest.mark.parametrize(
    "argv",
    [
        # Values of the cpu preset (the fields' defaults) given against the gpu preset's.
        ["--preset", "gpu", "--units", "128", "--vocab-size", "30000"],
        ["--preset", "gpu", "--mixed-precision", "off", "--epochs", "3", "--no-lr-decay"],
        ["--preset", "cpu", "--units", "512"],
    ],
)
def test_training_options_round_trip_against_the_preset(argv):
    config = config_from_args(argv)
    assert config_from_args(gpu_bundle.training_options(config)) == config


@pytest.mark.slow
def test_train_sh_parsed_back_gives_the_bundle_config(tiny_imdb, tmp_path):
    bundle = tmp_path / "bundle"
    # No word vectors or language model: only the token cache is made.
    argv = ["--preset", "gpu", "--units", "128", "--vocab-size", "30000", "--lm-epochs", "0"]
    argv += ["--no-pretrain-embeddings", "--data", str(tiny_imdb)]
    assert gpu_bundle.main([*argv, str(bundle)]) == 0
    command = shlex.split((bundle / "train.sh").read_text().splitlines()[-1])
    options = command[command.index("lstm_reviews.train") + 1 :]
    assert options[:4] == ["--data", options[1], "--cache-dir", "$bundle"] and options[-1] == "$@"
    parsed = config_from_args(options[4:-1])
    assert (parsed.units, parsed.vocab_size) == (128, 30000)
    assert carried(parsed) == carried(config_from_args(argv))


def test_a_token_cache_as_data_must_match_the_settings(tiny_imdb, tmp_path):
    config = config_from_args(TINY + ["--data", str(tiny_imdb), "--cache-dir", str(tmp_path)])
    made = prepare_tokens(config)
    (path,) = tmp_path.glob("tokens-*.npz")
    given = prepare_tokens(dataclasses.replace(config, data=str(path)))
    assert given.settings == made.settings and given.vocabulary == made.vocabulary
    with pytest.raises(UserError, match=r"other settings: vocab_size 50 \(here 60\)"):
        prepare_tokens(dataclasses.replace(config, data=str(path), vocab_size=60))


@pytest.mark.slow
def test_trained_under_jax_from_the_bundle_alone_then_exported_here(tiny_imdb, tmp_path):
    pytest.importorskip("jax", reason="the JAX backend is not installed")
    bundle = tmp_path / "bundle"
    assert gpu_bundle.main([*TINY, "--data", str(tiny_imdb), str(bundle)]) == 0
    # The ids travel; the word vectors and the language model are made on the GPU machine.
    assert sorted(path.name.split("-")[0] for path in bundle.iterdir()) == [
        "tokens",
        "train.sh",
        "unlabeled",
    ]
    here = dataclasses.replace(
        config_from_args(TINY + ["--data", str(tiny_imdb)]), cache_dir=str(tmp_path / "here")
    )
    token_data = prepare_tokens(here)
    vectors_here = embeddings.word_vectors(
        list(token_data.train.ids) + tokens.unlabeled_ids(here, token_data),
        len(token_data.vocabulary),
        here.embedding_dim,
        here.vectors_window,
        seed=here.seed,
    )
    shutil.rmtree(tiny_imdb)  # the GPU machine has no reviews...
    no_tensorflow = tmp_path / "no_tensorflow" / "tensorflow"  # ...and no TensorFlow
    no_tensorflow.mkdir(parents=True)
    (no_tensorflow / "__init__.py").write_text('raise ImportError("no TensorFlow here")\n')
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(no_tensorflow.parent), str(REPOSITORY)]),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    run = tmp_path / "run"
    result = subprocess.run(
        ["sh", str(bundle / "train.sh"), "--output-dir", str(run)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "TensorBoard logs skipped" in result.stdout  # TensorFlow really was missing
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["test_reviews"] == 40
    assert not list(bundle.glob("*-backup"))  # nothing made again: the caches were used
    assert len(list(bundle.glob("reader-*"))) == 1
    # Vectors made there (SciPy's sparse product) equal those made here (TensorFlow's) within
    # float32 rounding; compared as cosine similarities, which a sign flip leaves alone.
    (vectors_path,) = bundle.glob("vectors-*.npy")
    vectors_there = np.load(vectors_path)
    np.testing.assert_allclose(
        vectors_there @ vectors_there.T, vectors_here @ vectors_here.T, atol=1e-4
    )

    from lstm_reviews.export import export_saved_model

    exported = export_saved_model(run, tmp_path / "served")
    import tensorflow as tf

    serve = tf.saved_model.load(str(exported)).signatures["serving_default"]
    texts = ["An amazing, wonderful film.", "Awful and boring."]
    served = serve(reviews=tf.constant(texts))["probability"].numpy()
    np.testing.assert_allclose(served, keras_probabilities(run, texts), rtol=1e-5, atol=1e-6)


def test_the_bundle_carries_compact_ids_that_load_as_the_originals(tiny_imdb, tmp_path):
    config = config_from_args(TINY + ["--data", str(tiny_imdb), "--cache-dir", str(tmp_path)])
    made = prepare_tokens(config)
    path = tokens.token_cache_path(config, made.settings)
    unlabeled = tokens.unlabeled_ids(config, made)
    unlabeled_path = tokens.unlabeled_cache_path(config, made)
    sizes = [path.stat().st_size, unlabeled_path.stat().st_size]
    tokens.compact_cache(path)
    tokens.compact_cache(unlabeled_path)
    assert path.stat().st_size < sizes[0] / 2 and unlabeled_path.stat().st_size < sizes[1] / 2
    with np.load(path) as npz:
        assert npz["train_ids"].dtype == np.uint16
    loaded = tokens.load_token_cache(path)
    for split in ("train", "validation", "test"):
        for mine, theirs in zip(getattr(loaded, split).ids, getattr(made, split).ids):
            assert mine.dtype == np.int32 and np.array_equal(mine, theirs)
    again = tokens.unlabeled_ids(config, made)
    assert all(np.array_equal(a, b) and a.dtype == np.int32 for a, b in zip(again, unlabeled))
    assert tokens.compact_ids(np.array([0, 70_000])).dtype != np.uint16  # too big: kept


@pytest.mark.slow
def test_a_bundle_dir_that_is_a_file_is_one_line_before_the_work(tiny_imdb, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    bundle.write_text("a file")
    assert gpu_bundle.main([*TINY, "--data", str(tiny_imdb), str(bundle)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write to {bundle}: it is a file, not a folder (BUNDLE_DIR)\n"
    )
    assert bundle.read_text() == "a file"
