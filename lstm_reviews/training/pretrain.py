"""Language-model pretraining: the embedding and the LSTM learn to read before they learn sentiment.

The labeled reviews teach the classifier in an epoch or two, and then it memorizes them.
IMDB's 50,000 unlabeled reviews hold far more reading. Before the classifier sees a label,
its own embedding and LSTM learn to predict each next word from the words before it (the
forward LSTM) and each previous word from the words after it (the backward LSTM), as
ELMo's bidirectional language model does (Peters et al., 2018); Dai & Le (2015) showed
language-model pretraining lifting LSTM classifiers on IMDB. The classifier starts from
the weights this leaves.

    ids of the training and unlabeled reviews (never validation or test text)
      -> pieces of config.lm_chunk_length tokens, each within one review    chunk_reviews()
      -> batches of pieces of similar length (bands of 16 tokens)           LanguageModelBatches
      -> embedding -> (bi)LSTM: the classifier's own layers                 build_language_model()
      -> forward state at t, projected to the embedding size, scores word t+1;
         the backward state at t scores word t-1. Scores are dot products with the
         embedding (tied: the output words use the input's vectors; or, with
         config.lm_untied_output, output vectors of their own) of the true word
         and of config.lm_negatives words sampled by frequency ** 0.75; softmax over those.
      -> the weights of `embedding` and the LSTM layer, cached by settings    reader_weights()

A softmax over all 30,000 words would cost 30,000 products per token; the sampled one
costs lm_negatives + 1, so an epoch over 17M tokens takes minutes on a CPU.
"""

from __future__ import annotations

import shutil
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from keras import ops

from lstm_reviews.config import LANGUAGE_MODEL, cache_settings
from lstm_reviews.crashpoints import crash_point
from lstm_reviews.data import embeddings
from lstm_reviews.data import tokens as token_cache
from lstm_reviews.data.batches import fixed_shapes
from lstm_reviews.data.cache import cached, short_hash, write_atomically
from lstm_reviews.data.text import pad
from lstm_reviews.errors import UserError, batch_end_interrupts, check_interrupt
from lstm_reviews.model.classifier import READER_LAYERS, reader_layers

BACKUP_EVERY_BATCHES = 200  # a killed pretraining loses at most this many steps
FIRST_WORD_ID = 2  # 0 is padding, 1 is [UNK]: neither is a word to predict
# Pieces are batched with pieces of their 16-token band of lengths, padded to its top: a
# review's last piece (on IMDB 72k of 170k pieces) no longer costs a full piece of padding
# (21.6% of the positions read, against ~3%), and there are few shapes to compile (8 at 128).
BUCKET_WIDTH = 16
# The reader cache's format: 3 with dynamic batch shapes (batches.fixed_shapes), each band's
# last batch short; 4 with fixed shapes, that batch topped up with empty pieces of weight 0
# (the same training up to float rounding, but a new file: a cache holds what this code makes).
# 1 and 2 were the same without the bands, every batch padded to the chunk length.
_FORMAT, _FORMAT_FIXED_SHAPES = 3, 4


