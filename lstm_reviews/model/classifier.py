"""The sentiment model: token ids -> embedding -> (bi)LSTM of our cell -> pooled -> one logit.

    token_ids  <int32>[batch, time]          right-padded with 0
    embedding  <float>[batch, time, E]        mask: ids != 0, carried by Keras to the layers below
    lstm       <float>[batch, time, H]        RNN(LSTMCell), or a variant's cell (--cell);
                                              H = units (2 * units bidirectional)
    pooling    <float>[batch, P]              max over the review's real steps (P = H),
                                              or max and mean side by side (P = 2 * H)
    dropout    <float>[batch, P]
    logit      <float32>[batch, 1]            > 0 means positive

Layer names are fixed: embedding, lstm (inside bidirectional_lstm when bidirectional), pooling,
dropout, logit. recurrent_layer finds the recurrent layer by its type, for every caller. Model
code uses keras.ops only, so it runs on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import keras
import ml_dtypes
from keras import ops

from lstm_reviews.config import POOLING_MODES
from lstm_reviews.data.batches import fixed_shapes
from lstm_reviews.errors import UserError
from lstm_reviews.model.adversarial import AdversarialClassifier
from lstm_reviews.model.layers import recurrent_layer  # noqa: F401  (callers find it here too)
from lstm_reviews.model.variants import CELLS

# The names reader_layers gives: the layers a language model pretrains for the classifier.
READER_LAYERS = ("embedding", "lstm", "bidirectional_lstm")


@keras.saving.register_keras_serializable(package="lstm_reviews")
class MaskedTimePooling(keras.layers.Layer):
    """Pools a sequence over time, ignoring masked (padding) steps.

    Keras' GlobalMaxPooling1D ignores the mask, so padding steps could win the max; here
    they cannot. A review with no real step pools to zeros.

    Args:
        mode: "max" -> <float>[batch, features]; "max_mean" -> concat(max, mean)
            <float>[batch, 2 * features].

    Call: inputs <float>[batch, time, features], mask <bool>[batch, time] (optional).
    """

    def __init__(self, mode="max", **kwargs):
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling mode must be one of {POOLING_MODES}, got {mode!r}")
        super().__init__(**kwargs)
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        mask = ops.cast(mask, "bool")
        step_mask = ops.expand_dims(mask, -1)  # <bool>[batch, time, 1]
        # The lowest finite value rather than -inf: no inf reaches the gradient. ml_dtypes'
        # finfo (Keras' own dependency) knows bfloat16 too, which NumPy's does not.
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        lowest = ops.cast(ml_dtypes.finfo(dtype).min, inputs.dtype)
        maximum = ops.max(ops.where(step_mask, inputs, lowest), axis=1)
        has_steps = ops.any(mask, axis=1, keepdims=True)  # <bool>[batch, 1]
        maximum = ops.where(has_steps, maximum, ops.zeros_like(maximum))
        if self.mode == "max":
            return maximum
        weights = ops.cast(step_mask, inputs.dtype)
        count = ops.maximum(ops.sum(weights, axis=1), ops.cast(1, inputs.dtype))
        mean = ops.sum(inputs * weights, axis=1) / count
        return ops.concatenate([maximum, mean], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None  # time is gone: nothing left to mask

    def compute_output_shape(self, input_shape):
        features = input_shape[-1]
        if self.mode == "max_mean" and features is not None:
            features = 2 * features
        return (input_shape[0], features)

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


def reader_layers(config, vocab_size: int):
    """The layers that read a review: (embedding, recurrent layer), named as the inspection expects.

    Shared by the classifier (build_model) and the language model that pretrains them
    (lstm_reviews.training.pretrain), so their weights move from one to the other by layer name.
    """
    if vocab_size < 3:
        raise ValueError(f"vocab_size must cover padding, [UNK] and a word, got {vocab_size}")
    # Initializers stay unseeded: keras.utils.set_random_seed(config.seed) makes them
    # repeatable, and a seeded initializer would give the backward LSTM (a clone made
    # from the forward one's config) the very same starting weights.
    embedding = keras.layers.Embedding(
        vocab_size, config.embedding_dim, mask_zero=True, name="embedding"
    )
    cell = CELLS[config.cell](
        config.units,
        dropout=config.input_dropout,
        recurrent_dropout=config.recurrent_dropout,
        seed=config.seed,
    )
    rnn = keras.layers.RNN(cell, return_sequences=True, name="lstm")
    if config.bidirectional:
        rnn = keras.layers.Bidirectional(rnn, name="bidirectional_lstm")
    return embedding, rnn


def build_model(config, vocab_size: int) -> keras.Model:
    """The ids -> logit model for `config` (a lstm_reviews.config.Config).

    vocab_size: rows of the embedding, padding (0) and [UNK] (1) included; the
    vectorizer's vocabulary length, which may be below config.vocab_size on small data.
    Input "token_ids" <int32>[batch, time]; output logits <float32>[batch, 1].
    With config.adversarial_epsilon > 0 or config.vat_epsilon > 0 the same graph is an
    AdversarialClassifier, whose training step adds the loss on adversarially perturbed
    embeddings, or the virtual adversarial loss of the unlabeled reviews that each training
    batch then ends with (lstm_reviews.model.adversarial); otherwise a plain functional keras.Model.
    """
    embedding, rnn = reader_layers(config, vocab_size)
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = rnn(embedding(token_ids))
    x = MaskedTimePooling(config.pooling, name="pooling")(x)
    x = keras.layers.Dropout(config.dropout, seed=config.seed, name="dropout")(x)
    # float32 logit even under mixed_float16: the loss needs its precision.
    logits = keras.layers.Dense(1, dtype="float32", name="logit")(x)
    if config.adversarial_epsilon > 0 or config.vat_epsilon > 0:
        if keras.backend.backend() not in ("tensorflow", "jax", "torch"):  # a train_step each
            raise UserError(
                f"--adversarial-epsilon and --vat-epsilon need the TensorFlow, JAX or PyTorch "
                f"backend, not {keras.backend.backend()!r}; set KERAS_BACKEND or pass "
                f"--adversarial-epsilon 0 --vat-epsilon 0"
            )
        return AdversarialClassifier(
            token_ids,
            logits,
            name="imdb_lstm",
            epsilon=config.adversarial_epsilon,
            vat_epsilon=config.vat_epsilon,
            vat_rows=config.vat_batch_size if config.vat_epsilon > 0 else 0,
        )
    return keras.Model(token_ids, logits, name="imdb_lstm")


def learning_rate(config, steps_per_epoch: int = 0):
    """Adam's learning rate: constant, or cosine-decayed to 10% over config.epochs.

    steps_per_epoch: batches per epoch; 0 (unknown) gives the constant rate.
    """
    if not config.lr_decay or steps_per_epoch <= 0:
        return config.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=config.epochs * steps_per_epoch, alpha=0.1
    )


@keras.saving.register_keras_serializable(package="lstm_reviews")
def cross_entropy(labels, logits):
    """Each review's binary cross-entropy <float32>[batch]: labels <float>[batch] (or [batch,
    1]), logits <float>[batch, 1]. keras.metrics.BinaryCrossentropy refuses the labels'
    rank, which the loss accepts."""
    labels = ops.reshape(ops.cast(labels, "float32"), ops.shape(logits))
    return keras.losses.binary_crossentropy(labels, logits, from_logits=True)


def compile_model(model: keras.Model, config, steps_per_epoch: int = 0) -> keras.Model:
    """Adam with gradient clipping, binary cross-entropy on logits, accuracy at logit 0.

    With fixed batch shapes (batches.fixed_shapes), batches carry weights <float32>[batch]: 1
    for a review, 0 for a padding row (lstm_reviews.data.batches). The loss is the weighted mean,
    divided by the weights' sum: a topped-up batch trains its reviews as the short batch alone
    would. The metrics "accuracy" and "cross_entropy" are weighted means over all reviews of
    an evaluation. With dynamic shapes, no weights: the plain mean loss and "accuracy".
    """
    # clipnorm: an LSTM's rare exploding-gradient step would otherwise undo an epoch.
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate(config, steps_per_epoch), clipnorm=1.0
    )
    accuracy = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
    if not fixed_shapes(config):
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            metrics=[accuracy],
        )
        return model
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(from_logits=True, reduction="mean_with_sample_weight"),
        # weighted_metrics: Keras' plain `metrics` ignore the weights, padding rows included.
        weighted_metrics=[
            accuracy,
            keras.metrics.MeanMetricWrapper(cross_entropy, name="cross_entropy"),
        ],
    )
    return model
