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

Virtual adversarial training (`--vat-epsilon`, Miyato et al.'s best: it needs no labels, so
it reads the 50,000 unlabeled reviews). Each step's batch carries vat_rows unlabeled reviews
after the labeled ones (lstm_reviews.data.batches.UnlabeledRows); on them:

    p          <float32>[U, 1]               the clean logits, a constant
    d          <float>[U, time, E]            ξ · a random direction, normalized per review
    g          <float>[U, time, E]            ∂KL(p ‖ f(e + d))/∂d: one power iteration
    r_vadv     <float>[U, time, E]            ε_vat · g_b / ‖g_b‖₂ per review, a constant
    loss       + mean over the reviews of KL(p ‖ f(e + r_vadv))

r_vadv is the direction in which the classifier's verdict moves most (to second order), so
the term makes it smooth around every review it may meet, labeled or not. The verdicts it
compares are the evaluated model's (dropout off): a dropout mask drawn anew for each of the
three reads would move the verdict far more than ξ does, and g would measure the masks.

AdversarialClassifier is build_model's keras.Model with this train_step, for the TensorFlow
backend (GradientTape), the JAX backend (jax.value_and_grad in Keras' stateless step) and the
PyTorch backend (torch.autograd.grad, then Keras' backward pass and update). It
is used only when ε > 0 or ε_vat > 0, so the default model is the plain functional one; it is
registered for serialization, so a run's model.keras loads and exports as before.
"""

from __future__ import annotations

import keras
from keras import ops

from lstm_reviews.model.layers import recurrent_layer

# ξ, the finite difference's step of the power iteration (Miyato et al.'s code: 0.1 against
# their ε = 5; ours is ε_vat / 50 likewise, see virtual_perturbation).
_XI_PER_EPSILON = 0.02


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
    jax.value_and_grad under JAX, a GradientTape under TensorFlow, torch.autograd.grad under
    PyTorch. Inside a surrounding tape, jax.grad or torch graph, value and aux stay
    differentiable for the outer one."""
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
    if backend == "torch":
        import torch

        with torch.enable_grad():  # Keras evaluates under no_grad; the gradient is still due
            if not x.requires_grad:  # a constant (a detached embedding, the VAT's noise)
                x = x.detach().requires_grad_()
            value, aux = function(x)
            # retain_graph: the outer backward pass runs through value's graph once more.
            (gradient,) = torch.autograd.grad(value, x, retain_graph=True)
        return value, aux, gradient
    raise NotImplementedError(
        f"adversarial training runs on the TensorFlow, JAX and PyTorch backends, not {backend!r}"
    )


def binary_kl(p_logits, q_logits):
    """KL(p ‖ q) <float32>[batch] of the verdicts with logits p_logits, q_logits <float>[batch,
    1]: Σ over {positive, negative} of p · (log p − log q). 0 where they are equal."""
    p_logits = ops.cast(p_logits, "float32")[:, 0]
    q_logits = ops.cast(q_logits, "float32")[:, 0]
    p = ops.sigmoid(p_logits)
    positive = ops.log_sigmoid(p_logits) - ops.log_sigmoid(q_logits)
    negative = ops.log_sigmoid(-p_logits) - ops.log_sigmoid(-q_logits)
    return p * positive + (1.0 - p) * negative


@keras.saving.register_keras_serializable(package="lstm_reviews")
class AdversarialClassifier(keras.Model):
    """build_model's functional model, trained on L(e) + L(e + r_adv) (module docstring).

    Construct it as a functional model: AdversarialClassifier(token_ids, logits, name=...,
    epsilon=ε). epsilon >= 0; with 0 the adversarial term is left out and a training step is
    Keras' default one (a test holds them equal). vat_rows > 0 with vat_epsilon > 0: a
    training batch's last vat_rows rows are unlabeled reviews, read by the virtual
    adversarial term alone (their labels and weights are ignored). Prediction, evaluation and
    the layers are the functional model's own; only train_step differs.
    """

    def __init__(
        self, *args, epsilon: float = 1.0, vat_epsilon: float = 0.0, vat_rows: int = 0, **kwargs
    ):
        super().__init__(*args, **kwargs)
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
        if not vat_epsilon >= 0 or vat_rows < 0 or (vat_epsilon > 0) != (vat_rows > 0):
            raise ValueError(
                f"vat_epsilon must be >= 0 and vat_rows > 0 exactly when it is > 0, got "
                f"{vat_epsilon!r} and {vat_rows!r}"
            )
        self.epsilon = float(epsilon)
        self.vat_epsilon, self.vat_rows = float(vat_epsilon), int(vat_rows)
        if self.vat_rows:
            # The power iteration's random start. Seeded from Keras' global seed (the run's
            # --seed); its state is in model.variables, so a resumed run draws on as before.
            self._vat_seed = keras.random.SeedGenerator(name="vat_seed")

    def get_config(self):
        config = super().get_config()
        # The functional config's extra keys go to __init__.
        config.update(epsilon=self.epsilon, vat_epsilon=self.vat_epsilon, vat_rows=self.vat_rows)
        return config

    # ------------------------------------------------------------------ the model in two halves

    def embed(self, token_ids, training=False):
        """(embedded <float>[batch, time, E], mask <bool>[batch, time]) of token_ids."""
        embedding = self.get_layer("embedding")
        return embedding(token_ids, training=training), embedding.compute_mask(token_ids)

    def read(self, embedded, mask, training=False):
        """logits <float32>[batch, 1] of an embedded sequence: the layers after the embedding,
        called as build_model connects them (a test holds read(embed(x)) equal to model(x))."""
        sequence = recurrent_layer(self)(embedded, mask=mask, training=training)
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

    def virtual_perturbation(self, embedded, mask, clean_logits):
        """r_vadv <float>[batch, time, E] of the reviews `embedded`, whose clean logits are
        clean_logits <float32>[batch, 1] (module docstring): ε_vat along the gradient of the
        verdict's KL divergence at ξ in a random direction, per review; 0 at padding."""
        noise = keras.random.normal(ops.shape(embedded), seed=self._vat_seed)
        start = adversarial_perturbation(noise, mask, _XI_PER_EPSILON * self.vat_epsilon)

        def divergence(d):
            logits = self.read(embedded + d, mask, training=False)
            # Scaled as the loss (float16): a divergence of ~ξ² would underflow its gradient.
            return self.optimizer.scale_loss(ops.sum(binary_kl(clean_logits, logits))), logits

        _, _, gradient = value_and_gradient(divergence, ops.cast(start, embedded.dtype))
        return adversarial_perturbation(gradient, mask, self.vat_epsilon)

    def virtual_adversarial_loss(self, unlabeled_ids):
        """Mean over the reviews of unlabeled_ids <int>[U, time] (rows without a token left
        out) of KL(f(e) ‖ f(e + r_vadv)), differentiable in the weights but for f(e)."""
        embedded, mask = self.embed(unlabeled_ids, training=True)
        clean = ops.stop_gradient(self.read(embedded, mask, training=False))
        r_vadv = self.virtual_perturbation(ops.stop_gradient(embedded), mask, clean)
        divergence = binary_kl(clean, self.read(embedded + r_vadv, mask, training=False))
        has_tokens = ops.cast(ops.any(mask, axis=1), "float32")
        return ops.sum(divergence * has_tokens) / ops.maximum(ops.sum(has_tokens), 1.0)

    def split_unlabeled(self, x, y, sample_weight):
        """(x, y, sample_weight) of the labeled rows, and the unlabeled ids <int>[vat_rows,
        time] (None without virtual adversarial training): the batch's last vat_rows rows."""
        if not self.vat_rows:
            return x, y, sample_weight, None
        rows = self.vat_rows
        if sample_weight is not None:
            sample_weight = sample_weight[:-rows]
        return x[:-rows], y[:-rows], sample_weight, x[-rows:]

    def _training_losses(self, x, y, sample_weight, unlabeled=None):
        """(loss, y_pred) of a training batch: loss = L(e) + L(e + r_adv), unscaled (or L(e)
        alone with epsilon 0), + the virtual adversarial term of `unlabeled` <int>[U, time] if
        given; y_pred the clean logits, which the metrics read.

        The clean loss is Keras' (compute_loss: the compiled loss with the sample weights,
        plus any layer losses); the adversarial term is the compiled loss alone, so layer
        losses (regularizers) are not counted twice.
        """
        loss, y_pred = self._labeled_losses(x, y, sample_weight)
        if unlabeled is not None:
            loss = loss + self.virtual_adversarial_loss(unlabeled)
        return loss, y_pred

    def _labeled_losses(self, x, y, sample_weight):
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
        if backend == "torch":
            return self._torch_train_step(*args)
        raise NotImplementedError(
            f"adversarial training runs on the TensorFlow, JAX and PyTorch backends, not "
            f"{backend!r}"
        )

    def _tensorflow_train_step(self, data):
        import tensorflow as tf
        from keras.src.losses.loss import unscale_loss_for_distribution

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, sample_weight, unlabeled = self.split_unlabeled(x, y, sample_weight)
        with tf.GradientTape() as tape:
            loss, y_pred = self._training_losses(x, y, sample_weight, unlabeled)
            self._loss_tracker.update_state(
                unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(next(i for i in keras.tree.flatten(x) if i is not None))[0],
            )
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _torch_train_step(self, data):
        import torch

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, sample_weight, unlabeled = self.split_unlabeled(x, y, sample_weight)
        self.zero_grad()  # torch adds up gradients: clear the last step's
        loss, y_pred = self._training_losses(x, y, sample_weight, unlabeled)
        self._loss_tracker.update_state(
            loss, sample_weight=next(i for i in keras.tree.flatten(x) if i is not None).shape[0]
        )
        self.optimizer.scale_loss(loss).backward()
        trainable = self.trainable_weights[:]
        with torch.no_grad():
            self.optimizer.apply([variable.value.grad for variable in trainable], trainable)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, sample_weight, unlabeled = self.split_unlabeled(x, y, sample_weight)

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
                loss, y_pred = self._training_losses(x, y, sample_weight, unlabeled)
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
