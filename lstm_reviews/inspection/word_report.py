"""The word report of `explain --words`: for chosen words, over the test split, the gates'
means where the word is read (inspection.gates) and the memory ledger by word
(inspection.ledger_words), with the top words each way.

One pass: each batch of reviews goes through the gate model once, and both sums are fed from
its outputs (the forward direction's float32 gates for the gate means, every direction's in
float64 for the ledger). Reviews are encoded and truncated as in training; a limit draws that
many test reviews at random (seeded by the run's seed): the split lists all positive reviews
first.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lstm_reviews.config import DEFAULT_WORDS
from lstm_reviews.data import imdb, text
from lstm_reviews.inspection.gate_model import (
    aligned_gates,
    as_batch,
    predict_gates,
    review_batches,
)
from lstm_reviews.inspection.gates import (
    Inspector,
    WordGateStatistics,
    build_inspector,
    split_forward,
)
from lstm_reviews.inspection.ledger_words import WordLedger, top_words
from lstm_reviews.rundir import Run

REPORTS = ("ledger", "gates")


def word_vocabulary_ids(vocabulary: list, words) -> dict:
    """{word: id, or None when the word is not one in-vocabulary token after standardization}."""
    result = {}
    encoded = text.encode(text.vectorizer_from_vocabulary(vocabulary), list(words))
    for word, ids in zip(words, encoded):
        result[word] = int(ids[0]) if len(ids) == 1 and ids[0] > 1 else None
    return result


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


def word_reports(
    run: Run,
    inspector: Inspector,
    reviews: list,
    words=DEFAULT_WORDS,
    batch_size: int = 64,
    reports=REPORTS,
    top: int = 30,
    min_count: int = 50,
) -> dict:
    """The word reports over `reviews` (id arrays), in one pass of the gate model.

    reports: which of REPORTS to make: "ledger" (ledger_word_report's, with the `top` words
    each way seen >= min_count times), "gates" (word_report's). Returns {report: its dict}.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    word_ids = word_vocabulary_ids(run.vocabulary, words)
    known = {word: word_id for word, word_id in word_ids.items() if word_id is not None}
    ledger = WordLedger(run.model, known, gate_model=inspector.gate_model)
    gates = WordGateStatistics(known)
    for ids, _ in review_batches(reviews, batch_size):
        ids, lengths, mask = as_batch(ids)
        outputs = predict_gates(inspector.gate_model, ids, lengths)
        if "gates" in reports:
            gates.add(ids, split_forward(outputs, inspector.units))
        if "ledger" in reports:
            ledger.add(ids, aligned_gates(outputs, lengths, mask))
    made = {}
    if "ledger" in reports:
        report = ledger.report()
        made["ledger"] = _ledger_report(run, reviews, words, word_ids, report, top, min_count)
    if "gates" in reports:
        made["gates"] = _gate_report(reviews, words, word_ids, gates.report())
    return made


def _gate_report(reviews, words, word_ids, stats) -> dict:
    return {
        "reviews": len(reviews),
        "direction": "forward",
        "words": [
            {"word": word, "id": word_ids[word], **stats.get(word, {"count": 0, "reviews": 0})}
            for word in words
        ],
        "all_tokens": {"id": None, **stats[None]},
    }


def _ledger_report(run, reviews, words, word_ids, report, top, min_count) -> dict:
    by_id = report["by_id"]
    chosen = top_words(report, n=top, min_count=min_count)

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


def word_report(
    run: Run, inspector: Inspector, reviews: list, words=DEFAULT_WORDS, batch_size: int = 64
) -> dict:
    """Gate statistics of `words` over `reviews` (id arrays), as the --words report prints them.

    Returns {"reviews": n, "direction": "forward", "words": [{"word", "id", "count", ...}],
    "all_tokens": {...}}; the per-word keys are inspection.gates.word_statistics'.
    """
    return word_reports(run, inspector, reviews, words, batch_size, reports=("gates",))["gates"]


def ledger_word_report(
    run: Run,
    reviews: list,
    words=DEFAULT_WORDS,
    batch_size: int = 64,
    top: int = 30,
    min_count: int = 50,
) -> dict:
    """The memory ledger by word over `reviews` (id arrays): inspection.ledger_words.word_ledger
    for `words`, every token, and the `top` words each way by mean share A (seen >= min_count
    times), found from the data.

    Returns JSON-ready {"reviews", "words": [{"word", "id", "count", "mean_A", "mean_A_ci",
    "mean_abs_A", "mean_abs_A_ci", "mean_read", "mean_retention", "half_life_median",
    "half_life_censored", "forward": {...}, "backward": {...}, ...}], "all_tokens": {...},
    "top_positive": [{"word", "id", "count", "mean_A", "mean_abs_A"}], "top_negative": [...],
    "min_count"}.
    """
    inspector = build_inspector(run.model)
    made = word_reports(run, inspector, reviews, words, batch_size, ("ledger",), top, min_count)
    return made["ledger"]