def chunk_reviews(ids: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Cuts each review into pieces of `length` tokens; <int32>[pieces, length], right-padded.

    No piece spans two reviews. Worked example, length 3: the reviews [5, 6, 7, 8] and
    [9] give the pieces [5, 6, 7], [8, 0, 0] and [9, 0, 0]. Empty reviews give none.
    """
    if length <= 0:
        raise ValueError(f"chunk length must be positive, got {length}")
    pieces = [
        np.asarray(review, np.int32)[start : start + length]
        for review in ids
        for start in range(0, len(review), length)
    ]
    return pad(pieces, length=length)


def sampling_probabilities(pieces: np.ndarray, vocab_size: int, power: float) -> np.ndarray:
    """<float64>[vocab_size]: each word's count ** power, normalized; 0 for padding,
    [UNK] and unseen words (a word never read cannot be a useful wrong answer)."""
    counts = np.bincount(pieces.ravel(), minlength=vocab_size).astype(np.float64)
    counts[:FIRST_WORD_ID] = 0.0
    weights = counts**power
    if weights.sum() == 0:
        raise ValueError("the reviews to pretrain on hold no words")
    return weights / weights.sum()


def shift_targets(pieces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(next, previous) <int32>[pieces, length]: the word after and before each position, 0 where
    the piece has none. Worked example: [5, 6, 7] -> next [6, 7, 0], previous [0, 5, 6]."""
    following = np.zeros_like(pieces)
    following[:, :-1] = pieces[:, 1:]
    preceding = np.zeros_like(pieces)
    preceding[:, 1:] = pieces[:, :-1]
    return following, preceding


class LanguageModelBatches(keras.utils.PyDataset):
    """Batches of pieces for the language model, from numpy alone (any backend).

    Pieces are grouped in bands of length (1-16 tokens, 17-32, ..., up to the chunk length,
    bucket_width wide); a batch holds pieces of one band, cut to the band's top. Item i:
    ({"token_ids", "next_ids", "previous_ids"} each <int32>[batch_size, band top],
    "negative_ids" <int32>[batch_size, negatives]), zeros <float32>[batch_size] (Keras wants
    targets; the model's output is its loss), weights <float32>[batch_size]. A band's last,
    short batch is topped up with empty pieces (all ids 0) of weight 0, which the loss leaves
    out, so every batch of a band has one shape (one compilation per band under JAX).
    fixed=False (dynamic shapes): that batch stays short, and items are (inputs, zeros)
    without weights. Each epoch shuffles the pieces within their bands and then the order of
    all batches; the negatives are drawn per item; all seeded by (seed, epoch[, item]): the
    same seed gives the same batches.

    Worked example, bucket_width 4, batch_size 2: pieces of lengths 8, 3, 7, 2, 8 make the
    bands 5-8 (three pieces: batches of 2 and 1, 8 wide) and 1-4 (two pieces: one batch, 4
    wide), three batches in all, in an order drawn per epoch.
    """

    def __init__(
        self,
        pieces: np.ndarray,
        probabilities: np.ndarray,
        batch_size: int,
        seed: int,
        negatives: int,
        fixed: bool = True,
        bucket_width: int = BUCKET_WIDTH,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._fixed = fixed
        self._pieces, self._probabilities = pieces, probabilities
        self._batch_size, self._seed, self._negatives = batch_size, seed, negatives
        # Ids are never 0 inside a review, so a piece's nonzero ids are its length.
        lengths = np.maximum(np.count_nonzero(pieces, axis=1), 1)
        tops = np.minimum(-(-lengths // bucket_width) * bucket_width, pieces.shape[1])
        self._bands = [(int(top), np.flatnonzero(tops == top)) for top in np.unique(tops)]
        self._epoch = 0
        self._batches = self._planned()

    def _planned(self) -> list:
        """[(band top, piece indices)] of this epoch, in the order they are served."""
        rng = np.random.default_rng([self._seed, self._epoch])
        batches = []
        for top, members in self._bands:
            members = rng.permutation(members)
            batches += [
                (top, members[start : start + self._batch_size])
                for start in range(0, len(members), self._batch_size)
            ]
        return [batches[k] for k in rng.permutation(len(batches))]

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index):
        top, rows = self._batches[index]
        missing = self._batch_size - len(rows) if self._fixed else 0
        pieces = np.pad(self._pieces[rows, :top], [(0, missing), (0, 0)])
        following, preceding = shift_targets(pieces)
        rng = np.random.default_rng([self._seed, self._epoch, index])
        negatives = rng.choice(
            len(self._probabilities), size=(len(rows), self._negatives), p=self._probabilities
        ).astype(np.int32)
        inputs = {
            "token_ids": pieces,
            "next_ids": following,
            "previous_ids": preceding,
            "negative_ids": np.pad(negatives, [(0, missing), (0, 0)]),
        }
        if not self._fixed:
            return inputs, np.zeros(len(rows), np.float32)
        weights = np.pad(np.ones(len(rows), np.float32), (0, missing))
        return inputs, np.zeros(self._batch_size, np.float32), weights

    def on_epoch_end(self) -> None:
        self.set_epoch(self._epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Serves epoch `epoch`'s batches: a pretraining resumed at epoch k reads epoch k's
        order, not epoch 0's again."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = self._planned()


class SampledWordLoss(keras.layers.Layer):
    """Cross-entropy of the true word against sampled wrong ones, averaged per piece.

    Call: queries <float>[batch, time, E] (the projected LSTM states), targets <float>[batch,
    time, E] and target_ids <int>[batch, time] (the word to predict at each step, 0 where
    none), negatives <float>[batch, K, E] and negative_ids <int>[batch, K].
    Returns <float32>[batch]: the mean over the steps that have a word to predict (0 if none).
    A sampled word that happens to be the true one is left out of that step's softmax.
    """

    def call(self, queries, targets, target_ids, negatives, negative_ids):
        queries = ops.cast(queries, "float32")
        true_scores = ops.sum(queries * ops.cast(targets, "float32"), axis=-1)  # [batch, time]
        wrong_scores = ops.einsum("bte,bke->btk", queries, ops.cast(negatives, "float32"))
        hits = ops.expand_dims(target_ids, -1) == ops.expand_dims(negative_ids, 1)  # [b, t, k]
        wrong_scores = ops.where(hits, ops.cast(-1e9, "float32"), wrong_scores)
        scores = ops.concatenate([ops.expand_dims(true_scores, -1), wrong_scores], axis=-1)
        step_losses = ops.logsumexp(scores, axis=-1) - true_scores  # [batch, time]
        has_word = ops.cast(target_ids >= FIRST_WORD_ID, "float32")
        count = ops.sum(has_word, axis=1)
        return ops.sum(step_losses * has_word, axis=1) / ops.maximum(count, 1.0)

    def compute_output_shape(self, queries_shape, *other_shapes):
        return (queries_shape[0],)


def _model_output_is_the_loss(unused_targets, piece_losses):
    """Dynamic shapes: the model's output, each piece's loss (Keras averages it)."""
    return piece_losses


class ModelOutputIsTheLoss(keras.losses.Loss):
    """The model's output, each piece's loss, averaged over the pieces of weight 1: the
    empty pieces that top up a short batch count for nothing."""

    def __init__(self, **kwargs):
        super().__init__(reduction="mean_with_sample_weight", **kwargs)

    def call(self, unused_targets, piece_losses):
        return piece_losses


def build_language_model(config, vocab_size: int) -> keras.Model:
    """The pretraining model around the classifier's reader layers (model.reader_layers).

    Inputs as LanguageModelBatches yields them; output <float32>[batch]: each piece's loss,
    forward and backward summed. Compiled with Adam; loss = that output's mean over the
    pieces of weight 1 (ModelOutputIsTheLoss; with dynamic shapes, over the batch's pieces).
    """
    embedding, rnn = reader_layers(config, vocab_size)
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    next_ids = keras.Input(shape=(None,), dtype="int32", name="next_ids")
    previous_ids = keras.Input(shape=(None,), dtype="int32", name="previous_ids")
    negative_ids = keras.Input(shape=(None,), dtype="int32", name="negative_ids")
    states = rnn(embedding(token_ids))  # [batch, time, units] or [batch, time, 2 * units]
    # The words scored: the embedding's vectors (tied) or their own (config.lm_untied_output).
    words = (
        keras.layers.Embedding(vocab_size, config.embedding_dim, name="output_words")
        if config.lm_untied_output
        else embedding
    )
    negatives = words(negative_ids)
    forward = keras.layers.Dense(config.embedding_dim, name="forward_head")(
        states[..., : config.units]
    )
    losses = SampledWordLoss(name="forward_loss")(
        forward, words(next_ids), next_ids, negatives, negative_ids
    )
    if config.bidirectional:
        backward = keras.layers.Dense(config.embedding_dim, name="backward_head")(
            states[..., config.units :]
        )
        losses = losses + SampledWordLoss(name="backward_loss")(
            backward, words(previous_ids), previous_ids, negatives, negative_ids
        )
    return keras.Model(
        [token_ids, next_ids, previous_ids, negative_ids], losses, name="language_model"
    )


def _compile(model: keras.Model, config, steps: int) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(
        config.lm_learning_rate, decay_steps=max(steps, 1), alpha=0.1
    )
    loss = ModelOutputIsTheLoss() if fixed_shapes(config) else _model_output_is_the_loss
    model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0), loss=loss)


def reader_layer_names(model: keras.Model) -> list:
    """The names of `model`'s reader layers (those model.reader_layers makes)."""
    return [layer.name for layer in model.layers if layer.name in READER_LAYERS]


def pretrain(
    config,
    pieces: np.ndarray,
    vocab_size: int,
    initial_embedding=None,
    backup_dir: Path | None = None,
    callbacks=(),
) -> dict:
    """Trains the language model on `pieces` for config.lm_epochs epochs.

    pieces: <int32>[n, length] (chunk_reviews). initial_embedding: <float32>[vocab_size, E]
    to start from (the word vectors), or None; with config.lm_freeze_embedding it is kept as
    it is (the untied output words, config.lm_untied_output, start there too and train).
    backup_dir: BackupAndRestore's directory, so a killed pretraining continues where
    it stopped. Returns {layer name: [weights]} of the reader layers, and "history": the
    per-epoch losses.
    """
    model = build_language_model(config, vocab_size)
    if initial_embedding is not None:
        model.get_layer("embedding").set_weights([initial_embedding])
        if config.lm_untied_output:
            model.get_layer("output_words").set_weights([initial_embedding])
        # Before compiling: the train step then computes no gradient into the embedding.
        model.get_layer("embedding").trainable = not config.lm_freeze_embedding
    probabilities = sampling_probabilities(pieces, vocab_size, config.lm_sampling_power)
    batches = LanguageModelBatches(
        pieces,
        probabilities,
        config.lm_batch_size,
        config.seed,
        negatives=config.lm_negatives,
        fixed=fixed_shapes(config),
    )
    _compile(model, config, config.lm_epochs * len(batches))
    all_callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: crash_point("pretrain-step")
        ),
        # Ctrl-C stops after the batch it came in, not wherever in Keras it lands.
        keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: check_interrupt()),
        *callbacks,
    ]
    if backup_dir is not None:
        all_callbacks.append(PretrainingBackup(str(backup_dir), save_freq=BACKUP_EVERY_BATCHES))
    fit_input, epoch_callbacks = _fit_input(batches)
    with batch_end_interrupts():
        history = model.fit(
            fit_input,
            epochs=config.lm_epochs,
            callbacks=all_callbacks + epoch_callbacks,
            verbose=1,
            shuffle=False,
        )
    if model.stop_training:  # TerminateOnNaN: these weights are not worth keeping
        raise RuntimeError("language-model pretraining stopped on a NaN loss")
    weights = {name: model.get_layer(name).get_weights() for name in reader_layer_names(model)}
    weights["history"] = [float(loss) for loss in history.history.get("loss", [])]
    return weights


