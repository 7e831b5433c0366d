"""What several test modules share (not a test module; fixtures live in conftest.py): the tiny
aclImdb tree, the one tiny model configuration, a tiny run directory, and the cell tests'
reference maths."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from lstm_reviews.config import Config
from lstm_reviews.model.cell import GATE_NAMES
from lstm_reviews.model.classifier import build_model, compile_model
from lstm_reviews.rundir import RunDir

BACKEND = keras.backend.backend()

# ---------------------------------------------------------------- the tiny aclImdb tree

POSITIVE_WORDS = ["amazing", "wonderful", "great", "brilliant", "loved", "superb"]


NEGATIVE_WORDS = ["awful", "terrible", "boring", "worst", "hated", "dull"]


FILLER_WORDS = [
    "this",
    "movie",
    "film",
    "the",
    "a",
    "plot",
    "actors",
    "give",
    "all",
    "should",
    "was",
    "and",
    "it",
    "story",
    "of",
    "scene",
]


def _review(rng: random.Random, sentiment_words: list[str]) -> str:
    words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(6, 30))]
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(sentiment_words))
    text = " ".join(words).capitalize() + "."
    # Real reviews carry HTML line breaks; the standardizer must remove them.
    return text.replace(" the ", " the<br /><br />", 1)


def write_tiny_imdb(
    root: Path,
    per_class_train: int = 40,
    per_class_test: int = 20,
    unlabeled: int = 10,
    reviews_per_movie: int = 4,
    seed: int = 0,
) -> Path:
    """Writes root/aclImdb in the archive's layout and returns that directory.

    Review k of a split/class belongs to movie k // reviews_per_movie, as listed in
    urls_<class>.txt (line k = the movie of review id k), like the real archive.
    """
    rng = random.Random(seed)
    top = root / "aclImdb"
    layout = {
        "train": {"pos": per_class_train, "neg": per_class_train, "unsup": unlabeled},
        "test": {"pos": per_class_test, "neg": per_class_test},
    }
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = top / split / name
            folder.mkdir(parents=True)
            urls = []
            for review_id in range(count):
                if name == "pos":
                    rating, text = rng.randint(7, 10), _review(rng, POSITIVE_WORDS)
                elif name == "neg":
                    rating, text = rng.randint(1, 4), _review(rng, NEGATIVE_WORDS)
                else:
                    rating, text = 0, _review(rng, POSITIVE_WORDS + NEGATIVE_WORDS)
                (folder / f"{review_id}_{rating}.txt").write_text(text, encoding="utf-8")
                movie = f"tt{split == 'test'}{name}{review_id // reviews_per_movie:05d}"
                urls.append(f"http://www.imdb.com/title/{movie}/usercomments")
            (top / split / f"urls_{name}.txt").write_text("\n".join(urls) + "\n")
    (top / "README").write_text("Tiny aclImdb fixture for tests.\n")
    (top / "imdb.vocab").write_text(
        "\n".join(POSITIVE_WORDS + NEGATIVE_WORDS + FILLER_WORDS) + "\n"
    )
    return top


# ---------------------------------------------------------------- the one tiny model

# The plain model (adversarial training, the default, costs two passes a step and has its own
# tests: tests/test_adversarial.py, tests/test_recipe.py). Tests override what they exercise.
TINY = dict(
    vocab_size=50, max_length=40, embedding_dim=8, units=4, batch_size=8, adversarial_epsilon=0.0
)


def tiny_flags() -> list[str]:
    """TINY as command-line options, adversarial_epsilon left to the caller."""
    return [
        option
        for name, value in TINY.items()
        if name != "adversarial_epsilon"
        for option in ("--" + name.replace("_", "-"), str(value))
    ]


TINY_ARGS = [*tiny_flags(), "--no-export"]


def tiny_argv(
    tiny_imdb: Path, tmp_path: Path, *extra: str, run: str = "run", plain: bool = True
) -> list[str]:
    """plain: without adversarial training (the default, twice the cost of a step), which has
    its own tests (tests/test_adversarial.py; the default recipe: tests/test_recipe.py)."""
    return [
        *(["--adversarial-epsilon", "0"] if plain else []),
        *TINY_ARGS,
        "--data",
        str(tiny_imdb),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output-dir",
        str(tmp_path / run),
        *extra,
    ]


class Interrupt(Exception):
    """Stands in for a kill in the middle of an epoch."""


class InterruptAfter(keras.callbacks.Callback):
    def __init__(self, epoch: int, batches: int):
        super().__init__()
        self.epoch, self.batches, self.current = epoch, batches, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch + 1 == self.batches:
            raise Interrupt


# ---------------------------------------------------------------- a tiny run directory

TRAIN_TEXTS = [
    "A wonderful film, the actors were brilliant and I loved the story.",
    "Awful plot. The worst movie of the year, boring and dull.",
    "Great scenes, superb music: this movie is amazing!",
    "I hated it. Terrible acting and a dull, boring script.",
    "The story of the film was fine, the ending was great.",
    "Nothing happens. Worst ending ever?",
]
# Small enough for 2 shared cores, but the whole model: embedding, BiLSTM of our cell, pooling.
# Pooling "max": the weights below were scaled for it, so reviews get clearly different scores.
# eval_max_length 12: a long review is cut when served (whole reviews: tests/test_recipe.py).
SERVING_TINY = dict(
    vocab_size=TINY["vocab_size"],
    max_length=12,
    eval_max_length=12,
    embedding_dim=TINY["embedding_dim"],
    units=TINY["units"],
    dropout=0.0,
    pooling="max",
)


def write_run_dir(run_dir: Path, **overrides) -> Config:
    """config.json, vocabulary.txt and model.keras, as training leaves them; returns the Config.

    The weights are random but large, so that different reviews get clearly different
    probabilities (an untrained model says ~0.5 to everything, which would hide mistakes).
    """
    from lstm_reviews.data.text import build_vectorizer

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = Config(**{**SERVING_TINY, "output_dir": str(run_dir), **overrides})
    keras.utils.set_random_seed(config.seed)
    vectorizer = build_vectorizer(TRAIN_TEXTS, config.vocab_size)
    vocabulary = vectorizer.get_vocabulary()
    model = build_model(config, len(vocabulary))
    rng = np.random.default_rng(config.seed)
    model.set_weights(
        [rng.normal(0.0, 1.5, size=w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    RunDir(run_dir).write_config(config)
    (run_dir / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    model.save(run_dir / "model.keras")
    return config


def keras_probabilities(run_dir: Path, texts: list[str]) -> np.ndarray:
    """The reference: the run's Keras model on evaluation-style ids: each review's last
    config.eval_max_length tokens (text.keep_last_tokens), or all of them.

    texts: N reviews -> <float32>[N] probabilities of the positive class.
    """
    from lstm_reviews.data.text import keep_last_tokens, vectorizer_from_vocabulary

    run_dir = Path(run_dir)
    config = RunDir(run_dir).read_config()
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    vectorizer = vectorizer_from_vocabulary(RunDir(run_dir).read_vocabulary())
    length = config.eval_max_length
    rows = [
        keep_last_tokens(np.asarray(ids), length) if length else np.asarray(ids, np.int64)
        for ids in vectorizer(texts).to_list()
    ]
    ids = np.zeros((len(rows), max(1, max(len(row) for row in rows))), np.int32)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
    logits = np.asarray(model(ids, training=False))[:, 0]
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


# ---------------------------------------------------------------- the cell tests' maths

TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
BATCH, TIME, INPUT_DIM, UNITS = 4, 7, 5, 6


@contextlib.contextmanager
def _precision(dtype):
    """JAX truncates float64 to float32 unless x64 is on; switch it on for this block only."""
    if dtype == "float64" and BACKEND == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


def _randomize(layer, seed):
    """Gives every weight of `layer` fresh N(0, 0.5^2) values; returns them."""
    rng = np.random.default_rng(seed)
    weights = [0.5 * rng.standard_normal(w.shape) for w in layer.get_weights()]
    layer.set_weights(weights)
    return weights


def _inputs(seed, dtype, shape=(BATCH, TIME, INPUT_DIM)):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _numpy(outputs):
    if isinstance(outputs, (list, tuple)):
        return [ops.convert_to_numpy(o) for o in outputs]
    return [ops.convert_to_numpy(outputs)]


def _max_diff(a, b):
    a, b = _numpy(a), _numpy(b)
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def _gradients(layer, x, upstream):
    """Gradients of sum(layer(x) * upstream) w.r.t. x and each trainable weight, as NumPy.

    x: <float>[batch, time, input_dim]; upstream: the layer output's shape. Returns
    [d/dx, d/dkernel, d/drecurrent_kernel, d/dbias] (weights in trainable_variables order).
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * upstream)
        grads = tape.gradient(loss, [x, *layer.trainable_variables])
    elif BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss(x, trainable):
            outputs, _ = layer.stateless_call(trainable, non_trainable, x)
            return jnp.sum(outputs * upstream)

        grad_x, grad_weights = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x), trainable)
        grads = [grad_x, *grad_weights]
    elif BACKEND == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        loss = torch.sum(layer(x) * torch.as_tensor(upstream))
        grads = torch.autograd.grad(loss, [x, *(v.value for v in layer.trainable_variables)])
    else:
        raise NotImplementedError(f"no gradient helper for the {BACKEND!r} backend")
    return [ops.convert_to_numpy(g) for g in grads]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_lstm(x, kernel, recurrent_kernel, bias):
    """The six LSTM equations in float64, one gate at a time, looping over time.

    x: <float64>[batch, time, input_dim]; kernel [input_dim, 4*units],
    recurrent_kernel [units, 4*units], bias [4*units], gate blocks in the order i, f, c, o.
    Returns a dict GATE_NAMES -> <float64>[batch, time, units].
    """
    units = recurrent_kernel.shape[0]
    W_i, W_f, W_c, W_o = (kernel[:, k * units : (k + 1) * units] for k in range(4))
    U_i, U_f, U_c, U_o = (recurrent_kernel[:, k * units : (k + 1) * units] for k in range(4))
    b_i, b_f, b_c, b_o = (bias[k * units : (k + 1) * units] for k in range(4))
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    steps = {name: [] for name in GATE_NAMES}
    for t in range(x.shape[1]):
        x_t = x[:, t, :]
        i = _sigmoid(x_t @ W_i + h @ U_i + b_i)
        f = _sigmoid(x_t @ W_f + h @ U_f + b_f)
        c_tilde = np.tanh(x_t @ W_c + h @ U_c + b_c)
        o = _sigmoid(x_t @ W_o + h @ U_o + b_o)
        c = f * c + i * c_tilde
        h = o * np.tanh(c)
        for name, value in zip(GATE_NAMES, (h, c, i, f, o, c_tilde)):
            steps[name].append(value)
    return {name: np.stack(values, axis=1) for name, values in steps.items()}


