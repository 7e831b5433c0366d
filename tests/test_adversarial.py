"""Adversarial training on the embeddings (lstm_reviews.model.adversarial): the perturbation's norm
and direction, the training step against Keras' default and against the losses computed by
hand, save / load and export; the same for virtual adversarial training on unlabeled rows.
tests/test_backends.py reruns this module under JAX, and its training steps under PyTorch."""

from __future__ import annotations

import dataclasses
import os

import helpers
import keras
import numpy as np
import pytest

from lstm_reviews.config import Config
from lstm_reviews.data import batches
from lstm_reviews.model.adversarial import (
    AdversarialClassifier,
    adversarial_perturbation,
    binary_kl,
)
from lstm_reviews.model.classifier import build_model, compile_model

BACKEND = keras.backend.backend()
# Adversarial training is the default: the tests name their epsilon, 0 for the plain model.
TINY = {**helpers.TINY, "batch_size": 4}
VOCAB = TINY["vocab_size"]


def tiny_config(**overrides) -> Config:
    return Config(**{**TINY, **overrides})


def reviews(batch=4, time=9, seed=0) -> np.ndarray:
    """<int32>[batch, time] of ids in [2, VOCAB), row b right-padded after time - 2 b tokens."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB, size=(batch, time)).astype("int32")
    for row in range(batch):
        ids[row, time - 2 * row :] = 0
    return ids


LABELS = np.array([1, 0, 1, 0], "float32")


def numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def review_norms(r) -> np.ndarray:
    """‖r_b‖₂ over each review's (time, E) block: <float>[batch]."""
    return np.sqrt(np.sum(np.square(np.asarray(r, np.float64)), axis=(1, 2)))


@pytest.mark.jax_rerun
@pytest.mark.torch_rerun
def test_runs_on_the_requested_backend():
    """tests/test_backends.py reruns this module with KERAS_BACKEND set; make sure it took."""
    requested = os.environ.get("KERAS_BACKEND")
    if requested:
        assert BACKEND == requested
    assert BACKEND in ("tensorflow", "jax", "torch")


@pytest.mark.jax_rerun
def test_perturbation_has_norm_epsilon_per_review_and_none_at_padding():
    rng = np.random.default_rng(0)
    gradient = rng.normal(size=(4, 6, 3)).astype("float32")
    gradient[1] *= 1e-30  # tiny gradients: their squares would underflow float32
    gradient[3] = 0.0  # no gradient at all: no direction, no perturbation
    mask = np.ones((4, 6), bool)
    mask[0, 4:] = False  # padding, whose (nonzero) gradient must not count
    mask[2, 1:] = False
    r = numpy(adversarial_perturbation(gradient, mask, 0.7))
    assert r.shape == gradient.shape and r.dtype == np.float32
    np.testing.assert_allclose(review_norms(r)[:3], 0.7, rtol=1e-6)
    assert np.all(r[3] == 0.0)
    assert np.all(r[~mask] == 0.0) and np.any(gradient[~mask] != 0.0)
    # The direction is the masked gradient's: r = c · g with c > 0, per review.
    for b in range(3):
        g = gradient[b].astype(np.float64) * mask[b][:, None]
        cosine = np.sum(r[b] * g) / (np.linalg.norm(r[b]) * np.linalg.norm(g))
        assert cosine == pytest.approx(1.0, abs=1e-6)
    # Without a mask every position counts.
    np.testing.assert_allclose(
        review_norms(numpy(adversarial_perturbation(gradient[:1], None, 2.0))), 2.0, rtol=1e-6
    )


@pytest.mark.parametrize("bidirectional", [True, False])
def test_read_of_embed_is_the_model(bidirectional):
    """The two halves the training step calls give the functional model's logits."""
    keras.utils.set_random_seed(1)
    model = build_model(tiny_config(bidirectional=bidirectional, adversarial_epsilon=1.0), VOCAB)
    assert isinstance(model, AdversarialClassifier)
    ids = reviews()
    embedded, mask = model.embed(ids)
    np.testing.assert_array_equal(numpy(mask), ids != 0)
    np.testing.assert_allclose(numpy(model.read(embedded, mask)), numpy(model(ids)), atol=1e-6)


