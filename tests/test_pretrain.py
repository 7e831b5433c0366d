"""Language-model pretraining: pieces, targets, the sampled loss, learning, caching, transfer."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

from lstm_reviews.config import Config
from lstm_reviews.data import imdb
from lstm_reviews.data.text import pad
from lstm_reviews.data.tokens import prepare_tokens
from lstm_reviews.model.classifier import build_model
from lstm_reviews.training import lm_batches, lm_model, pretrain


def small_config(tmp_path, **overrides) -> Config:
    values = dict(
        cache_dir=str(tmp_path / "cache"),
        vocab_size=60,
        embedding_dim=8,
        units=6,
        lm_epochs=1,
        input_dropout=0.0,
        seed=3,
    )
    values.update(overrides)
    return Config(**values)


@pytest.mark.slow
def test_chunk_reviews_worked_example():
    pieces = lm_batches.chunk_reviews([np.array([5, 6, 7, 8]), np.array([9]), np.array([], int)], 3)
    np.testing.assert_array_equal(pieces, [[5, 6, 7], [8, 0, 0], [9, 0, 0]])
    assert pieces.dtype == np.int32
    assert lm_batches.chunk_reviews([], 4).shape == (0, 4)
    with pytest.raises(ValueError, match="got 0"):
        lm_batches.chunk_reviews([np.array([5])], 0)


@pytest.mark.slow
def test_shift_targets_worked_example():
    following, preceding = lm_batches.shift_targets(np.array([[5, 6, 7], [8, 0, 0]]))
    np.testing.assert_array_equal(following, [[6, 7, 0], [0, 0, 0]])
    np.testing.assert_array_equal(preceding, [[0, 5, 6], [0, 8, 0]])


@pytest.mark.slow
def test_sampling_probabilities_follow_count_to_the_three_quarters():
    pieces = np.array([[2, 2, 2, 2, 2, 2, 2, 2, 3, 1], [3, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    probabilities = lm_batches.sampling_probabilities(pieces, vocab_size=5, power=0.75)
    expected = np.array([0.0, 0.0, 8**0.75, 2**0.75, 0.0])
    np.testing.assert_allclose(probabilities, expected / expected.sum())
    with pytest.raises(ValueError, match="no words"):
        lm_batches.sampling_probabilities(np.array([[0, 1, 0]]), vocab_size=5, power=0.75)


@pytest.mark.slow
def test_sampled_word_loss_matches_numpy():
    rng = np.random.default_rng(0)
    batch, time, size, wrong = 3, 5, 4, 6
    queries = rng.normal(size=(batch, time, size)).astype("float32")
    targets = rng.normal(size=(batch, time, size)).astype("float32")
    negatives = rng.normal(size=(batch, wrong, size)).astype("float32")
    target_ids = rng.integers(2, 9, size=(batch, time)).astype("int32")
    target_ids[0, 3:] = 0  # no word to predict there
    target_ids[2, :] = 0  # a piece with nothing to predict
    negative_ids = rng.integers(2, 9, size=(batch, wrong)).astype("int32")
    negative_ids[1, 2] = target_ids[1, 0]  # an accidental hit: left out of that step

    losses = keras.ops.convert_to_numpy(
        lm_model.SampledWordLoss()(queries, targets, target_ids, negatives, negative_ids)
    )

    expected = np.zeros(batch)
    for b in range(batch):
        steps = []
        for t in range(time):
            if target_ids[b, t] < 2:
                continue
            true = queries[b, t] @ targets[b, t]
            keep = negative_ids[b] != target_ids[b, t]
            scores = np.concatenate([[true], (negatives[b] @ queries[b, t])[keep]])
            steps.append(np.log(np.sum(np.exp(scores))) - true)
        expected[b] = np.mean(steps) if steps else 0.0
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_batches_are_seeded_and_shaped():
    pieces = lm_batches.chunk_reviews([np.arange(2, 40)] * 5, 8)
    probabilities = lm_batches.sampling_probabilities(pieces, 50, power=0.75)
    first = lm_batches.LanguageModelBatches(
        pieces, probabilities, batch_size=4, seed=7, negatives=64
    )
    again = lm_batches.LanguageModelBatches(
        pieces, probabilities, batch_size=4, seed=7, negatives=64
    )
    assert len(pieces) % 4 == 1  # the last batch is short: 1 piece and 3 padding pieces
    assert len(first) == -(-len(pieces) // 4)
    inputs, targets, weights = first[0]
    same, _, _ = again[0]
    for name in ("token_ids", "next_ids", "previous_ids", "negative_ids"):
        np.testing.assert_array_equal(inputs[name], same[name])
    assert inputs["token_ids"].shape == (4, 8) and targets.shape == (4,)
    assert inputs["negative_ids"].shape == (4, 64)
    assert inputs["negative_ids"].min() >= 2 and inputs["negative_ids"].max() < 40
    np.testing.assert_array_equal(inputs["next_ids"][:, :-1], inputs["token_ids"][:, 1:])
    assert weights.tolist() == [1.0] * 4
    # One shape for every batch; each piece exactly once per epoch, padding pieces weigh 0.
    for epoch in range(2):
        seen = []
        for k in range(len(first)):
            inputs, targets, weights = first[k]
            shapes = {name: value.shape for name, value in inputs.items()}
            assert shapes == {name: value.shape for name, value in same.items()}
            assert weights.shape == targets.shape == (4,)
            real = weights == 1.0
            assert not inputs["token_ids"][~real].any() and set(weights[~real]) <= {0.0}
            seen += [row.tobytes() for row in inputs["token_ids"][real]]
        assert sorted(seen) == sorted(piece.tobytes() for piece in pieces), epoch
        first.on_epoch_end()
    reshuffled, _, _ = first[0]
    assert not np.array_equal(reshuffled["negative_ids"], same["negative_ids"])


@pytest.mark.slow
def test_batches_hold_pieces_of_one_band_of_lengths():
    # The docstring's worked example: lengths 8, 3, 7, 2, 8 in bands 4 wide, batches of 2.
    pieces = pad([np.arange(2, 2 + n) for n in (8, 3, 7, 2, 8)], length=8)
    probabilities = lm_batches.sampling_probabilities(pieces, 20, power=0.75)
    made = lm_batches.LanguageModelBatches(
        pieces, probabilities, batch_size=2, seed=3, negatives=5, bucket_width=4
    )
    assert len(made) == 3
    for epoch in range(3):
        served = [made[k] for k in range(len(made))]
        shapes = sorted(inputs["token_ids"].shape for inputs, _, _ in served)
        assert shapes == [(2, 4), (2, 8), (2, 8)]
        seen = []
        for inputs, _, weights in served:
            for row, weight in zip(inputs["token_ids"], weights):
                if weight:
                    seen.append(len(np.trim_zeros(row)))
                    # the piece whole: its band's top is at least its length
                    assert np.count_nonzero(row) == seen[-1]
                else:
                    assert not row.any()
            real = inputs["token_ids"][weights == 1]
            lengths = np.count_nonzero(real, axis=1)
            assert len(set((lengths - 1) // 4)) == 1  # one band per batch
        assert sorted(seen) == [2, 3, 7, 8, 8], epoch
        made.on_epoch_end()
    # Orders are drawn per epoch, but seeded: a new dataset repeats epoch 0.
    again = lm_batches.LanguageModelBatches(
        pieces, probabilities, batch_size=2, seed=3, negatives=5, bucket_width=4
    )
    first = lm_batches.LanguageModelBatches(
        pieces, probabilities, batch_size=2, seed=3, negatives=5, bucket_width=4
    )
    for k in range(3):
        np.testing.assert_array_equal(again[k][0]["token_ids"], first[k][0]["token_ids"])


@pytest.mark.slow
def test_bands_cut_the_padding_of_reviews_last_pieces():
    # Reviews of 1 to 300 tokens in pieces of 128: most padding sits in the last pieces,
    # which the bands read at (up to 15 tokens over) their own length.
    reviews = [np.full(n, 7) for n in range(1, 301)]
    pieces = lm_batches.chunk_reviews(reviews, 128)
    probabilities = lm_batches.sampling_probabilities(pieces, 10, power=0.75)
    made = lm_batches.LanguageModelBatches(
        pieces, probabilities, batch_size=16, seed=0, negatives=4, fixed=False
    )
    positions = sum(made[k][0]["token_ids"].size for k in range(len(made)))
    real = int(np.count_nonzero(pieces))
    assert pieces.size > 1.3 * real  # without bands: over 30% padding
    assert positions < 1.1 * real
    assert len({made[k][0]["token_ids"].shape[1] for k in range(len(made))}) == 8


@pytest.mark.slow
def test_padding_pieces_change_neither_the_loss_nor_the_step(tmp_path):
    # A short batch topped up with empty pieces of weight 0 trains exactly as the short one.
    config = small_config(tmp_path, lm_batch_size=8, batch_shapes="fixed")
    pieces = lm_batches.chunk_reviews([np.arange(2, 40)] * 3, 8)[:5]
    probabilities = lm_batches.sampling_probabilities(pieces, 50, power=0.75)
    inputs, targets, weights = lm_batches.LanguageModelBatches(
        pieces, probabilities, batch_size=8, seed=1, negatives=config.lm_negatives
    )[0]
    assert weights.tolist() == [1.0] * 5 + [0.0] * 3
    results = []
    for rows, sample_weight in ((slice(0, 8), weights), (slice(0, 5), None)):
        keras.utils.set_random_seed(3)
        model = lm_model.build_language_model(config, vocab_size=50)
        pretrain._compile(model, config, steps=10)
        part = {name: value[rows] for name, value in inputs.items()}
        loss = model.train_on_batch(part, targets[rows], sample_weight=sample_weight)
        results.append((loss, [keras.ops.convert_to_numpy(w) for w in model.weights]))
    (padded_loss, padded_weights), (short_loss, short_weights) = results
    assert padded_loss == pytest.approx(short_loss, rel=1e-5)
    for padded, short in zip(padded_weights, short_weights, strict=True):
        np.testing.assert_allclose(padded, short, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_dynamic_shapes_keep_the_short_batch_and_their_own_cache_format(tiny_imdb, tmp_path):
    # batch_shapes "dynamic" (and "auto" under TensorFlow): the fixed batches less their
    # padding pieces, and a cache key of their own.
    pieces = lm_batches.chunk_reviews([np.arange(2, 40)] * 5, 8)
    probabilities = lm_batches.sampling_probabilities(pieces, 50, power=0.75)
    fixed, dynamic = (
        lm_batches.LanguageModelBatches(pieces, probabilities, 4, seed=7, negatives=64, fixed=f)
        for f in (True, False)
    )
    assert len(fixed) == len(dynamic) == -(-len(pieces) // 4)
    for k in range(len(dynamic)):
        inputs, targets = dynamic[k]  # no weights
        full, _, weights = fixed[k]
        real = int(weights.sum())
        assert targets.shape == (real,) and inputs["token_ids"].shape == (real, 8)
        for name, value in inputs.items():
            np.testing.assert_array_equal(value, full[name][:real])
    short = [k for k in range(len(dynamic)) if dynamic[k][1].shape != (4,)]
    assert len(pieces) % 4 == 1 and [dynamic[k][1].shape for k in short] == [(1,)]

    config = small_config(tmp_path, data=str(tiny_imdb), batch_shapes="dynamic")
    tokens = prepare_tokens(config)
    settings = pretrain.reader_settings(config, tokens)
    assert settings["format"] == 3 and "batch_shapes" not in settings
    fixed_settings = pretrain.reader_settings(
        dataclasses.replace(config, batch_shapes="fixed"), tokens
    )
    assert fixed_settings == {**settings, "format": 4}
    auto = pretrain.reader_settings(dataclasses.replace(config, batch_shapes="auto"), tokens)
    assert auto == (settings if keras.backend.backend() == "tensorflow" else fixed_settings)


@pytest.mark.slow
def test_pretraining_learns_a_predictable_language(tmp_path):
    # Words that always follow one another: 2 3 4 5 6 7 2 3 ...; a model that reads can
    # name the next and previous word, so the loss must fall far below chance.
    keras.utils.set_random_seed(0)
    reviews = [np.tile(np.arange(2, 8), 6)[offset : offset + 30] for offset in range(6)] * 20
    pieces = lm_batches.chunk_reviews(reviews, 10)
    # 12 epochs: under JAX (other initial weights) 8 ended at 2.32, near the bound (2.09).
    config = small_config(tmp_path, lm_epochs=12, lm_batch_size=8)
    weights = pretrain.pretrain(config, pieces, vocab_size=10)
    losses = weights["history"]
    chance = 2 * np.log(1 + config.lm_negatives)  # both directions, all scores equal
    assert len(losses) == 12 and losses[0] > losses[-1]
    assert losses[-1] < 0.25 * chance, losses
    assert set(weights) == {"embedding", "bidirectional_lstm", "history"}


@pytest.mark.slow
def test_pretraining_reads_batches_of_several_lengths(tmp_path):
    # Reviews of 3 to 59 tokens in pieces of 40: batches of three bands, 16, 32 and 40 long.
    keras.utils.set_random_seed(0)
    reviews = [np.tile(np.arange(2, 8), 10)[: 3 + n] for n in range(57)] * 2
    pieces = lm_batches.chunk_reviews(reviews, 40)
    config = small_config(tmp_path, lm_epochs=2, lm_batch_size=8, lm_chunk_length=40)
    served = []
    recorder = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: served.append(batch)
    )
    weights = pretrain.pretrain(config, pieces, vocab_size=10, callbacks=[recorder])
    probabilities = lm_batches.sampling_probabilities(pieces, 10, 0.75)
    made = lm_batches.LanguageModelBatches(pieces, probabilities, 8, seed=3, negatives=64)
    assert {made[k][0]["token_ids"].shape[1] for k in range(len(made))} == {16, 32, 40}
    assert len(served) == 2 * len(made)
    assert len(weights["history"]) == 2 and np.all(np.isfinite(weights["history"]))


@pytest.mark.slow
@pytest.mark.parametrize("freeze", [True, False])
def test_a_frozen_embedding_keeps_its_word_vectors_while_the_lstm_learns(tmp_path, freeze):
    keras.utils.set_random_seed(0)
    reviews = [np.tile(np.arange(2, 8), 6)[offset : offset + 30] for offset in range(6)] * 20
    pieces = lm_batches.chunk_reviews(reviews, 10)
    config = small_config(tmp_path, lm_epochs=6, lm_batch_size=8, lm_freeze_embedding=freeze)
    vectors = np.random.default_rng(1).normal(size=(10, config.embedding_dim)).astype("float32")
    weights = pretrain.pretrain(config, pieces, vocab_size=10, initial_embedding=vectors)
    (embedding,) = weights["embedding"]
    assert np.array_equal(embedding, vectors) == freeze
    losses = weights["history"]
    assert losses[-1] < 0.5 * losses[0], losses  # the LSTM learns to read either way


@pytest.mark.slow
def test_untied_output_words_train_while_the_frozen_embedding_stays(tmp_path):
    """With the embedding frozen, tied output words are frozen too; untied ones start at the
    same vectors and learn, so the language model predicts better. Only the reader is kept."""
    reviews = [np.tile(np.arange(2, 8), 6)[offset : offset + 30] for offset in range(6)] * 20
    pieces = lm_batches.chunk_reviews(reviews, 10)
    vectors = np.random.default_rng(1).normal(size=(10, 8)).astype("float32")
    final_losses = {}
    for untied in (False, True):
        keras.utils.set_random_seed(0)
        config = small_config(tmp_path, lm_epochs=8, lm_batch_size=8, lm_untied_output=untied)
        assert config.lm_freeze_embedding
        weights = pretrain.pretrain(config, pieces, vocab_size=10, initial_embedding=vectors)
        assert set(weights) == {"embedding", "bidirectional_lstm", "history"}
        np.testing.assert_array_equal(weights["embedding"][0], vectors)
        final_losses[untied] = weights["history"][-1]
    assert final_losses[True] < 0.5 * final_losses[False], final_losses  # 0.23, 0.69 vs 2.4
    model = lm_model.build_language_model(config, 10)
    assert model.get_layer("output_words").get_weights()[0].shape == (10, 8)


@pytest.mark.slow
def test_reader_weights_are_cached_and_load_into_the_classifier(tiny_imdb, tmp_path, monkeypatch):
    config = small_config(tmp_path, data=str(tiny_imdb))
    tokens = prepare_tokens(config)
    weights = pretrain.reader_weights(config, tokens)
    assert len(list((tmp_path / "cache").glob("reader-*.npz"))) == 1
    assert not list((tmp_path / "cache").glob("*-backup"))  # removed once the cache is written
    # The second call reads the cache: it never loads reviews nor trains.
    monkeypatch.setattr(imdb, "load_unlabeled", lambda config: pytest.fail("cache not used"))
    monkeypatch.setattr(pretrain, "pretrain", lambda *args, **kwargs: pytest.fail("retrained"))
    cached = pretrain.reader_weights(config, tokens)
    for name in ("embedding", "bidirectional_lstm"):
        for stored, loaded in zip(weights[name], cached[name], strict=True):
            np.testing.assert_array_equal(stored, loaded)

    classifier = build_model(config, len(tokens.vocabulary))
    pretrain.load_into(classifier, cached)
    for name in ("embedding", "bidirectional_lstm"):
        for stored, loaded in zip(
            weights[name], classifier.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(stored, loaded)


@pytest.mark.slow
def test_load_into_refuses_weights_of_another_shape(tmp_path):
    keras.utils.set_random_seed(0)
    config = small_config(tmp_path, lm_epochs=1)
    pieces = lm_batches.chunk_reviews([np.arange(2, 12)] * 4, 5)
    weights = pretrain.pretrain(config, pieces, vocab_size=12)
    other = build_model(small_config(tmp_path, units=7), 12)
    with pytest.raises(ValueError):
        pretrain.load_into(other, weights)
    del weights["bidirectional_lstm"]
    with pytest.raises(ValueError, match="no layer 'bidirectional_lstm'"):
        pretrain.load_into(build_model(config, 12), weights)


class Interrupt(Exception):
    pass


def _pretrain_until_interrupted(config, pieces, backup_dir) -> None:
    """Pretrains from seed 0 with backups in backup_dir, stopped in epoch 1 (0-based) after
    its third batch, as a kill would stop it."""
    seen_epochs = []

    def stop_in_epoch_1_after_batch_3(batch, logs):
        if seen_epochs[-1] == 1 and batch == 2:
            raise Interrupt

    interrupt = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seen_epochs.append(epoch),
        on_train_batch_end=stop_in_epoch_1_after_batch_3,
    )
    keras.utils.set_random_seed(0)
    with pytest.raises(Interrupt):
        pretrain.pretrain(config, pieces, 12, backup_dir=backup_dir, callbacks=[interrupt])


@pytest.mark.slow
def test_interrupted_pretraining_continues_from_its_backup(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "BACKUP_EVERY_BATCHES", 2)
    config = small_config(tmp_path, lm_epochs=2, lm_batch_size=4)
    pieces = lm_batches.chunk_reviews([np.arange(2, 12)] * 12, 5)  # 24 pieces: 6 batches of 4
    backup_dir = tmp_path / "backup"
    _pretrain_until_interrupted(config, pieces, backup_dir)
    # Saved in epoch 1 (0-based) after its second batch; the stop came after the third.
    assert json.loads((backup_dir / "training_metadata.json").read_text()) == {
        "epoch": 1,
        "batch": 1,
    }

    seen_epochs, seen_batches = [], []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seen_epochs.append(epoch),
        on_train_batch_begin=lambda batch, logs: seen_batches.append(batch),
    )
    # Which epoch's order each batch read was drawn from.
    served_epochs = []
    serve = lm_batches.LanguageModelBatches.__getitem__

    def spy(batches, index):
        served_epochs.append(batches._epoch)
        return serve(batches, index)

    monkeypatch.setattr(lm_batches.LanguageModelBatches, "__getitem__", spy)
    weights = pretrain.pretrain(config, pieces, 12, backup_dir=backup_dir, callbacks=[recorder])
    assert seen_epochs == [1]  # epoch 0 is not trained again
    assert len(seen_batches) == 6  # Keras replays the epoch's batches from the backed-up weights
    # ... in epoch 1's order, not epoch 0's again (the first read may be a shape probe).
    assert served_epochs[-6:] == [1] * 6
    assert set(weights) == {"embedding", "bidirectional_lstm", "history"}


@pytest.mark.slow
def test_a_torn_pretraining_backup_starts_over_with_a_warning(tmp_path, monkeypatch, capsys):
    """A kill while Keras writes the backup tears its files: the next run names the damage
    and pretrains from the start, to the very weights of a run never interrupted."""
    monkeypatch.setattr(pretrain, "BACKUP_EVERY_BATCHES", 2)
    config = small_config(tmp_path, lm_epochs=2, lm_batch_size=4)
    pieces = lm_batches.chunk_reviews([np.arange(2, 12)] * 12, 5)
    keras.utils.set_random_seed(0)
    reference = pretrain.pretrain(config, pieces, 12)

    backup_dir = tmp_path / "backup"
    _pretrain_until_interrupted(config, pieces, backup_dir)
    files = sorted(backup_dir.iterdir())
    assert {path.name for path in files} >= {"latest.weights.h5", "training_metadata.json"}
    for path in files:  # every file, the previous backup's too, cut in half
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    capsys.readouterr()

    keras.utils.set_random_seed(0)
    weights = pretrain.pretrain(config, pieces, 12, backup_dir=backup_dir)
    error = capsys.readouterr().err
    assert f"warning: the pretraining backup in {backup_dir} is damaged" in error
    assert "pretraining starts over" in error
    for name in ("embedding", "bidirectional_lstm"):
        for got, expected in zip(weights[name], reference[name]):
            np.testing.assert_array_equal(got, expected)
    assert weights["history"] == reference["history"] and len(weights["history"]) == 2
