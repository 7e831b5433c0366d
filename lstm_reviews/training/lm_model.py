"""The language model's graph (training.pretrain): the classifier's reader layers, a head
per direction, and the sampled softmax whose loss the model outputs.

    embedding -> (bi)LSTM: the classifier's own layers
      -> forward state at t, projected to the embedding size, scores word t+1;
         the backward state at t scores word t-1, against the true word and
         config.lm_negatives sampled wrong ones (SampledWordLoss)
"""

from __future__ import annotations

import keras
from keras import ops

from lstm_reviews.model.classifier import reader_layers
from lstm_reviews.training.lm_batches import FIRST_WORD_ID


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


def model_output_is_the_loss(unused_targets, piece_losses):
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