def _float64_error():
    """How far this backend's float64 ops.tanh and ops.matmul are from NumPy's.

    Keras 3.15 under JAX computes ops.tanh of float64 in float32, and under PyTorch
    ops.matmul (its type promotion maps 64-bit to 32-bit types on non-TensorFlow backends),
    so there the cells can only match a float64 reference to float32 precision.
    """
    with _precision("float64"):
        z = np.linspace(-3, 3, 101)
        tanh = ops.convert_to_numpy(ops.tanh(z)) - np.tanh(z)
        a = np.random.default_rng(0).standard_normal((4, 5))
        product = ops.convert_to_numpy(ops.matmul(ops.convert_to_tensor(a), a.T)) - a @ a.T
        return float(max(np.max(np.abs(tanh)), np.max(np.abs(product))))


# The dtype fixture's two values, float32 alone rerun under PyTorch (tests/test_backends.py):
# there Keras' LSTM and GRU run torch's own float64 kernels while every cell's ops.matmul
# computes float64 in float32 (_float64_error).
FLOAT32_UNDER_TORCH = pytest.mark.parametrize(
    "dtype", [pytest.param("float32", marks=pytest.mark.torch_rerun), "float64"], indirect=True
)


# ---------------------------------------------------------------- inspection's tiny models

EXPLAIN_VOCABULARY = ["", "[UNK]"] + POSITIVE_WORDS + NEGATIVE_WORDS + FILLER_WORDS + ["don't"]
EXPLAIN_UNITS = 4
LEDGER_VOCAB, LEDGER_EMBEDDING, LEDGER_UNITS = 12, 3, 4