@pytest.mark.slow
def test_adversarial_direction_raises_the_loss_more_than_random_ones():
    keras.utils.set_random_seed(2)
    epsilon = 0.3
    config = tiny_config(adversarial_epsilon=epsilon, dropout=0.0, input_dropout=0.0)
    model = compile_model(build_model(config, VOCAB), config)
    ids = reviews()
    embedded, mask = model.embed(ids)
    r_adv = numpy(model.perturbation(embedded, mask, LABELS))
    np.testing.assert_allclose(review_norms(r_adv), epsilon, rtol=1e-5)
    assert np.all(r_adv[~numpy(mask)] == 0.0)

    def losses(perturbation):  # each review's cross-entropy <float64>[batch]
        logits = numpy(model.read(embedded + perturbation, mask))[:, 0].astype(np.float64)
        return np.logaddexp(0.0, logits) - LABELS * logits

    clean, adversarial = losses(0.0), losses(r_adv)
    assert np.all(adversarial > clean)  # every review's loss goes up
    rng = np.random.default_rng(0)
    for _ in range(20):  # random directions of the same norm per review, padding left out
        noise = rng.normal(size=r_adv.shape) * numpy(mask)[:, :, None]
        noise *= (epsilon / review_norms(noise))[:, None, None]
        assert adversarial.sum() > losses(noise.astype("float32")).sum()


def _same_start_models(config):
    """(plain keras.Model, AdversarialClassifier with epsilon 0, their starting weights): one
    graph, one start."""
    keras.utils.set_random_seed(3)
    plain = build_model(config, VOCAB)
    keras.utils.set_random_seed(3)
    adversarial = build_model(dataclasses.replace(config, adversarial_epsilon=1.0), VOCAB)
    adversarial.epsilon = 0.0
    assert type(plain) is not AdversarialClassifier
    start = plain.get_weights()
    for a, b in zip(start, adversarial.get_weights()):
        np.testing.assert_array_equal(a, b)
    return compile_model(plain, config), compile_model(adversarial, config), start


@pytest.mark.slow
@pytest.mark.jax_rerun
@pytest.mark.torch_rerun
@pytest.mark.parametrize("batch_shapes", ["fixed", "dynamic"])
def test_epsilon_zero_step_is_keras_default_step(batch_shapes):
    """Our train_step without the adversarial term: Keras' own, weights, loss and metrics,
    with dropout on and, for fixed shapes, sample weights with a padding row of weight 0."""
    config = tiny_config(batch_shapes=batch_shapes, dropout=0.3, input_dropout=0.3)
    plain, adversarial, start_weights = _same_start_models(config)
    ids = reviews()
    weights = np.array([1, 1, 1, 0], "float32") if batch_shapes == "fixed" else None
    for _ in range(2):  # the second step starts from moved weights and Adam's moments
        logs_plain = plain.train_on_batch(ids, LABELS, sample_weight=weights, return_dict=True)
        logs_ours = adversarial.train_on_batch(ids, LABELS, sample_weight=weights, return_dict=True)
    assert logs_plain.keys() == logs_ours.keys()
    for key in logs_plain:
        assert logs_ours[key] == pytest.approx(logs_plain[key], rel=1e-6), key
    moved = False
    for a, b, start in zip(plain.get_weights(), adversarial.get_weights(), start_weights):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
        moved |= not np.allclose(a, start)
    assert moved


