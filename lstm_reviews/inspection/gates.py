"""What the LSTM does as it reads a review: its gates, its cell state, its running verdict.

How. The run's model.keras is loaded as trained and never retrained. An inspection model is
built beside it: the same embedding layer, then RNN(the trained cell's twin with
return_gates=True, return_sequences=True) holding a copy of the trained recurrent weights.
The trained layer may be RNN(any of our cells, lstm_reviews.model.variants) or keras.layers.LSTM
(our LSTMCell's weight layout, so the copy needs no conversion), alone or inside
Bidirectional. Its outputs at token t are h_t, c_t and the gates i_t, f_t, o_t and candidate
c̃_t (see model.cell; for the GRU, c = h, f = z, i = 1 - z, o = 1: model.variants).

Bidirectional models: the gates shown are the forward direction's, the one that reads the
review in reading order; the backward direction reads it from the end.

Running prediction at token t: the trained model's P(positive) for the review cut after
token t, i.e. sigmoid(logit(dropout_off(pooling(lstm(tokens 1..t))))). For a forward-only
model this is the head applied to the states seen so far, logit(pool(h_1..h_t)). For a
bidirectional model the backward direction is run over the prefix 1..t as well (the model's
verdict as if the review ended at t). That takes T runs; the T prefixes go through the compiled
model as rows of one padded batch (256 rows per call at most): ~2 s for 600 tokens on 2 CPU
cores, where a loop over prefixes would take minutes.

Word statistics: for chosen words, the mean input-gate opening and cell-state change
‖c_t − c_{t−1}‖ at the steps where the word is read, over the test split (tokens matched by
vocabulary id, reviews truncated as in training). A limit draws that many test reviews at
random (seeded by the run's seed): the split lists all positive reviews first.

Rendering (lstm_reviews.inspection.render) and the command line (lstm_reviews.explain) are apart.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from lstm_reviews.config import DEFAULT_WORDS  # noqa: F401  (this module's default, named here)
from lstm_reviews.data import batches, imdb, text
from lstm_reviews.errors import UserError
from lstm_reviews.model.cell import split_gates
from lstm_reviews.model.variants import gates_twin
from lstm_reviews.rundir import Run

GATES = ("input_gate", "forget_gate", "output_gate")
# The running prediction runs the model on every prefix of a review: rows of at most
# PREFIX_BATCH prefixes and PREFIX_TOKENS padded tokens per call, so that the memory of one
# call stays bounded however long the review (its activations grow with rows x length).
PREFIX_BATCH = 256
PREFIX_TOKENS = 65_536


@dataclasses.dataclass
class Inspector:
    """The trained model and its gate-exposing twin."""

    model: keras.Model  # the trained model, for the running prediction
    gates_model: keras.Model  # ids <int32>[batch, time] -> <float32>[batch, time, 6 * units]
    units: int
    bidirectional: bool  # gates_model then shows the forward direction only


def forward_recurrent_layer(model: keras.Model):
    """The trained layer that reads in reading order, and whether the model is bidirectional.

    Returns (layer, bidirectional): layer is keras.layers.RNN(our LSTMCell) or
    keras.layers.LSTM; for a Bidirectional model, its forward half.
    """
    names = {layer.name for layer in model.layers}
    if "bidirectional_lstm" in names:
        return model.get_layer("bidirectional_lstm").forward_layer, True
    if "lstm" in names:
        return model.get_layer("lstm"), False
    raise UserError(f"model {model.name!r} has no layer named 'lstm' or 'bidirectional_lstm'")


def _check_standard_lstm(layer) -> None:
    """Our cells, or Keras' LSTM with sigmoid gates and tanh content: refuse anything else."""
    from lstm_reviews.inspection.ledger import check_cell

    if layer.go_backwards:
        raise UserError(f"layer {layer.name!r} reads backwards; expected a forward layer")
    try:
        check_cell(layer)
    except ValueError as error:
        raise UserError(str(error)) from None


def build_inspector(model: keras.Model) -> Inspector:
    """The inspection model: trained embedding -> RNN(the cell's gates_twin), trained weights.

    gates_model: ids <int32>[batch, time] -> <float32>[batch, time, 6 * units], the
    concatenation [h, c, input_gate, forget_gate, output_gate, candidate] of the forward
    direction at every step (split it with lstm_reviews.model.cell.split_gates).
    """
    layer, bidirectional = forward_recurrent_layer(model)
    _check_standard_lstm(layer)
    trained_cell = layer.cell
    cell = gates_twin(trained_cell)
    rnn = keras.layers.RNN(cell, return_sequences=True, name="lstm_gates")
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    # The trained embedding layer itself: its mask (ids != 0) reaches the RNN as in training.
    sequence = rnn(model.get_layer("embedding")(ids))
    # The same layout: keras.layers.LSTM's is our LSTMCell's; a variant's twin is its class.
    cell.set_weights(trained_cell.get_weights())
    gates_model = keras.Model(ids, sequence, name="lstm_gates")
    return Inspector(model, gates_model, trained_cell.units, bidirectional)


