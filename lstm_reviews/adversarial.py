"""Adversarial training on the word embeddings (Miyato, Dai & Goodfellow 2017, "Adversarial
training methods for semi-supervised text classification"), `--adversarial-epsilon`.

    token_ids  <int32>[batch, time]          right-padded with 0
    embedded   <float>[batch, time, E]        e = the embedding layer's output
    mask       <bool>[batch, time]            ids != 0
    g          <float>[batch, time, E]        ∂L(e)/∂e, the clean loss's gradient, 0 at padding
    r_adv      <float>[batch, time, E]        ε · g_b / ‖g_b‖₂ for each review b, the norm taken
                                              over the review's whole (time, E) block
    loss       L(e) + L(e + stop_gradient(r_adv))

r_adv is the worst perturbation of norm ε to first order: a step of length ε up the clean
loss's gradient. Training on both terms makes the classifier less sensitive to small changes
of each review's embedded sequence, a regularizer that costs one more forward and backward
pass per step. r_adv is a constant for the update (stop_gradient), as in the paper: the
gradient reaching the weights is that of the two losses at fixed points, not through g.

Normalization: Miyato et al. perturb embeddings normalized to zero mean and unit variance
(moments weighted by word frequency), so that the model cannot shrink the perturbation's
effect by growing the embeddings; their ε = 5.0 is on that scale. Here the embeddings are NOT
normalized: the model and its weights stay exactly those of build_model (the inspection, the
ledger and the pretrained language model read them as they are), so ε is measured against the
embeddings as trained. A review's embedded block has norm √(Σ_t ‖e_t‖²), roughly √time times a
word vector's norm: choose ε against that.

AdversarialClassifier is build_model's keras.Model with this train_step, for the TensorFlow
backend (GradientTape) and the JAX backend (jax.value_and_grad in Keras' stateless step). It
is used only when ε > 0, so the default model is the plain functional one; it is registered
for serialization, so a run's model.keras loads and exports as before.
"""

from __future__ import annotations

import keras
from keras import ops

# build_model's recurrent layer is named by whether it is bidirectional.
_RECURRENT = ("bidirectional_lstm", "lstm")


def adversarial_perturbation(gradient, mask, epsilon: float):
    """r_adv <float>[batch, time, E] = ε · g_b / ‖g_b‖₂ for each review b.

    gradient: g <float>[batch, time, E], the loss's gradient with respect to the embedded
    sequence; mask: <bool>[batch, time] (True for real tokens) or None. Padding positions get
    0, and so does a review whose gradient is 0. The result is a constant (stop_gradient).
    """
    gradient = ops.stop_gradient(gradient)
    dtype = gradient.dtype
    g = ops.cast(gradient, "float32")
    if mask is not None:
        g = g * ops.cast(mask, "float32")[:, :, None]
    # Dividing by the largest |g| first keeps squares of tiny gradients from underflowing
    # (as the paper's code does); after it, a nonzero review's norm is at least 1.
    largest = ops.max(ops.abs(g), axis=(1, 2), keepdims=True)
    g = g / ops.where(largest > 0, largest, ops.ones_like(largest))
    norm = ops.sqrt(ops.sum(ops.square(g), axis=(1, 2), keepdims=True))
    r = epsilon * g / ops.where(norm > 0, norm, ops.ones_like(norm))
    return ops.cast(r, dtype)