@pytest.mark.slow
@pytest.mark.jax_rerun
@pytest.mark.torch_rerun
@pytest.mark.parametrize("batch_shapes", ["fixed", "dynamic"])
def test_adversarial_step_trains_on_clean_plus_perturbed_loss(batch_shapes):
    """One step with ε > 0: the loss it reports is L(e) + L(e + r_adv) computed by hand at the
    starting weights, the metrics are the clean ones, and the weights move otherwise than
    with ε = 0. Fixed shapes: the weighted loss, the padding row of weight 0 left out."""
    config = tiny_config(batch_shapes=batch_shapes, dropout=0.0, input_dropout=0.0)
    plain, model, _ = _same_start_models(config)
    model.epsilon = 0.5
    ids = reviews()
    weights = np.array([1, 1, 1, 0], "float32") if batch_shapes == "fixed" else np.ones(4)

    embedded, mask = model.embed(ids)
    r_adv = model.perturbation(embedded, mask, LABELS, sample_weight=weights)

    def mean_loss(perturbation):
        logits = numpy(model.read(embedded + perturbation, mask))[:, 0].astype(np.float64)
        per_review = np.logaddexp(0.0, logits) - LABELS * logits
        return np.sum(per_review * weights) / np.sum(weights), np.mean(
            (logits > 0) == LABELS, where=weights > 0
        )

    (clean, accuracy), (adversarial, _) = mean_loss(0.0), mean_loss(r_adv)
    assert adversarial > clean
    logs = model.train_on_batch(
        ids, LABELS, sample_weight=weights if batch_shapes == "fixed" else None, return_dict=True
    )
    assert logs["loss"] == pytest.approx(clean + adversarial, rel=1e-5)
    assert logs["accuracy"] == pytest.approx(accuracy)
    if batch_shapes == "fixed":  # the weighted clean cross-entropy metric
        assert logs["cross_entropy"] == pytest.approx(clean, rel=1e-5)
    plain.train_on_batch(ids, LABELS, sample_weight=weights if batch_shapes == "fixed" else None)
    differs = [not np.allclose(a, b) for a, b in zip(plain.get_weights(), model.get_weights())]
    assert any(differs)


@pytest.mark.jax_rerun
@pytest.mark.slow
def test_fit_runs_epochs_with_epsilon():
    """Keras' fit loop (compiled train function, several steps, validation) with ε > 0."""
    keras.utils.set_random_seed(4)
    config = tiny_config(adversarial_epsilon=1.0, batch_shapes="fixed")
    model = compile_model(build_model(config, VOCAB), config)
    ids = np.concatenate([reviews(seed=s) for s in range(3)])
    labels = np.tile(LABELS, 3)
    history = model.fit(
        ids,
        labels,
        sample_weight=np.ones(12, "float32"),
        batch_size=4,
        epochs=2,
        verbose=0,
        validation_data=(ids, labels, np.ones(12, "float32")),
    )
    assert np.all(np.isfinite(history.history["loss"]))
    # The training loss holds the adversarial term; validation is the clean model's.
    assert history.history["loss"][0] > history.history["cross_entropy"][0]


@pytest.mark.slow
@pytest.mark.parametrize("compute", ["float16", "bfloat16"])
def test_mixed_precision_step_with_epsilon(compute):
    """float16 goes through the loss-scale optimizer (g of the scaled loss), bfloat16 not."""
    keras.mixed_precision.set_global_policy(f"mixed_{compute}")
    try:
        keras.utils.set_random_seed(6)
        config = tiny_config(adversarial_epsilon=1.0, batch_shapes="fixed")
        model = compile_model(build_model(config, VOCAB), config)
        embedded, mask = model.embed(reviews())
        r_adv = numpy(model.perturbation(embedded, mask, LABELS))
        assert keras.backend.standardize_dtype(r_adv.dtype) == compute
        np.testing.assert_allclose(review_norms(r_adv), 1.0, rtol=1e-2)
        logs = model.train_on_batch(reviews(), LABELS, return_dict=True)
        assert np.isfinite(logs["loss"]) and logs["loss"] > logs["cross_entropy"]
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_keras_file_round_trip_keeps_the_class_and_epsilon(tmp_path):
    keras.utils.set_random_seed(5)
    config = tiny_config(adversarial_epsilon=2.5)
    model = compile_model(build_model(config, VOCAB), config)
    model.train_on_batch(reviews(), LABELS)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded) is AdversarialClassifier and loaded.epsilon == 2.5
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(numpy(loaded(reviews())), numpy(model(reviews())))


@pytest.mark.slow
def test_training_command_with_epsilon_end_to_end(tiny_imdb, tmp_path):
    """python -m lstm_reviews.train --adversarial-epsilon: fit with its callbacks (backup,
    best checkpoint), the reload of the best model and the evaluation, on the tiny tree."""
    import json

    from lstm_reviews import train

    run = tmp_path / "run"
    argv = [
        *("--vocab-size", "50", "--max-length", "40", "--embedding-dim", "8", "--units", "4"),
        *("--batch-size", "8", "--epochs", "2", "--lm-epochs", "0", "--no-export"),
        *("--data", str(tiny_imdb), "--cache-dir", str(tmp_path / "cache")),
        *("--output-dir", str(run), "--adversarial-epsilon", "0.5"),
    ]
    assert train.main(argv) == 0
    assert json.loads((run / "config.json").read_text())["adversarial_epsilon"] == 0.5
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    # The accuracy recorded is the reloaded best model's, recomputed here.
    assert metrics["test_accuracy"] == pytest.approx(helpers.saved_test_accuracy(run), abs=1e-6)
    loaded = keras.saving.load_model(run / "model.keras", compile=False)
    assert type(loaded) is AdversarialClassifier and loaded.epsilon == 0.5