def explain_config(bidirectional: bool) -> Config:
    return Config(
        vocab_size=len(EXPLAIN_VOCABULARY),
        embedding_dim=6,
        units=EXPLAIN_UNITS,
        bidirectional=bidirectional,
        dropout=0.2,
        max_length=50,
        batch_size=8,
        seed=3,
        pooling="max",
        # A few plain steps: the tiny model's weights need only move off their initial values.
        adversarial_epsilon=0.0,
    )  # test_inspection_states_equal_trained_rnn recomputes max pooling


def with_keras_lstm(model: keras.Model) -> keras.Model:
    """The same model with keras.layers.LSTM where it has RNN(our LSTMCell)."""

    def clone(layer):
        if layer.name == "lstm":
            return keras.layers.LSTM(EXPLAIN_UNITS, return_sequences=True, name="lstm")
        if layer.name == "bidirectional_lstm":
            return keras.layers.Bidirectional(
                keras.layers.LSTM(EXPLAIN_UNITS, return_sequences=True, name="lstm"),
                name="bidirectional_lstm",
            )
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


def trained_explain_model(bidirectional: bool, keras_lstm: bool = False) -> keras.Model:
    """A tiny model after a few optimizer steps, so no weight is at its initial value."""
    keras.utils.set_random_seed(0)
    config = explain_config(bidirectional)
    model = build_model(config, len(EXPLAIN_VOCABULARY))
    if keras_lstm:
        model = with_keras_lstm(model)
    compile_model(model, config)
    model.jit_compile = False  # XLA-compiling an RNN for three steps costs more than the steps
    rng = np.random.default_rng(0)
    for _ in range(3):
        ids = rng.integers(2, len(EXPLAIN_VOCABULARY), size=(8, 12)).astype(np.int32)
        ids[:4, 8:] = 0  # some right padding, as in real batches
        model.train_on_batch(ids, rng.integers(0, 2, size=(8,)).astype(np.float32))
    return model


