"""What the LSTM does as it reads a review: its gates, its cell state, its running verdict.

How. The run's model.keras is loaded as trained and never retrained. The gates come from
inspection.gate_model's gate model, the one the memory ledger reads too: its outputs at token t
are h_t, c_t and the gates i_t, f_t, o_t and candidate c̃_t (see model.cell; for the GRU,
c = h, f = z, i = 1 - z, o = 1: model.variants).

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
‖c_t − c_{t−1}‖ at the steps where the word is read (tokens matched by vocabulary id);
inspection.word_report runs them over the test split with the memory ledger's, in one pass.

Tables, pictures and pages (inspection.tables, .gate_views, .ledger_figure, .ledger_page) and
the command line (lstm_reviews.explain) are apart.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from lstm_reviews.errors import UserError
from lstm_reviews.inspection.gate_model import (
    as_batch,
    build_gate_model,
    directions,
    predict_gates,
    review_batches,
)
from lstm_reviews.model.cell import split_gates

GATES = ("input_gate", "forget_gate", "output_gate")
# The running prediction runs the model on every prefix of a review: rows of at most
# PREFIX_BATCH prefixes and PREFIX_TOKENS padded tokens per call, so that the memory of one
# call stays bounded however long the review (its activations grow with rows x length).
PREFIX_BATCH = 256
PREFIX_TOKENS = 65_536
# word_statistics' means, per word.
WORD_STATISTICS = (
    "input_gate_mean",
    "input_gate_open",
    "forget_gate_mean",
    "output_gate_mean",
    "cell_change",
    "write",
)


@dataclasses.dataclass
class Inspector:
    """The trained model and its gate model (inspection.gate_model.build_gate_model)."""

    model: keras.Model  # the trained model, for the running prediction
    gate_model: keras.Model  # the ledger's gate model: per direction [h, c, i, f, o, c̃]
    units: int
    bidirectional: bool  # the gates shown are the forward direction's


def build_inspector(model: keras.Model) -> Inspector:
    """The model and its gate model; UserError for a model the gates cannot be read from (no
    or several recurrent layers, a cell other than ours or Keras' LSTM, ...)."""
    try:
        layers = directions(model)
        gate_model = build_gate_model(model)
    except ValueError as error:
        raise UserError(str(error)) from None
    return Inspector(model, gate_model, layers[0].cell.units, len(layers) == 2)


def split_forward(outputs: list, units: int) -> dict:
    """The forward direction of predict_gates' outputs, split (model.cell.split_gates): each
    <float32>[batch, time, units] as NumPy."""
    return {
        name: ops.convert_to_numpy(part) for name, part in split_gates(outputs[0], units).items()
    }


def forward_gates(inspector: Inspector, ids: np.ndarray) -> dict:
    """ids <int32>[batch, time], right-padded -> the forward direction's split gates as NumPy,
    each <float32>[batch, time, units]."""
    ids, lengths, _ = as_batch(ids)
    return split_forward(predict_gates(inspector.gate_model, ids, lengths), inspector.units)


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
    parts = {name: value[0] for name, value in forward_gates(inspector, ids[None, :]).items()}
    trace = dict(parts)
    trace.update(token_statistics(parts))
    trace["logit"] = running_logits(inspector.model, ids)
    trace["probability"] = (1.0 / (1.0 + np.exp(-trace["logit"]))).astype(np.float32)
    return trace


class WordGateStatistics:
    """word_statistics' running sums, fed a batch at a time (add), summed up at the end (report).

    word_ids: {word: vocabulary id}; the key None (every real token, the baseline) is added.
    """

    def __init__(self, word_ids: dict):
        self.targets = dict(word_ids)
        self.targets[None] = None  # every real token: the baseline
        self.sums = {word: dict.fromkeys(WORD_STATISTICS, 0.0) for word in self.targets}
        self.counts = dict.fromkeys(self.targets, 0)
        self.review_counts = dict.fromkeys(self.targets, 0)

    def add(self, ids: np.ndarray, parts: dict) -> None:
        """ids <int32>[batch, time] right-padded; parts: their forward gates (forward_gates)."""
        stats = token_statistics(parts)
        for word, word_id in self.targets.items():
            hits = ids != 0 if word_id is None else ids == word_id
            self.counts[word] += int(hits.sum())
            self.review_counts[word] += int(hits.any(axis=1).sum())
            for key in WORD_STATISTICS:
                self.sums[word][key] += float(stats[key][hits].astype(np.float64).sum())

    def report(self) -> dict:
        """word_statistics' result from the sums so far."""
        return {
            word: {
                "count": self.counts[word],
                "reviews": self.review_counts[word],
                **{
                    key: (self.sums[word][key] / self.counts[word] if self.counts[word] else None)
                    for key in WORD_STATISTICS
                },
            }
            for word in self.targets
        }


def word_statistics(inspector: Inspector, reviews, word_ids: dict, batch_size: int = 64) -> dict:
    """Mean gate behaviour at the steps where each word is read.

    reviews: list of <int32>[time_i] id arrays (no padding, already truncated).
    word_ids: {word: vocabulary id}. Returns {word: {...}} plus the key None for all tokens,
    each {"count": occurrences, "reviews": reviews containing it, "input_gate_mean",
    "input_gate_open", "forget_gate_mean", "output_gate_mean", "cell_change", "write":
    means over the occurrences (None when count is 0)}.
    """
    sums = WordGateStatistics(word_ids)
    for ids, _ in review_batches(reviews, batch_size):
        sums.add(ids, forward_gates(inspector, ids))
    return sums.report()


def direction_note(inspector: Inspector) -> str:
    if inspector.bidirectional:
        return (
            "bidirectional model: gates of the FORWARD direction (reading order); the running "
            "prediction runs both directions over tokens 1..t"
        )
    return "forward model: running prediction = logit(pool(h_1..h_t))"