def test_binary_kl_is_the_divergence_of_the_two_verdicts():
    p = np.array([[-2.0], [0.0], [3.0], [0.5]], "float32")
    q = np.array([[1.0], [0.0], [-1.0], [0.5]], "float32")
    p_pos, q_pos = 1 / (1 + np.exp(-p[:, 0])), 1 / (1 + np.exp(-q[:, 0]))
    expected = p_pos * np.log(p_pos / q_pos) + (1 - p_pos) * np.log((1 - p_pos) / (1 - q_pos))
    np.testing.assert_allclose(numpy(binary_kl(p, q)), expected, rtol=1e-5, atol=1e-7)
    assert expected[0] > 0.1 and expected[2] > 0.1  # the cases are not all trivial
    np.testing.assert_allclose(numpy(binary_kl(p, p)), 0.0, atol=1e-7)


def _vat_model(rows=3, adversarial_epsilon=0.0, **overrides):
    keras.utils.set_random_seed(7)
    config = tiny_config(
        vat_epsilon=0.5,
        vat_batch_size=rows,
        adversarial_epsilon=adversarial_epsilon,
        dropout=0.0,
        input_dropout=0.0,
        **overrides,
    )
    return compile_model(build_model(config, VOCAB), config)


@pytest.mark.slow
def test_virtual_perturbation_has_norm_epsilon_and_moves_the_verdict_most():
    model = _vat_model()
    ids = reviews()
    embedded, mask = model.embed(ids)
    clean = model.read(embedded, mask)
    r_vadv = numpy(model.virtual_perturbation(embedded, mask, clean))
    np.testing.assert_allclose(review_norms(r_vadv), 0.5, rtol=1e-5)
    assert np.all(r_vadv[~numpy(mask)] == 0.0)

    def divergence(perturbation):  # each review's KL <float>[batch]
        return numpy(binary_kl(clean, model.read(embedded + perturbation, mask)))

    found = divergence(r_vadv)
    assert np.all(found > 0)
    rng = np.random.default_rng(1)
    for _ in range(20):  # random directions of the same norm per review, padding left out
        noise = rng.normal(size=r_vadv.shape) * numpy(mask)[:, :, None]
        noise *= (0.5 / review_norms(noise))[:, None, None]
        assert found.sum() > divergence(noise.astype("float32")).sum()


@pytest.mark.slow
@pytest.mark.jax_rerun
@pytest.mark.torch_rerun
@pytest.mark.parametrize("batch_shapes", ["fixed", "dynamic"])
def test_vat_step_adds_the_divergence_of_the_unlabeled_rows(batch_shapes):
    """A batch ending with 3 unlabeled rows: the loss is the labeled rows' cross-entropy
    plus the mean KL of the unlabeled ones, each computed by hand from the same random
    start; the metrics and the loss ignore the unlabeled rows' labels and weights."""
    model = _vat_model(batch_shapes=batch_shapes)
    labeled, unlabeled = reviews(), reviews(batch=3, time=9, seed=1)
    weights = np.array([1, 1, 1, 0], "float32") if batch_shapes == "fixed" else None
    start = numpy(model._vat_seed.state)
    embedded, mask = model.embed(unlabeled)
    clean = model.read(embedded, mask)
    r_vadv = model.virtual_perturbation(embedded, mask, clean)
    vat = float(np.mean(numpy(binary_kl(clean, model.read(embedded + r_vadv, mask)))))
    model._vat_seed.state.assign(start)  # the step draws the same start

    logits = numpy(model(labeled))[:, 0].astype(np.float64)
    use = np.ones(4) if weights is None else weights
    per_review = np.logaddexp(0.0, logits) - LABELS * logits
    clean_loss = np.sum(per_review * use) / np.sum(use)
    accuracy = np.mean((logits > 0) == LABELS, where=use > 0)
    assert vat > 1e-4 * clean_loss

    ids, labels, batch_weights = batches.with_unlabeled(labeled, LABELS, weights, unlabeled)
    labels[-3:] = 1.0  # the unlabeled rows' labels are read by nothing
    assert ids.shape == (7, 9)
    logs = model.train_on_batch(ids, labels, sample_weight=batch_weights, return_dict=True)
    assert logs["loss"] == pytest.approx(clean_loss + vat, rel=1e-5)
    assert logs["accuracy"] == pytest.approx(accuracy)
    assert not np.array_equal(numpy(model._vat_seed.state), start)  # the next step draws anew