def _fit_input(batches: LanguageModelBatches) -> tuple:
    """(what model.fit reads, the callbacks it needs). The input: the batches themselves, but
    under TensorFlow a tf.data pipeline over them that leaves every length free (Keras' own
    pipeline for a PyDataset takes its shapes from the first two batches, and batches of other
    bands have other lengths). The callback sets the batches' epoch as each epoch begins:
    Keras advances a PyDataset at each epoch's end but not the pipeline, and a run resumed
    from a backup at epoch k starts with k."""
    epochs = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: batches.set_epoch(epoch)
    )
    if keras.backend.backend() != "tensorflow":
        return batches, [epochs]
    import tensorflow as tf

    signature = tf.nest.map_structure(
        lambda array: tf.TensorSpec((None,) * array.ndim, tf.as_dtype(array.dtype)), batches[0]
    )
    dataset = tf.data.Dataset.from_generator(
        lambda: (batches[index] for index in range(len(batches))), output_signature=signature
    )
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(2)
    return dataset, [epochs]


class PretrainingBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore keeping the backup before the last one too (double_checkpoint):
    a backup torn by a kill falls back to the previous one (Keras does that for the weights).
    If still nothing loads (a torn training_metadata.json too), pretraining starts over from
    the weights it began with, saying which backup was damaged, instead of failing every
    resume with a raw h5py or JSON error."""

    def __init__(self, backup_dir, save_freq):
        super().__init__(backup_dir, save_freq=save_freq, double_checkpoint=True)

    def on_train_begin(self, logs=None):
        start = [variable.numpy() for variable in self.model.weights]
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(
                f"warning: the pretraining backup in {self.backup_dir} is damaged "
                f"({type(error).__name__}: {error}); pretraining starts over",
                file=sys.stderr,
            )
            shutil.rmtree(self.backup_dir, ignore_errors=True)
            # A failed load may have set some variables: back to the start, and a fresh
            # optimizer state (Adam's variables all start at zero).
            for variable, value in zip(self.model.weights, start):
                variable.assign(value)
            if self.model.optimizer is not None and self.model.optimizer.built:
                for variable in self.model.optimizer.variables:
                    variable.assign(np.zeros(variable.shape, variable.dtype))
            self.model._initial_epoch = 0


def reader_settings(config, tokens) -> dict:
    """Everything the pretrained reader depends on: the token ids, the word vectors it starts
    from (if any), and the Config fields that feed it (config.LANGUAGE_MODEL)."""
    vectors = embeddings.vectors_settings(config, tokens) if config.pretrain_embeddings else None
    return {
        # Not config.batch_shapes: what it resolves to (batches.fixed_shapes), so that "auto"
        # under TensorFlow and "dynamic" share the cache made before the setting existed.
        "format": _FORMAT_FIXED_SHAPES if fixed_shapes(config) else _FORMAT,
        "tokens": tokens.settings,
        "vectors": vectors,
        **cache_settings(config, LANGUAGE_MODEL),
    }


def _save(path: Path, weights: dict) -> None:
    arrays = {
        f"{name}/{index}": array
        for name, layer_weights in weights.items()
        if name != "history"
        for index, array in enumerate(layer_weights)
    }
    arrays["history"] = np.asarray(weights.get("history", []), np.float64)
    write_atomically(path, lambda file: np.savez(file, **arrays))


def _load(path: Path) -> dict:
    weights: dict = {}
    try:
        with np.load(path) as stored:
            weights["history"] = stored["history"].tolist()
            layer_keys = [key.split("/") for key in stored.files if key != "history"]
            for name, index in sorted(layer_keys, key=lambda pair: (pair[0], int(pair[1]))):
                weights.setdefault(name, []).append(stored[f"{name}/{index}"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: not a readable pretrained reader ({error})") from error
    print(f"Pretrained reader layers from {path}")
    return weights


def reader_weights(config, tokens) -> dict:
    """Pretrained {layer name: [weights]} for the classifier's reader layers; cached.

    Pretrains on the training split and the unlabeled reviews, starting from the word vectors
    when config.pretrain_embeddings (TensorFlow needed unless the unlabeled reviews' ids and
    the word vectors are cached); later runs with the same settings load the cache with NumPy
    alone.
    """
    path = Path(config.cache_dir) / f"reader-{short_hash(reader_settings(config, tokens))}.npz"
    backup_dir = path.with_name(path.stem + "-backup")

    def build():
        # No TensorFlow needed once the unlabeled ids and word vectors are cached (a GPU
        # machine with JAX alone): those two say so themselves when it is.
        vectors = (
            embeddings.pretrained_embeddings(config, tokens) if config.pretrain_embeddings else None
        )
        started = time.perf_counter()
        unlabeled = token_cache.unlabeled_ids(config, tokens)
        pieces = chunk_reviews(list(tokens.train.ids) + unlabeled, config.lm_chunk_length)
        print(
            f"Language-model pretraining: {len(tokens.train.ids)} training and "
            f"{len(unlabeled)} unlabeled reviews, {len(pieces)} pieces, "
            f"{int(np.sum(pieces > 0))} tokens, {config.lm_epochs} epoch(s)"
        )
        weights = pretrain(config, pieces, len(tokens.vocabulary), vectors, backup_dir)
        print(f"Pretrained in {time.perf_counter() - started:.0f} s, cached at {path}")
        return weights

    weights = cached(path, build, _save, _load)
    shutil.rmtree(backup_dir, ignore_errors=True)  # the cache now holds what it protected
    return weights


def load_into(model: keras.Model, weights: dict) -> None:
    """Sets `model`'s reader layers from reader_weights' dict; the shapes must match."""
    for name in reader_layer_names(model):
        if name not in weights:
            raise ValueError(f"pretrained weights have no layer {name!r}: {sorted(weights)}")
        model.get_layer(name).set_weights(weights[name])