@contextlib.contextmanager
def floatx(dtype):
    """Layers made inside compute in dtype. Keras caches its global dtype policy on first use,
    so setting floatx alone would not reach layers made after any other layer."""
    previous_floatx, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)
        keras.config.set_floatx(previous_floatx)


def random_ledger_model(
    bidirectional, pooling, dtype="float32", seed=0, keras_lstm=False, units=LEDGER_UNITS
):
    """build_model with N(0, 0.5²) weights; in float64 the (float32) logit layer too is float64."""
    config = Config(
        units=units,
        embedding_dim=LEDGER_EMBEDDING,
        bidirectional=bidirectional,
        pooling=pooling,
        seed=seed,
    )

    def clone(layer):
        config = layer.get_config()
        if layer.name == "logit":
            return keras.layers.Dense.from_config({**config, "dtype": dtype})
        if layer.name in ("lstm", "bidirectional_lstm") and keras_lstm:
            rnn = keras.layers.LSTM(units, return_sequences=True, name="lstm", dtype=dtype)
            return (
                keras.layers.Bidirectional(rnn, name=layer.name, dtype=dtype)
                if bidirectional
                else rnn
            )
        return layer.__class__.from_config(config)

    with floatx(dtype):
        keras.utils.set_random_seed(seed)
        model = build_model(config, LEDGER_VOCAB)
        if dtype != "float32" or keras_lstm:
            model = keras.models.clone_model(model, clone_function=clone)
        rng = np.random.default_rng(seed + 100)
        model.set_weights([0.5 * rng.standard_normal(w.shape) for w in model.get_weights()])
    return model


def saved_test_accuracy(run_dir: Path) -> float:
    """The accuracy of the run's model.keras on its test split, recomputed here in one padded
    batch (not through the training code's bucketed evaluation): what metrics.json must say."""
    from lstm_reviews.data.text import keep_last_tokens, pad
    from lstm_reviews.data.tokens import prepare_tokens

    run_dir = Path(run_dir)
    config = RunDir(run_dir).read_config()
    test = prepare_tokens(config).test
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    length = config.eval_max_length
    ids = pad([keep_last_tokens(review, length) if length else review for review in test.ids])
    logits = keras.ops.convert_to_numpy(model.predict_on_batch(ids))[:, 0].astype(np.float64)
    return float(np.mean((logits > 0) == test.labels))