def test_unlabeled_rows_follow_the_seed_and_the_batch_length():
    rng = np.random.default_rng(0)
    reviews_ = [rng.integers(2, 50, size=n).astype(np.int32) for n in (3, 5, 9, 40, 12)]
    draw = batches.UnlabeledRows(reviews_, max_length=30, seed=1, window=2)
    rows = draw.rows(4, 8, epoch=0, step=5)
    assert rows.shape == (4, 8) and rows.dtype == np.int32
    lengths = sorted(set(np.count_nonzero(rows, axis=1).tolist()))
    assert set(lengths) <= {3, 5}  # the window below 8 tokens: the reviews of 3 and 5
    np.testing.assert_array_equal(rows, draw.rows(4, 8, epoch=0, step=5))  # a resume's draw
    assert not np.array_equal(rows, draw.rows(4, 8, epoch=0, step=6))
    long_rows = draw.rows(2, 30, epoch=1, step=0)  # 12 and 40 (cut to its last 30 tokens)
    for row in long_rows:
        kept = row[row > 0]
        assert len(kept) in (12, 30)
        if len(kept) == 30:
            np.testing.assert_array_equal(kept, reviews_[3][-30:])


@pytest.mark.slow
def test_keras_file_round_trip_keeps_virtual_adversarial_settings(tmp_path):
    model = _vat_model(rows=2, adversarial_epsilon=1.0)
    ids, labels, _ = batches.with_unlabeled(reviews(), LABELS, None, reviews(batch=2, seed=3))
    model.train_on_batch(ids, labels)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert (loaded.epsilon, loaded.vat_epsilon, loaded.vat_rows) == (1.0, 0.5, 2)
    np.testing.assert_array_equal(numpy(loaded(reviews())), numpy(model(reviews())))


@pytest.mark.parametrize("value", ["-0.5", "nan", "inf"])
def test_vat_epsilon_must_be_finite_and_not_negative(value, capsys):
    from lstm_reviews.options import config_from_args

    with pytest.raises(SystemExit) as exit_info:
        config_from_args(["--vat-epsilon", value])
    assert exit_info.value.code == 2 and "--vat-epsilon" in capsys.readouterr().err


def test_epsilon_zero_builds_the_plain_model_and_negative_is_refused():
    config = tiny_config()
    assert config.adversarial_epsilon == 0.0
    model = build_model(config, VOCAB)
    assert type(model).__name__ == "Functional" and not isinstance(model, AdversarialClassifier)
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        AdversarialClassifier(model.inputs, model.outputs, epsilon=-1.0)


if BACKEND == "tensorflow":  # SavedModel export is TensorFlow's; defined, not skipped, there

    @pytest.mark.slow
    def test_export_of_an_adversarial_run_matches_keras(tmp_path):
        import tensorflow as tf
        from helpers import keras_probabilities, write_run_dir

        from lstm_reviews import export

        write_run_dir(tmp_path / "run", adversarial_epsilon=1.5)
        assert type(keras.saving.load_model(tmp_path / "run" / "model.keras")).__name__ == (
            "AdversarialClassifier"
        )
        version = export.export_saved_model(tmp_path / "run", tmp_path / "saved")
        texts = ["A wonderful film, I loved it.", "Awful and boring."]
        signature = tf.saved_model.load(str(version)).signatures["serving_default"]
        probability = signature(reviews=tf.constant(texts))["probability"].numpy()
        expected = keras_probabilities(tmp_path / "run", texts)
        np.testing.assert_allclose(probability, expected, atol=1e-5)