def value_and_gradient(function, x):
    """(value, aux, ∂value/∂x) of `function(x) -> (scalar value, aux)` on the current backend:
    jax.value_and_grad under JAX, a GradientTape under TensorFlow. Inside a surrounding
    tape or jax.grad, value and aux stay differentiable for the outer one."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        (value, aux), gradient = jax.value_and_grad(function, has_aux=True)(x)
        return value, aux, gradient
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            value, aux = function(x)
        return value, aux, tape.gradient(value, x)
    raise NotImplementedError(
        f"adversarial training runs on the TensorFlow and JAX backends, not {backend!r}"
    )


@keras.saving.register_keras_serializable(package="lstm_reviews")
class AdversarialClassifier(keras.Model):
    """build_model's functional model, trained on L(e) + L(e + r_adv) (module docstring).

    Construct it as a functional model: AdversarialClassifier(token_ids, logits, name=...,
    epsilon=ε). epsilon >= 0; with 0 the adversarial term is left out and a training step is
    Keras' default one (a test holds them equal). Prediction, evaluation and the layers are
    the functional model's own; only train_step differs.
    """

    def __init__(self, *args, epsilon: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
        self.epsilon = float(epsilon)

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon  # the functional config's extra key goes to __init__
        return config

    # ------------------------------------------------------------------ the model in two halves

    def embed(self, token_ids, training=False):
        """(embedded <float>[batch, time, E], mask <bool>[batch, time]) of token_ids."""
        embedding = self.get_layer("embedding")
        return embedding(token_ids, training=training), embedding.compute_mask(token_ids)

    def read(self, embedded, mask, training=False):
        """logits <float32>[batch, 1] of an embedded sequence: the layers after the embedding,
        called as build_model connects them (a test holds read(embed(x)) equal to model(x))."""
        names = {layer.name for layer in self.layers}
        recurrent = self.get_layer(next(name for name in _RECURRENT if name in names))
        sequence = recurrent(embedded, mask=mask, training=training)
        pooled = self.get_layer("pooling")(sequence, mask=mask)
        pooled = self.get_layer("dropout")(pooled, training=training)
        return self.get_layer("logit")(pooled)

    def perturbation(self, embedded, mask, y, sample_weight=None, training=False):
        """r_adv <float>[batch, time, E] for the reviews `embedded` with labels y."""

        def clean_loss(e):
            y_pred = self.read(e, mask, training=training)
            return self._compute_loss(y=y, y_pred=y_pred, sample_weight=sample_weight), y_pred

        _, _, gradient = value_and_gradient(clean_loss, embedded)
        return adversarial_perturbation(gradient, mask, self.epsilon)

    def _training_losses(self, x, y, sample_weight):
        """(loss, y_pred) of a training batch: loss = L(e) + L(e + r_adv), unscaled (or L(e)
        alone with epsilon 0); y_pred the clean logits, which the metrics read.

        The clean loss is Keras' (compute_loss: the compiled loss with the sample weights,
        plus any layer losses); the adversarial term is the compiled loss alone, so layer
        losses (regularizers) are not counted twice.
        """
        embedded, mask = self.embed(x, training=True)

        def clean_loss(e):
            y_pred = self.read(e, mask, training=True)
            loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            # g is taken of the loss as the optimizer scales it (float16): no underflow. The
            # normalization of r_adv removes the scale again.
            return self.optimizer.scale_loss(loss), (loss, y_pred)

        if self.epsilon == 0:
            _, (loss, y_pred) = clean_loss(embedded)
            return loss, y_pred
        _, (loss, y_pred), gradient = value_and_gradient(clean_loss, embedded)
        r_adv = adversarial_perturbation(gradient, mask, self.epsilon)
        adversarial = self._compile_loss(
            y, self.read(embedded + r_adv, mask, training=True), sample_weight
        )
        return loss + adversarial, y_pred

    # ------------------------------------------------------------------ Keras' train_step

    def train_step(self, *args):
        """Keras' train_step of the backend (jax/trainer.py, tensorflow/trainer.py), the loss
        replaced by _training_losses: the same loss tracker, metrics (on the clean predictions),
        sample weights, loss scaling and optimizer update."""
        backend = keras.backend.backend()
        if backend == "jax":
            return self._jax_train_step(*args)
        if backend == "tensorflow":
            return self._tensorflow_train_step(*args)
        raise NotImplementedError(
            f"adversarial training runs on the TensorFlow and JAX backends, not {backend!r}"
        )

    def _tensorflow_train_step(self, data):
        import tensorflow as tf
        from keras.src.losses.loss import unscale_loss_for_distribution

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss, y_pred = self._training_losses(x, y, sample_weight)
            self._loss_tracker.update_state(
                unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(next(i for i in keras.tree.flatten(x) if i is not None))[0],
            )
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)

        def objective(trainable):
            # Keras' stateless pattern: the variables read these values, and what the step
            # assigns (the dropout seeds, loss metrics) is read back from the scope.
            mapping = [
                *zip(self.trainable_variables, trainable),
                *zip(self.non_trainable_variables, non_trainable),
                *zip(self.metrics_variables, metrics_variables),
                *zip(self.optimizer.variables, optimizer_variables),
            ]
            with keras.StatelessScope(state_mapping=mapping) as scope:
                loss, y_pred = self._training_losses(x, y, sample_weight)
                scaled = self.optimizer.scale_loss(loss)
            new_non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
            new_metrics = [scope.get_current_value(v) for v in self.metrics_variables]
            return scaled, (loss, y_pred, new_non_trainable, new_metrics)

        (_, aux), gradients = jax.value_and_grad(objective, has_aux=True)(trainable)
        loss, y_pred, non_trainable, metrics_variables = aux
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, gradients, trainable
        )
        logs, metrics_variables = self._update_metrics_variables(
            metrics_variables, loss, x, y, y_pred, sample_weight
        )
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)