def token_statistics(parts: dict) -> dict:
    """Per-token summaries of split gates.

    parts: split_gates output as numpy, each <float32>[..., time, units].
    Returns <float32>[..., time] arrays: {gate}_mean (mean over units), {gate}_open (share of
    units above 0.5) for input_gate, forget_gate, output_gate; cell_change ‖c_t − c_{t−1}‖₂
    with c_0 = 0 (the RNN's initial state); write ‖i_t ⊙ c̃_t‖₂, the new content alone
    (c_t − c_{t−1} = i_t ⊙ c̃_t − (1 − f_t) ⊙ c_{t−1} also holds the forgetting).
    """
    stats = {}
    for gate in GATES:
        stats[f"{gate}_mean"] = parts[gate].mean(axis=-1)
        stats[f"{gate}_open"] = (parts[gate] > 0.5).mean(axis=-1, dtype=np.float32)
    c = parts["c"]
    previous = np.concatenate([np.zeros_like(c[..., :1, :]), c[..., :-1, :]], axis=-2)
    stats["cell_change"] = np.linalg.norm(c - previous, axis=-1)
    stats["write"] = np.linalg.norm(parts["input_gate"] * parts["candidate"], axis=-1)
    return stats


def _gates(inspector: Inspector, ids: np.ndarray) -> dict:
    """ids <int32>[batch, time] -> split gates as numpy, each <float32>[batch, time, units]."""
    outputs = inspector.gates_model.predict_on_batch(ids)
    return {
        name: ops.convert_to_numpy(part)
        for name, part in split_gates(outputs, inspector.units).items()
    }


