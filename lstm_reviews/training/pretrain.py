"""Language-model pretraining: the embedding and the LSTM learn to read before they learn sentiment.

The labeled reviews teach the classifier in an epoch or two, and then it memorizes them.
IMDB's 50,000 unlabeled reviews hold far more reading. Before the classifier sees a label,
its own embedding and LSTM learn to predict each next word from the words before it (the
forward LSTM) and each previous word from the words after it (the backward LSTM), as
ELMo's bidirectional language model does (Peters et al., 2018); Dai & Le (2015) showed
language-model pretraining lifting LSTM classifiers on IMDB. The classifier starts from
the weights this leaves.

    ids of the training and unlabeled reviews (never validation or test text)
      -> pieces of config.lm_chunk_length tokens, each within one review   (lm_batches.py)
      -> batches of pieces of similar length (bands of 16 tokens)          (lm_batches.py)
      -> embedding -> (bi)LSTM: the classifier's own layers                (lm_model.py)
      -> forward state at t, projected to the embedding size, scores word t+1;
         the backward state at t scores word t-1. Scores are dot products with the
         embedding (tied: the output words use the input's vectors; or, with
         config.lm_untied_output, output vectors of their own) of the true word
         and of config.lm_negatives words sampled by frequency ** 0.75; softmax over those.
      -> trained (pretrain), then the weights of `embedding` and the LSTM layer,
         cached by settings                                                  reader_weights()

A softmax over all 30,000 words would cost 30,000 products per token; the sampled one
costs lm_negatives + 1, so an epoch over 17M tokens takes minutes on a CPU.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from lstm_reviews.backend import runs_on_tensorflow
from lstm_reviews.config import LANGUAGE_MODEL, cache_settings
from lstm_reviews.crashpoints import crash_point
from lstm_reviews.data import embeddings
from lstm_reviews.data import tokens as token_cache
from lstm_reviews.data.batches import fixed_shapes
from lstm_reviews.data.cache import cached, short_hash, write_atomically
from lstm_reviews.errors import UserError, batch_end_interrupts, check_interrupt
from lstm_reviews.model.classifier import READER_LAYERS
from lstm_reviews.processes import writes_files
from lstm_reviews.training.distribute import process_part
from lstm_reviews.training.lm_batches import (
    LanguageModelBatches,
    chunk_reviews,
    sampling_probabilities,
)
from lstm_reviews.training.lm_model import (
    ModelOutputIsTheLoss,
    build_language_model,
    model_output_is_the_loss,
)

BACKUP_EVERY_BATCHES = 200  # a killed pretraining loses at most this many steps
# The reader cache's format: 3 with dynamic batch shapes (batches.fixed_shapes), each band's
# last batch short; 4 with fixed shapes, that batch topped up with empty pieces of weight 0
# (the same training up to float rounding, but a new file: a cache holds what this code makes).
# 1 and 2 were the same without the bands, every batch padded to the chunk length.
_FORMAT, _FORMAT_FIXED_SHAPES = 3, 4


def _compile(model: keras.Model, config, steps: int) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(
        config.lm_learning_rate, decay_steps=max(steps, 1), alpha=0.1
    )
    loss = ModelOutputIsTheLoss() if fixed_shapes(config) else model_output_is_the_loss
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
    if not runs_on_tensorflow():
        return process_part(batches), [epochs]
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
    resume with a raw h5py or JSON error. In a run of several processes, every process
    loads the backup and process 0 alone writes or deletes it (processes.py)."""

    def __init__(self, backup_dir, save_freq):
        super().__init__(backup_dir, save_freq=save_freq, double_checkpoint=True)

    def _save_model(self):
        if writes_files():
            super()._save_model()
            return
        # Saving runs collectives under JAX: the others save too, into scratch files.
        names = ("backup_dir", "_weights_path", "_training_metadata_path")
        names += ("_prev_weights_path", "_prev_training_metadata_path")
        kept = {name: getattr(self, name) for name in names}
        with tempfile.TemporaryDirectory() as scratch:
            for name, path in kept.items():
                setattr(
                    self,
                    name,
                    scratch if name == "backup_dir" else str(Path(scratch) / Path(path).name),
                )
            try:
                super()._save_model()
            finally:
                for name, path in kept.items():
                    setattr(self, name, path)

    def on_train_end(self, logs=None):
        if writes_files():
            super().on_train_end(logs)

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
            if writes_files():
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
    if writes_files():  # the cache now holds what it protected
        shutil.rmtree(backup_dir, ignore_errors=True)
    return weights


def load_into(model: keras.Model, weights: dict) -> None:
    """Sets `model`'s reader layers from reader_weights' dict; the shapes must match."""
    for name in reader_layer_names(model):
        if name not in weights:
            raise ValueError(f"pretrained weights have no layer {name!r}: {sorted(weights)}")
        model.get_layer(name).set_weights(weights[name])
