"""The accuracy recipe's options: weight averaging (--ema-momentum) and whole reviews at
evaluation (--eval-max-length), on the tiny fixture."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
from helpers import saved_test_accuracy, tiny_argv

from lstm_reviews import train
from lstm_reviews.config import Config, config_from_args
from lstm_reviews.data import batches
from lstm_reviews.data.tokens import TokenSplit
from lstm_reviews.errors import UserError
from lstm_reviews.model.classifier import build_model, compile_model
from lstm_reviews.rundir import RunDir

EMA = ("--ema-momentum", "0.9", "--lm-epochs", "0")
# Under JAX (tests/test_backends.py) each batch shape of each new model is an XLA compilation:
# one length bucket instead of the tiny tree's many takes the resumed run and the gpu preset
# from 346 s to 51 s on 2 cores (a training sharing them). Bucketed training under JAX:
# tests/test_train.py and tests/test_gpu_bundle.py.
ONE_BUCKET_UNDER_JAX = ("--no-bucket-by-length",) if keras.backend.backend() == "jax" else ()


def _tiny_model(config: Config):
    keras.utils.set_random_seed(config.seed)
    model = compile_model(build_model(config, 50), config, steps_per_epoch=4)
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 50, size=(8, 12)).astype(np.int32)
    labels = rng.integers(0, 2, size=8).astype(np.float32)
    return model, ids, labels


@pytest.mark.slow
@pytest.mark.jax_rerun
def test_averaged_weights_are_the_moving_average_and_give_the_trained_ones_back():
    config = Config(vocab_size=50, embedding_dim=8, units=4, batch_size=8, ema_momentum=0.5)
    model, ids, labels = _tiny_model(config)
    history = []
    for _ in range(3):
        model.train_on_batch(ids, labels)
        history.append([variable.numpy() for variable in model.trainable_variables])
    trained = history[-1]
    # Keras' average: the first step's weights, then average = 0.5 * average + 0.5 * weights.
    expected = [0.25 * a + 0.25 * b + 0.5 * c for a, b, c in zip(*history)]
    with train.averaged_weights(model):
        inside = [variable.numpy() for variable in model.trainable_variables]
    for got, want in zip(inside, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert max(np.max(np.abs(a - b)) for a, b in zip(inside, trained)) > 1e-4
    for variable, value in zip(model.trainable_variables, trained):
        np.testing.assert_array_equal(variable.numpy(), value)  # bit for bit


@pytest.mark.slow
def test_without_ema_the_weights_are_left_alone():
    config = Config(vocab_size=50, embedding_dim=8, units=4, batch_size=8)
    model, ids, labels = _tiny_model(config)
    model.train_on_batch(ids, labels)
    before = [variable.numpy() for variable in model.trainable_variables]
    with train.averaged_weights(model):
        for variable, value in zip(model.trainable_variables, before):
            np.testing.assert_array_equal(variable.numpy(), value)


def _restored(run_dir, config):
    """The model and optimizer of a run as its last backup holds them."""
    model = compile_model(build_model(config, len(RunDir(run_dir).read_vocabulary())), config, 1)
    state = train.RunState.from_dict(json.loads((run_dir / "state.json").read_text()))
    train._restore_backup(model, RunDir(run_dir), state)
    return model


def _first_step_changes(config: Config) -> dict:
    """{top-level layer name: [change of each of its weights]} after one training step."""
    model, ids, labels = _tiny_model(config)
    before = {variable.path: variable.numpy() for variable in model.trainable_variables}
    model.train_on_batch(ids, labels)
    changes: dict = {}
    for variable in model.trainable_variables:
        layer = variable.path.split("/")[0]
        changes.setdefault(layer, []).append(variable.numpy() - before[variable.path])
    return changes


@pytest.mark.slow
@pytest.mark.jax_rerun
def test_layer_lr_decay_scales_each_layers_steps_down_the_stack():
    # Random weights, no dropout: both runs see the same gradients in their first step, and
    # Adam's step is proportional to the rate, so each layer's change is its factor times
    # plain Adam's: the head 1, the LSTM 0.5, the embedding 0.25.
    plain = dict(vocab_size=50, embedding_dim=8, units=4, batch_size=8, dropout=0.0)
    plain.update(input_dropout=0.0, adversarial_epsilon=0.0, lr_decay=False)
    reference = _first_step_changes(Config(**plain))
    decayed = _first_step_changes(Config(**plain, layer_lr_decay=0.5))
    assert set(decayed) == {"embedding", "bidirectional_lstm", "logit"}
    for layer, factor in {"logit": 1.0, "bidirectional_lstm": 0.5, "embedding": 0.25}.items():
        for got, full in zip(decayed[layer], reference[layer]):
            assert np.abs(full).max() > 1e-5  # the layer did move
            np.testing.assert_allclose(got, factor * full, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_a_model_trained_with_layer_lr_decay_saves_and_loads(tmp_path):
    config = Config(vocab_size=50, embedding_dim=8, units=4, batch_size=8, layer_lr_decay=0.4)
    model, ids, labels = _tiny_model(config)
    model.train_on_batch(ids, labels)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.optimizer.layer_factors == {"bidirectional_lstm": 0.4, "embedding": 0.4**2}
    np.testing.assert_allclose(loaded.predict(ids, verbose=0), model.predict(ids, verbose=0))


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.5, float("nan")])
def test_layer_lr_decay_must_be_in_0_1(decay):
    with pytest.raises(UserError, match="--layer-lr-decay must be in"):
        Config(layer_lr_decay=decay)


@pytest.mark.slow
def test_the_kept_and_exported_model_holds_the_averaged_weights(tiny_imdb, tmp_path):
    pytest.importorskip("tensorflow")
    from lstm_reviews.export import export_saved_model

    argv = tiny_argv(tiny_imdb, tmp_path, "--epochs", "1", *EMA)
    train.train_and_evaluate(config_from_args(argv))
    run_dir = tmp_path / "run"
    config = RunDir(run_dir).read_config()
    trained = _restored(run_dir, config)  # epoch 1's end: what training would go on from
    kept = keras.saving.load_model(run_dir / "model.keras")
    averaged = _restored(run_dir, config)
    with train.averaged_weights(averaged):
        for got, want in zip(kept.trainable_variables, averaged.trainable_variables):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    # The trained weights differ, so the comparison above could fail.
    gaps = [
        np.max(np.abs(a.numpy() - b.numpy()))
        for a, b in zip(kept.trainable_variables, trained.trainable_variables)
    ]
    assert max(gaps) > 1e-4

    import tensorflow as tf

    version = export_saved_model(run_dir, tmp_path / "exported")
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    texts = ["an amazing wonderful film", "a dull boring awful film, worst of the year"]
    logits = served(tf.constant(texts))["logit"].numpy()
    run = RunDir(run_dir)
    vectorizer_ids = [np.asarray(ids) for ids in _encode(run, texts)]
    for model, should_match in ((kept, True), (trained, False)):
        expected = [float(model(ids[None], training=False)[0, 0]) for ids in vectorizer_ids]
        close = np.allclose(logits, expected, atol=1e-5)
        assert close == should_match


def _encode(run: RunDir, texts):
    from lstm_reviews.data.text import encode, vectorizer_from_vocabulary

    return encode(vectorizer_from_vocabulary(run.read_vocabulary()), texts)


# The default recipe (adversarial training), weight averaging without it, and virtual
# adversarial training on top of it (the unlabeled rows each step draws, its random start).
@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        # Under JAX too (tests/test_backends.py); not the averaging run: its JAX side, the swap
        # of the weights, is test_averaged_weights_are_..., and its compilation costs minutes.
        pytest.param(("--lm-epochs", "0"), marks=pytest.mark.jax_rerun),
        (*EMA, "--adversarial-epsilon", "0"),
        ("--lm-epochs", "0", "--vat-epsilon", "0.5", "--vat-batch-size", "3"),
    ],
    ids=["default", "ema", "vat"],
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
    from lstm_reviews.config import PRESETS

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