def running_logits(
    model: keras.Model,
    ids: np.ndarray,
    prefix_batch: int = PREFIX_BATCH,
    prefix_tokens: int = PREFIX_TOKENS,
):
    """The model's logit for every prefix of one review: <float32>[time].

    ids: <int32>[time]. Entry t is model(ids[:t + 1]) with dropout off: the verdict as if the
    review ended at token t. The prefixes go through as rows of a lower-triangular, 0-padded
    id matrix (the embedding masks the padding), at most prefix_batch rows and about
    prefix_tokens padded tokens per call.
    """
    ids = np.asarray(ids, dtype=np.int32)
    logits = []
    start = 0
    while start < len(ids):
        longest = min(start + prefix_batch, len(ids))
        stop = min(start + max(1, min(prefix_batch, prefix_tokens // longest)), len(ids))
        # Rows start..stop-1 end by column stop-1: the columns after it are padding only.
        ends = np.arange(start, stop)[:, None]  # row r: the prefix that ends at token r
        rows = np.where(np.arange(stop) <= ends, ids[:stop], 0)
        logits.append(np.asarray(model.predict_on_batch(rows)).reshape(-1))
        start = stop
    return np.concatenate(logits).astype(np.float32)


def gate_trace(inspector: Inspector, ids) -> dict:
    """Everything the explainer prints about one review, as numpy arrays.

    ids: <int32>[time], one review's token ids, no padding (time >= 1).
    Returns, for the forward direction:
        h, c, input_gate, forget_gate, output_gate, candidate: <float32>[time, units]
        input_gate_mean, forget_gate_mean, output_gate_mean: <float32>[time] mean over units
        input_gate_open, forget_gate_open, output_gate_open: <float32>[time] share of units > 0.5
        cell_change: <float32>[time] ‖c_t − c_{t−1}‖₂ (c_0 = 0)
        write: <float32>[time] ‖i_t ⊙ c̃_t‖₂
        logit, probability: <float32>[time] running prediction (see running_logits)
    """
    ids = np.asarray(ids, dtype=np.int32).reshape(-1)
    if ids.size == 0:
        raise UserError("nothing to explain: the review has no tokens")
    parts = {name: value[0] for name, value in _gates(inspector, ids[None, :]).items()}
    trace = dict(parts)
    trace.update(token_statistics(parts))
    trace["logit"] = running_logits(inspector.model, ids)
    trace["probability"] = (1.0 / (1.0 + np.exp(-trace["logit"]))).astype(np.float32)
    return trace


def word_statistics(inspector: Inspector, reviews, word_ids: dict, batch_size: int = 64) -> dict:
    """Mean gate behaviour at the steps where each word is read.

    reviews: list of <int32>[time_i] id arrays (no padding, already truncated).
    word_ids: {word: vocabulary id}. Returns {word: {...}} plus the key None for all tokens,
    each {"count": occurrences, "reviews": reviews containing it, "input_gate_mean",
    "input_gate_open", "forget_gate_mean", "output_gate_mean", "cell_change", "write":
    means over the occurrences (None when count is 0)}.
    """
    keys = (
        "input_gate_mean",
        "input_gate_open",
        "forget_gate_mean",
        "output_gate_mean",
        "cell_change",
        "write",
    )
    targets = dict(word_ids)
    targets[None] = None  # every real token: the baseline
    sums = {word: dict.fromkeys(keys, 0.0) for word in targets}
    counts = dict.fromkeys(targets, 0)
    review_counts = dict.fromkeys(targets, 0)
    # Similar lengths together (less padding to run through the LSTM), lengths rounded up to
    # a multiple of 16: a bounded number of shapes to compile.
    reviews = [np.asarray(review, dtype=np.int32).reshape(-1) for review in reviews]
    for ids, _ in batches.by_length(reviews, batch_size):
        stats = token_statistics(_gates(inspector, ids))
        for word, word_id in targets.items():
            hits = ids != 0 if word_id is None else ids == word_id
            counts[word] += int(hits.sum())
            review_counts[word] += int(hits.any(axis=1).sum())
            for key in keys:
                sums[word][key] += float(stats[key][hits].astype(np.float64).sum())
    return {
        word: {
            "count": counts[word],
            "reviews": review_counts[word],
            **{key: (sums[word][key] / counts[word] if counts[word] else None) for key in keys},
        }
        for word in targets
    }


def word_vocabulary_ids(vocabulary: list, words) -> dict:
    """{word: id, or None when the word is not one in-vocabulary token after standardization}."""
    result = {}
    encoded = text.encode(text.vectorizer_from_vocabulary(vocabulary), list(words))
    for word, ids in zip(words, encoded):
        result[word] = int(ids[0]) if len(ids) == 1 and ids[0] > 1 else None
    return result


def direction_note(inspector: Inspector) -> str:
    if inspector.bidirectional:
        return (
            "bidirectional model: gates of the FORWARD direction (reading order); the running "
            "prediction runs both directions over tokens 1..t"
        )
    return "forward model: running prediction = logit(pool(h_1..h_t))"


def load_test_reviews(run: Run, data=None, limit=None) -> list:
    """The test split's reviews as id arrays, encoded and truncated as in training.

    data: another path to the reviews than the run's config.data (e.g. a run trained
    elsewhere). limit: a seeded random sample of that many reviews.
    """
    config = run.config if data is None else dataclasses.replace(run.config, data=data)
    texts = imdb.load_imdb(config).test.texts
    if limit is not None and limit < len(texts):
        # A seeded sample, not the first N: the split may list all positives first.
        chosen = np.random.default_rng(config.seed).choice(len(texts), size=limit, replace=False)
        texts = [texts[k] for k in sorted(chosen)]
    return run.encode(texts)


def word_report(
    run: Run, inspector: Inspector, reviews: list, words=DEFAULT_WORDS, batch_size: int = 64
) -> dict:
    """Gate statistics of `words` over `reviews` (id arrays), as the --words report prints them.

    Returns {"reviews": n, "direction": "forward", "words": [{"word", "id", "count", ...}],
    "all_tokens": {...}}; the per-word keys are word_statistics'.
    """
    word_ids = word_vocabulary_ids(run.vocabulary, words)
    known = {word: word_id for word, word_id in word_ids.items() if word_id is not None}
    stats = word_statistics(inspector, reviews, known, batch_size=batch_size)
    return {
        "reviews": len(reviews),
        "direction": "forward",
        "words": [
            {"word": word, "id": word_ids[word], **stats.get(word, {"count": 0, "reviews": 0})}
            for word in words
        ],
        "all_tokens": {"id": None, **stats[None]},
    }


def ledger_word_report(
    run: Run,
    reviews: list,
    words=DEFAULT_WORDS,
    batch_size: int = 64,
    top: int = 30,
    min_count: int = 50,
) -> dict:
    """The memory ledger by word over `reviews` (id arrays): inspection.ledger.word_ledger for
    `words`, every token, and the `top` words each way by mean share A (seen >= min_count
    times), found from the data.

    Returns JSON-ready {"reviews", "words": [{"word", "id", "count", "mean_A", "mean_A_ci",
    "mean_abs_A", "mean_abs_A_ci", "mean_read", "mean_retention", "half_life_median",
    "half_life_censored", "forward": {...}, "backward": {...}, ...}], "all_tokens": {...},
    "top_positive": [{"word", "id", "count", "mean_A", "mean_abs_A"}], "top_negative": [...]}.
    """
    from lstm_reviews.inspection import ledger

    word_ids = word_vocabulary_ids(run.vocabulary, words)
    known = {word: word_id for word, word_id in word_ids.items() if word_id is not None}
    report = ledger.word_ledger(run.model, reviews, known, batch_size=batch_size)
    by_id = report["by_id"]
    chosen = ledger.top_words(report, n=top, min_count=min_count)

    def listed(ids):
        return [
            {
                "word": run.vocabulary[k],
                "id": int(k),
                "count": int(by_id["count"][k]),
                "mean_A": float(by_id["mean_A"][k]),
                "mean_abs_A": float(by_id["mean_abs_A"][k]),
            }
            for k in ids
        ]

    empty = {"count": 0, "reviews": 0}
    return {
        "reviews": len(reviews),
        "words": [
            {"word": word, "id": word_ids[word], **report["words"].get(word, empty)}
            for word in words
        ],
        "all_tokens": report["all"],
        "top_positive": listed(chosen["positive"]),
        "top_negative": listed(chosen["negative"]),
        "min_count": min_count,
    }
