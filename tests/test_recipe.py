"""The accuracy recipe's options on the tiny fixture: a resumed run of each recipe, whole
reviews at evaluation (--eval-max-length), the vocabulary's reviews, the presets."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
from helpers import saved_test_accuracy, tiny_argv

from lstm_reviews import train
from lstm_reviews.config import Config
from lstm_reviews.data import batches
from lstm_reviews.data.tokens import TokenSplit
from lstm_reviews.options import config_from_args
from lstm_reviews.rundir import RunDir

# Under JAX (tests/test_backends.py) each batch shape of each new model is an XLA compilation:
# one length bucket instead of the tiny tree's many takes the resumed run and the gpu preset
# from 346 s to 51 s on 2 cores (a training sharing them). Bucketed training under JAX:
# tests/test_train.py and tests/test_gpu_bundle.py.
ONE_BUCKET_UNDER_JAX = ("--no-bucket-by-length",) if keras.backend.backend() == "jax" else ()


# The default recipe (adversarial training), and virtual adversarial training on top of it
# (the unlabeled rows each step draws, its random start).
@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        # Under JAX too (tests/test_backends.py).
        pytest.param(("--lm-epochs", "0"), marks=pytest.mark.jax_rerun),
        ("--lm-epochs", "0", "--vat-epsilon", "0.5", "--vat-batch-size", "3"),
    ],
    ids=["default", "vat"],
)
def test_a_resumed_run_equals_the_uninterrupted_one(tiny_imdb, tmp_path, extra):
    from helpers import Interrupt, InterruptAfter

    extra = (*extra, *ONE_BUCKET_UNDER_JAX)
    argv = tiny_argv(tiny_imdb, tmp_path, "--epochs", "2", *extra, run="whole", plain=False)
    whole = train.train_and_evaluate(config_from_args(argv))
    argv = tiny_argv(tiny_imdb, tmp_path, "--epochs", "2", *extra, run="resumed", plain=False)
    with pytest.raises(Interrupt):
        train.train_and_evaluate(
            config_from_args(argv), callbacks=[InterruptAfter(1, 3)], backup_every_batches=2
        )
    resumed = train.train_and_evaluate(config_from_args(argv + ["--resume"]))
    for key in ("validation_accuracy", "validation_loss", "test_accuracy", "test_loss"):
        assert resumed[key] == whole[key], key
    history = [
        json.loads((tmp_path / run / "state.json").read_text())["history"]
        for run in ("whole", "resumed")
    ]
    assert history[0] == history[1]


def _split(lengths):
    rng = np.random.default_rng(1)
    ids = [rng.integers(2, 50, size=n).astype(np.int32) for n in lengths]
    return TokenSplit(ids, np.arange(len(lengths)) % 2)


@pytest.mark.jax_rerun
@pytest.mark.parametrize("shapes", ["fixed", "dynamic"])
@pytest.mark.parametrize("eval_max_length", [4096, 30])
def test_evaluation_reads_whole_reviews_up_to_the_bound(shapes, eval_max_length, monkeypatch):
    lengths = [5, 12, 20, 33, 70, 150, 9, 41]
    split = _split(lengths)
    config = Config(
        max_length=40, batch_size=4, batch_shapes=shapes, eval_max_length=eval_max_length
    )
    boundaries = batches.split_boundaries(split, config)
    for tf_data in (True, False):
        if not tf_data:
            monkeypatch.setattr(batches, "uses_tf_data", lambda: False)
        elif not batches.uses_tf_data():
            continue
        seen = []
        for ids, *_ in batches.make_batches(split, config, boundaries):
            for row in np.asarray(ids):
                if np.any(row):
                    seen.append(tuple(row[row != 0]))
        keep = min(eval_max_length, max(lengths))
        expected = {tuple(ids[-keep:]) for ids in split.ids}
        assert set(seen) == expected and len(seen) == len(lengths)
        monkeypatch.undo()


def test_evaluation_boundaries_double_until_the_longest_review_fits():
    assert batches.evaluation_boundaries([8, 41], 100) == [8, 41, 81, 161]
    assert batches.evaluation_boundaries([8, 41], 40) == [8, 41]


def test_eval_max_length_must_be_positive():
    with pytest.raises(Exception, match="--eval-max-length must be positive"):
        Config(eval_max_length=0)


def test_the_default_bound_keeps_every_imdb_review_whole_and_old_configs_get_it():
    # IMDB's longest review has 2,250 tokens (docs/results.md); 0.1% are over 1,011.
    assert Config().eval_max_length == 4096
    # config.json of runs made when "null" meant "unbounded" now reads with the bound.
    assert Config.from_dict({"eval_max_length": None}).eval_max_length == 4096


@pytest.mark.slow
def test_whole_reviews_are_served_by_default(tmp_path):
    pytest.importorskip("tensorflow")
    import tensorflow as tf
    from helpers import keras_probabilities, write_run_dir

    from lstm_reviews.export import export_saved_model

    long_review = "wonderful brilliant loved amazing " * 6 + "awful worst boring dull " * 3
    probabilities = []
    for eval_max_length, tokens in ((4096, 36), (12, 12)):
        run_dir = tmp_path / f"run-{eval_max_length}"
        write_run_dir(run_dir, eval_max_length=eval_max_length)
        version = export_saved_model(run_dir, tmp_path / f"export-{eval_max_length}")
        served = tf.saved_model.load(str(version)).signatures["serving_default"]
        outputs = served(tf.constant([long_review]))
        assert int(outputs["tokens"][0]) == tokens
        np.testing.assert_allclose(
            outputs["probability"].numpy(), keras_probabilities(run_dir, [long_review]), atol=1e-5
        )
        probabilities.append(float(outputs["probability"][0]))
    assert abs(probabilities[0] - probabilities[1]) > 1e-3  # the opening counts when whole


def test_the_vocabulary_can_count_the_unlabeled_reviews_too(tiny_imdb, tmp_path):
    from lstm_reviews.data.tokens import prepare_tokens

    for index in range(3):  # a word only the unlabeled reviews use, many times
        (tiny_imdb / "train" / "unsup" / f"{100 + index}_0.txt").write_text("zyzzyva " * 50)
    made = {}
    for source in ("train", "train+unlabeled"):
        config = Config(
            data=str(tiny_imdb),
            cache_dir=str(tmp_path / "cache"),
            vocab_size=50,
            vocabulary_from=source,
        )
        made[source] = prepare_tokens(config)
    assert "zyzzyva" not in made["train"].vocabulary
    assert "zyzzyva" in made["train+unlabeled"].vocabulary
    # Its own cache file, and the labeled splits are the same reviews.
    assert made["train"].settings != made["train+unlabeled"].settings
    assert list(made["train"].test.labels) == list(made["train+unlabeled"].test.labels)
    # The default leaves the cache key as it was before the option existed.
    assert "vocabulary_from" not in made["train"].settings


def test_every_preset_is_a_valid_config_and_explicit_options_win():
    from lstm_reviews.presets import PRESETS

    for name, values in PRESETS.items():
        config = Config.from_preset(name)
        assert config.preset == name
        for field, value in values.items():
            assert getattr(config, field) == value, (name, field)
    gpu = config_from_args(["--preset", "gpu", "--units", "8"])
    assert gpu.units == 8 and gpu.embedding_dim == PRESETS["gpu"]["embedding_dim"]
    assert gpu.preset == "gpu" and gpu.mixed_precision == "bfloat16"
    assert config_from_args([]) == Config()  # the cpu preset: the fields' own defaults


def test_an_unknown_preset_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(["--preset", "tpu"])
    assert exit_info.value.code == 2
    assert "--preset" in capsys.readouterr().err


@pytest.mark.jax_rerun
@pytest.mark.slow
def test_the_gpu_preset_trains_end_to_end_scaled_down(tiny_imdb, tmp_path):
    """The gpu preset's recipe (vocabulary with the unlabeled reviews, language model,
    adversarial training, bfloat16) on the tiny fixture with a tiny reader."""
    argv = tiny_argv(tiny_imdb, tmp_path, "--preset", "gpu", "--vocab-size", "60", plain=False)
    argv += ["--units", "4", "--embedding-dim", "8", "--lm-epochs", "1", "--epochs", "2"]
    argv += ONE_BUCKET_UNDER_JAX
    assert train.main(argv) == 0
    run_dir = tmp_path / "run"
    config = RunDir(run_dir).read_config()
    assert (config.preset, config.units, config.adversarial_epsilon) == ("gpu", 4, 0.5)
    assert config.mixed_precision == "bfloat16" and config.vocabulary_from == "train+unlabeled"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert metrics["test_accuracy"] == pytest.approx(saved_test_accuracy(run_dir), abs=1e-6)


@pytest.mark.jax_rerun
def test_runs_on_the_requested_backend():
    """tests/test_backends.py reruns part of this module with KERAS_BACKEND set."""
    requested = os.environ.get("KERAS_BACKEND")
    if requested:
        assert keras.backend.backend() == requested
    assert keras.backend.backend() in ("tensorflow", "jax")
