"""What the LSTM does as it reads a review: its gates, its cell state, its running verdict.

    python -m lstm_reviews.explain --model runs/imdb_lstm "An amazing film, give it a try."
    python -m lstm_reviews.explain --model runs/imdb_lstm "..." --plot gates.png --html gates.html
    python -m lstm_reviews.explain --model runs/imdb_lstm --words --limit 2000 --json words.json

How. The run's model.keras is loaded as trained and never retrained. An inspection model is
built beside it: the same embedding layer, then RNN(LSTMCell(units, return_gates=True),
return_sequences=True) holding a copy of the trained recurrent weights. The trained layer
may be RNN(our LSTMCell) or keras.layers.LSTM (same weight layout, so the copy needs no
conversion), alone or inside Bidirectional. Its outputs at token t are h_t, c_t and the
gates i_t, f_t, o_t and candidate c̃_t (see lstm_reviews.cell).

Bidirectional models: the gates shown are the forward direction's, the one that reads the
review in reading order; the backward direction reads it from the end.

Running prediction at token t: the trained model's P(positive) for the review cut after
token t, i.e. sigmoid(logit(dropout_off(pooling(lstm(tokens 1..t))))). For a forward-only
model this is the head applied to the states seen so far, logit(pool(h_1..h_t)). For a
bidirectional model the backward direction is run over the prefix 1..t as well (the model's
verdict as if the review ended at t). That takes T runs; the T prefixes go through the compiled
model as rows of one padded batch (256 rows per call at most): ~2 s for 600 tokens on 2 CPU
cores, where a loop over prefixes would take minutes.

Word report: for chosen words, the mean input-gate opening and cell-state change
‖c_t − c_{t−1}‖ at the steps where the word is read, over the test split (tokens matched by
vocabulary id, reviews truncated as in training). --limit N draws N test reviews at random
(seeded by the run's seed): the split lists all positive reviews first.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
from keras import ops

from lstm_reviews.cell import LSTMCell, split_gates
from lstm_reviews.config import Config

DEFAULT_WORDS = ("amazing", "awesome", "this", "give", "all", "should")
GATES = ("input_gate", "forget_gate", "output_gate")
# Prefixes per compiled call for the running prediction: 256 x 600 tokens stays < 200 MB.
PREFIX_BATCH = 256


class ExplainError(ValueError):
    """A user-facing problem (missing run directory, unusable model, empty text)."""


@dataclasses.dataclass
class Run:
    """A trained run directory, loaded."""

    run_dir: Path
    model: keras.Model  # ids <int32>[batch, time] -> logits <float32>[batch, 1]
    vocabulary: list  # vocabulary.txt: '' (padding) at 0, '[UNK]' at 1
    config: Config


@dataclasses.dataclass
class Inspector:
    """The trained model and its gate-exposing twin."""

    model: keras.Model  # the trained model, for the running prediction
    gates_model: keras.Model  # ids <int32>[batch, time] -> <float32>[batch, time, 6 * units]
    units: int
    bidirectional: bool  # gates_model then shows the forward direction only


def load_run(run_dir) -> Run:
    """Loads model.keras, vocabulary.txt and config.json; ExplainError names what is wrong."""
    from lstm_reviews.export import ExportError, load_run as load_run_files

    try:
        config, vocabulary, model = load_run_files(run_dir)
    except ExportError as error:  # same checks as the export; the message names the path
        raise ExplainError(str(error)) from None
    return Run(Path(run_dir), model, vocabulary, config)


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
    raise ExplainError(f"model {model.name!r} has no layer named 'lstm' or 'bidirectional_lstm'")


def _check_standard_lstm(layer) -> None:
    """Our cell computes sigmoid gates and tanh content only: refuse anything else."""
    cell = layer.cell
    if layer.go_backwards:
        raise ExplainError(f"layer {layer.name!r} reads backwards; expected a forward layer")
    if isinstance(cell, LSTMCell):
        return
    if not isinstance(cell, keras.layers.LSTMCell):
        raise ExplainError(f"layer {layer.name!r} has a {type(cell).__name__}, "
                           f"expected our LSTMCell or keras.layers.LSTM")
    activations = (keras.activations.serialize(cell.activation),
                   keras.activations.serialize(cell.recurrent_activation))
    if activations != ("tanh", "sigmoid"):
        raise ExplainError(f"layer {layer.name!r} uses activations {activations}; "
                           f"only ('tanh', 'sigmoid') can be copied into our cell")


def build_inspector(model: keras.Model) -> Inspector:
    """The inspection model: trained embedding -> RNN(LSTMCell(return_gates=True)), trained weights.

    gates_model: ids <int32>[batch, time] -> <float32>[batch, time, 6 * units], the
    concatenation [h, c, input_gate, forget_gate, output_gate, candidate] of the forward
    direction at every step (split it with lstm_reviews.cell.split_gates).
    """
    layer, bidirectional = forward_recurrent_layer(model)
    _check_standard_lstm(layer)
    trained_cell = layer.cell
    cell = LSTMCell(trained_cell.units, use_bias=trained_cell.use_bias, return_gates=True)
    rnn = keras.layers.RNN(cell, return_sequences=True, name="lstm_gates")
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    # The trained embedding layer itself: its mask (ids != 0) reaches the RNN as in training.
    sequence = rnn(model.get_layer("embedding")(ids))
    # kernel, recurrent_kernel[, bias]: keras.layers.LSTM's layout is our cell's.
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
    return {name: ops.convert_to_numpy(part)
            for name, part in split_gates(outputs, inspector.units).items()}


def running_logits(model: keras.Model, ids: np.ndarray, prefix_batch: int = PREFIX_BATCH):
    """The model's logit for every prefix of one review: <float32>[time].

    ids: <int32>[time]. Entry t is model(ids[:t + 1]) with dropout off: the verdict as if the
    review ended at token t. The prefixes go through as rows of a lower-triangular, 0-padded
    id matrix (the embedding masks the padding), at most prefix_batch rows per call.
    """
    ids = np.asarray(ids, dtype=np.int32)
    prefixes = np.tril(np.broadcast_to(ids, (len(ids), len(ids))))
    logits = []
    for start in range(0, len(ids), prefix_batch):
        stop = min(start + prefix_batch, len(ids))
        # Rows start..stop-1 end by column stop-1: the columns after it are padding only.
        logits.append(np.asarray(model.predict_on_batch(prefixes[start:stop, :stop])).reshape(-1))
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
        raise ExplainError("nothing to explain: the review has no tokens")
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
    keys = ("input_gate_mean", "input_gate_open", "forget_gate_mean", "output_gate_mean",
            "cell_change", "write")
    targets = dict(word_ids)
    targets[None] = None  # every real token: the baseline
    sums = {word: dict.fromkeys(keys, 0.0) for word in targets}
    counts = dict.fromkeys(targets, 0)
    review_counts = dict.fromkeys(targets, 0)
    # Similar lengths together: less padding to run through the LSTM.
    order = sorted(range(len(reviews)), key=lambda k: len(reviews[k]))
    for start in range(0, len(order), batch_size):
        batch = [np.asarray(reviews[k], dtype=np.int32) for k in order[start:start + batch_size]]
        batch = [ids for ids in batch if ids.size]
        if not batch:
            continue
        ids = np.zeros((len(batch), max(map(len, batch))), dtype=np.int32)
        for row, review in enumerate(batch):
            ids[row, :len(review)] = review
        stats = token_statistics(_gates(inspector, ids))
        for word, word_id in targets.items():
            hits = ids != 0 if word_id is None else ids == word_id
            counts[word] += int(hits.sum())
            review_counts[word] += int(hits.any(axis=1).sum())
            for key in keys:
                sums[word][key] += float(stats[key][hits].astype(np.float64).sum())
    return {word: {"count": counts[word], "reviews": review_counts[word],
                   **{key: (sums[word][key] / counts[word] if counts[word] else None)
                      for key in keys}}
            for word in targets}


# --- text in, tokens out -------------------------------------------------------------------


def tokenize(vocabulary: list, texts: list) -> list:
    """Texts -> list of <int32>[time_i] id arrays, with the training standardization."""
    from lstm_reviews.data import vectorizer_from_vocabulary

    vectorizer = vectorizer_from_vocabulary(vocabulary)
    ragged = vectorizer(texts)
    return [np.asarray(row, dtype=np.int32) for row in ragged.to_list()]


def word_vocabulary_ids(vocabulary: list, words) -> dict:
    """{word: id, or None when the word is not one in-vocabulary token after standardization}."""
    result = {}
    for word, ids in zip(words, tokenize(vocabulary, list(words))):
        result[word] = int(ids[0]) if len(ids) == 1 and ids[0] > 1 else None
    return result


# --- output --------------------------------------------------------------------------------


def direction_note(inspector: Inspector) -> str:
    if inspector.bidirectional:
        return ("bidirectional model: gates of the FORWARD direction (reading order); the running "
                "prediction runs both directions over tokens 1..t")
    return "forward model: running prediction = logit(pool(h_1..h_t))"


def format_trace(tokens: list, trace: dict) -> str:
    """The per-token table as text."""
    width = max(8, min(18, max(len(token) for token in tokens)))
    header = (f"{'t':>4}  {'token':<{width}}  {'input':>5} {'>0.5':>5}  {'forget':>6} {'>0.5':>5}  "
              f"{'output':>6} {'>0.5':>5}  {'|dc|':>6} {'|i*g|':>6}  {'P(pos)':>6}")
    lines = [header]
    for t, token in enumerate(tokens):
        lines.append(
            f"{t + 1:>4}  {token[:width]:<{width}}  "
            f"{trace['input_gate_mean'][t]:5.2f} {trace['input_gate_open'][t]:5.0%}  "
            f"{trace['forget_gate_mean'][t]:6.2f} {trace['forget_gate_open'][t]:5.0%}  "
            f"{trace['output_gate_mean'][t]:6.2f} {trace['output_gate_open'][t]:5.0%}  "
            f"{trace['cell_change'][t]:6.3f} {trace['write'][t]:6.3f}  "
            f"{trace['probability'][t]:6.3f}")
    return "\n".join(lines)


def plot_trace(tokens: list, trace: dict, path, title: str = "") -> None:
    """Writes a PNG heatmap: one row per token; columns: the three gates (mean over units,
    0..1), the cell-state change ‖c_t − c_{t−1}‖ and the running P(positive)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    rows = len(tokens)
    height = max(2.5, 0.22 * rows + 1.5)
    figure, axes = plt.subplots(1, 3, figsize=(7.5, height), sharey=True,
                                gridspec_kw={"width_ratios": [3, 1, 1]})
    gates = np.stack([trace[f"{gate}_mean"] for gate in GATES], axis=1)
    columns = [
        (gates, ["input", "forget", "output"], "viridis", 0.0, 1.0, "gate (mean over units)"),
        (trace["cell_change"][:, None], ["|c_t - c_t-1|"], "magma", 0.0,
         float(trace["cell_change"].max()) or 1.0, "cell-state change"),
        (trace["probability"][:, None], ["P(pos)"], "RdYlGn", 0.0, 1.0, "running prediction"),
    ]
    for axis, (values, labels, cmap, low, high, label) in zip(axes, columns):
        image = axis.imshow(values, aspect="auto", cmap=cmap, vmin=low, vmax=high,
                            interpolation="nearest")
        axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        figure.colorbar(image, ax=axis, label=label, shrink=min(1.0, 8.0 / height) if rows else 1.0)
    axes[0].set_yticks(range(rows), tokens, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _colour(value: float, low=(255, 255, 255), high=(255, 140, 0)) -> str:
    """value in [0, 1] -> an rgb() between low and high."""
    value = float(np.clip(value, 0.0, 1.0))
    return "rgb({},{},{})".format(*(round(a + (b - a) * value) for a, b in zip(low, high)))


def render_html(tokens: list, trace: dict, title: str = "", note: str = "") -> str:
    """A self-contained HTML page: the review three times, each token coloured by its input
    gate, its cell-state change and the running prediction; hover a token for all numbers."""
    peak = float(trace["cell_change"].max()) or 1.0
    views = [
        ("Input gate (mean over units): how much the cell lets in",
         lambda t: _colour(trace["input_gate_mean"][t])),
        (f"Cell-state change |c_t - c_t-1|, scaled to the review's largest ({peak:.3f})",
         lambda t: _colour(trace["cell_change"][t] / peak, high=(200, 60, 255))),
        ("Running prediction P(positive): red negative, green positive",
         lambda t: (_colour(2 * (0.5 - trace["probability"][t]), high=(240, 80, 80))
                    if trace["probability"][t] < 0.5 else
                    _colour(2 * (trace["probability"][t] - 0.5), high=(80, 200, 80)))),
    ]
    sections = []
    for heading, colour in views:
        spans = []
        for t, token in enumerate(tokens):
            tip = (f"#{t + 1} {token}: input {trace['input_gate_mean'][t]:.3f}, "
                   f"forget {trace['forget_gate_mean'][t]:.3f}, "
                   f"output {trace['output_gate_mean'][t]:.3f}, "
                   f"|dc| {trace['cell_change'][t]:.3f}, P(pos) {trace['probability'][t]:.3f}")
            spans.append(f'<span style="background:{colour(t)}" title="{html.escape(tip)}">'
                         f"{html.escape(token)}</span>")
        sections.append(f"<h2>{html.escape(heading)}</h2>\n<p class=\"text\">{' '.join(spans)}</p>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title>\n"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            ".text{line-height:2}.text span{padding:2px 1px;border-radius:3px}"
            "h2{font-size:1em}</style></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(note)}</p>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def format_word_report(report: dict) -> str:
    """The word table as text; the last row is every token (the baseline)."""
    lines = [f"{'word':<14} {'id':>6} {'count':>8} {'reviews':>8}  {'input':>6} {'>0.5':>5}  "
             f"{'forget':>6}  {'output':>6}  {'|dc|':>6} {'|i*g|':>6}"]
    for word, row in report["words"].items():
        name = word if word is not None else "(all tokens)"
        if row["count"] == 0:
            reason = "not in vocabulary" if row["id"] is None else "never read"
            lines.append(f"{name:<14} {str(row['id']):>6} {0:>8} {0:>8}  ({reason})")
            continue
        lines.append(
            f"{name:<14} {'' if row['id'] is None else row['id']:>6} {row['count']:>8} "
            f"{row['reviews']:>8}  {row['input_gate_mean']:6.3f} {row['input_gate_open']:5.0%}  "
            f"{row['forget_gate_mean']:6.3f}  {row['output_gate_mean']:6.3f}  "
            f"{row['cell_change']:6.3f} {row['write']:6.3f}")
    return "\n".join(lines)


def _write_text(path, text: str) -> None:
    """Write then rename: a reader never sees half a file."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


# --- command line --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_reviews.explain",
        description="Show the LSTM's gates, cell-state change and running prediction token by "
        "token for a review, or gate statistics for chosen words over the test set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("text", nargs="?", help="review text to trace")
    parser.add_argument("--model", required=True, metavar="RUN_DIR",
                        help="training run directory (model.keras, vocabulary.txt, config.json)")
    parser.add_argument("--plot", metavar="PNG", help="write a tokens x gates heatmap here")
    parser.add_argument("--html", metavar="HTML", help="write a coloured-text HTML view here")
    parser.add_argument("--words", nargs="*", metavar="WORD",
                        help="word report over the test set (put a TEXT before this option); "
                        "no words: " + " ".join(DEFAULT_WORDS))
    parser.add_argument("--limit", type=int, metavar="N",
                        help="word report over N test reviews drawn at random (seeded); default all")
    parser.add_argument("--data", metavar="PATH",
                        help="aclImdb dir or aclImdb_v1.tar.gz for the word report "
                        "(default: the run's config)")
    parser.add_argument("--json", metavar="OUT", help="also save the results as JSON")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N",
                        help="reviews per batch in the word report")
    return parser


def _trace_command(run: Run, inspector: Inspector, args) -> dict:
    ids = tokenize(run.vocabulary, [args.text])[0]
    if ids.size == 0:
        raise ExplainError(f"the text has no tokens after standardization: {args.text!r}")
    from lstm_reviews.data import keep_last_tokens

    total = len(ids)
    ids = np.asarray(keep_last_tokens(ids, run.config.max_length), dtype=np.int32)
    tokens = [run.vocabulary[k] for k in ids]
    trace = gate_trace(inspector, ids)
    print(f"model: {run.run_dir} ({inspector.units} units)")
    print(direction_note(inspector))
    if len(ids) < total:
        print(f"the review has {total} tokens: kept the last {len(ids)} (max_length), as in training")
    print("per token: gate mean over units and share of units > 0.5; |dc| = ||c_t - c_(t-1)||; "
          "|i*g| = ||i_t * candidate_t|| (new content written); "
          "P(pos) = the model's prediction if the review ended at this token")
    print(format_trace(tokens, trace))
    if args.plot:
        direction = "forward direction of a bidirectional model" if inspector.bidirectional else ""
        plot_trace(tokens, trace, args.plot, title=f"{run.run_dir.name} {direction}".strip())
        print(f"wrote {args.plot}")
    if args.html:
        _write_text(args.html, render_html(tokens, trace, title=f"Gates of {run.run_dir}",
                                           note=direction_note(inspector)))
        print(f"wrote {args.html}")
    keys = [f"{gate}_{kind}" for gate in GATES for kind in ("mean", "open")]
    keys += ["cell_change", "write", "logit", "probability"]
    return {"tokens": tokens, **{key: trace[key].tolist() for key in keys}}


def load_test_reviews(run: Run, data, limit):
    """The test split's reviews as id arrays, tokenized and truncated as in training."""
    from lstm_reviews.data import keep_last_tokens, load_imdb

    config = run.config if data is None else dataclasses.replace(run.config, data=data)
    texts = load_imdb(config).test.texts
    if limit is not None and limit < len(texts):
        # A seeded sample, not the first N: the split may list all positives first.
        chosen = np.random.default_rng(config.seed).choice(len(texts), size=limit, replace=False)
        texts = [texts[k] for k in sorted(chosen)]
    return [np.asarray(keep_last_tokens(ids, config.max_length), dtype=np.int32)
            for ids in tokenize(run.vocabulary, texts)]


def _words_command(run: Run, inspector: Inspector, args) -> dict:
    words = args.words or list(DEFAULT_WORDS)
    word_ids = word_vocabulary_ids(run.vocabulary, words)
    reviews = load_test_reviews(run, args.data, args.limit)
    known = {word: word_id for word, word_id in word_ids.items() if word_id is not None}
    stats = word_statistics(inspector, reviews, known, batch_size=args.batch_size)
    rows = {word: {"id": word_ids[word], **stats.get(word, {"count": 0, "reviews": 0})}
            for word in words}
    rows[None] = {"id": None, **stats[None]}
    report = {"words": rows, "reviews": len(reviews)}
    print(f"model: {run.run_dir}; {direction_note(inspector)}")
    print(f"word report over {len(reviews)} test reviews: gate means when the word is read; "
          f"|dc| = ||c_t - c_(t-1)||, |i*g| = ||i_t * candidate_t||")
    print(format_word_report(report))
    return {"reviews": len(reviews), "direction": "forward",
            "words": [{"word": word, **row} for word, row in rows.items() if word is not None],
            "all_tokens": rows[None]}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.text is None and args.words is None:
        parser.error("give a TEXT to trace, or --words for the word report")
    if args.text is None and (args.plot or args.html):
        parser.error("--plot and --html draw a TEXT's trace: give the text too")
    if args.text is not None and not args.text.strip():
        parser.error("the text is empty: give a review to trace")
    if args.limit is not None and args.limit <= 0:
        parser.error(f"--limit must be positive, got {args.limit}")
    if args.batch_size <= 0:
        parser.error(f"--batch-size must be positive, got {args.batch_size}")
    from lstm_reviews.data import DataError

    try:
        run = load_run(args.model)
        inspector = build_inspector(run.model)
        results = {"model": str(run.run_dir), "note": direction_note(inspector)}
        if args.text is not None:
            results["trace"] = _trace_command(run, inspector, args)
        if args.words is not None:
            results["word_report"] = _words_command(run, inspector, args)
    except (ExplainError, DataError) as error:
        parser.error(str(error))
    if args.json:
        _write_text(args.json, json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
