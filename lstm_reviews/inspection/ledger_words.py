"""The memory ledger summed up by word over many reviews (the ledger itself:
inspection.ledger).

WordLedger takes the reviews a batch at a time, with the batch's gates (so that one pass of the
gate model can feed it and the word gate statistics together: inspection.word_report), and
keeps running sums: per vocabulary id for every id, and for the requested words also the
per-occurrence shares (for bootstrap intervals) and half-life histograms (for medians).
"""

from __future__ import annotations

import keras
import numpy as np

from lstm_reviews.inspection.gate_model import (
    DIRECTION_NAMES,
    build_gate_model,
    directions,
    embedding_layer,
    gates,
    logit_head,
    review_batches,
)
from lstm_reviews.inspection.ledger import batch_ledger


def _add_histogram(histogram, values):
    """histogram <int64>[n] plus the counts of the non-negative ints in values, grown as needed."""
    counts = np.bincount(np.asarray(values, dtype=np.int64), minlength=len(histogram))
    counts[: len(histogram)] += histogram
    return counts


def _sum_histograms(first, second):
    total = np.zeros(max(len(first), len(second)), dtype=np.int64)
    total[: len(first)] += first
    total[: len(second)] += second
    return total


def _histogram_median(histogram):
    """The median (np.median's, halves averaged) of the values a histogram counts; None if empty."""
    n = int(histogram.sum())
    if n == 0:
        return None
    cumulative = np.cumsum(histogram)
    lower = int(np.searchsorted(cumulative, (n - 1) // 2, side="right"))
    upper = int(np.searchsorted(cumulative, n // 2, side="right"))
    return (lower + upper) / 2.0


def _interval(values, n, sum1, sum2, n_boot, rng):
    """A 95% interval of a mean: percentile bootstrap over the stored values, or, when they
    were not stored (n above the limit), the normal one mean ± 1.96 s/√n that the bootstrap
    approaches for large n."""
    if values is not None:
        means = np.empty(n_boot)
        chunk = max(1, 2_000_000 // n)  # bounded memory: chunk x n indices at a time
        for start in range(0, n_boot, chunk):
            stop = min(start + chunk, n_boot)
            means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        return float(low), float(high)
    mean = sum1 / n
    variance = max(sum2 - n * mean * mean, 0.0) / (n - 1)
    half = 1.959963984540054 * np.sqrt(variance / n)
    return float(mean - half), float(mean + half)


class _Tracked:
    """Running totals for one requested word (or all tokens)."""

    def __init__(self, n_dir, limit):
        self.count = 0
        self.reviews = 0
        self.sums = {}  # name -> float
        self.values = []  # per-occurrence A, while count <= limit
        self.limit = limit
        self.histograms = [np.zeros(0, dtype=np.int64) for _ in range(n_dir)]
        self.censored = [0] * n_dir

    def add(self, name, value):
        self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def add_values(self, values):
        self.count += len(values)
        if self.count <= self.limit:
            self.values.append(values)
        else:
            self.values = None  # too many to keep: the normal interval


_EMPTY_DIRECTION = (
    "mean_abs_A",
    "mean_read",
    "mean_retention",
    "half_life_median",
    "half_life_censored",
)


def _empty_summary(tracked, names) -> dict:
    """The report of a key that never occurs: its counts, None for every mean."""
    empty = {
        "count": 0,
        "reviews": tracked.reviews,
        "mean_A": None,
        "mean_A_ci": None,
        "mean_abs_A": None,
        "mean_abs_A_ci": None,
        "ci_method": None,
        "mean_read": None,
        "mean_retention": None,
        "half_life_median": None,
        "half_life_censored": None,
    }
    for name in names:
        empty[name] = dict.fromkeys(_EMPTY_DIRECTION)
    return empty


def _summaries(tracked, names, n_boot, rng):
    """The report of one tracked key (see word_ledger)."""
    n = tracked.count
    if n == 0:
        return _empty_summary(tracked, names)
    s = tracked.sums
    values = None if tracked.values is None else np.concatenate(tracked.values)
    report = {
        "count": n,
        "reviews": tracked.reviews,
        "mean_A": s["A"] / n,
        "mean_abs_A": s["abs_A"] / n,
        "ci_method": "bootstrap" if values is not None else "normal",
        "mean_read": s["read"] / n,
    }
    # The same resampled occurrences for both means.
    state = rng.bit_generator.state
    report["mean_A_ci"] = _interval(values, n, s["A"], s["A2"], n_boot, rng)
    rng.bit_generator.state = state
    report["mean_abs_A_ci"] = _interval(
        None if values is None else np.abs(values), n, s["abs_A"], s["A2"], n_boot, rng
    )
    report.update(_direction_summaries(tracked, names))
    return report


def _direction_summaries(tracked, names) -> dict:
    """_summaries' per-direction reports, and retention and half-life over both directions."""
    n, s = tracked.count, tracked.sums
    report = {}
    retention_sum = retention_count = 0.0
    histogram = np.zeros(0, dtype=np.int64)
    censored = 0
    for d, name in enumerate(names):
        observed = int(tracked.histograms[d].sum())
        timed = observed + tracked.censored[d]
        count = s[f"retention_count_{name}"]
        report[name] = {
            "mean_abs_A": s[f"abs_A_{name}"] / n,
            "mean_read": s[f"read_{name}"] / n,
            "mean_retention": s[f"retention_{name}"] / count if count else None,
            "half_life_median": _histogram_median(tracked.histograms[d]),
            "half_life_censored": tracked.censored[d] / timed if timed else None,
        }
        retention_sum += s[f"retention_{name}"]
        retention_count += count
        histogram = _sum_histograms(histogram, tracked.histograms[d])
        censored += tracked.censored[d]
    timed = int(histogram.sum()) + censored
    report["mean_retention"] = retention_sum / retention_count if retention_count else None
    report["half_life_median"] = _histogram_median(histogram)
    report["half_life_censored"] = censored / timed if timed else None
    return report


def _per_token(result, mask, names) -> dict:
    """batch_ledger's arrays at the real tokens, flat <[tokens]>, under the running sums' keys."""
    A = result["A"][mask]
    per_token = {"A": A, "abs_A": np.abs(A), "A2": A * A, "read": result["read"][mask]}
    for name in names:
        entry = result[name]
        retention = entry["retention"][mask]
        per_token[f"abs_A_{name}"] = np.abs(entry["A"][mask])
        per_token[f"read_{name}"] = entry["read"][mask]
        per_token[f"retention_{name}"] = np.nan_to_num(retention)
        per_token[f"retention_count_{name}"] = ~np.isnan(retention)
        per_token[f"half_life_{name}"] = entry["half_life"][mask]
        per_token[f"censored_{name}"] = entry["censored"][mask]
    return per_token


class WordLedger:
    """word_ledger's running sums, fed a batch at a time (add), summed up at the end (report).

    model: the trained model; word_ids: {label: vocabulary id} of the words to report in
    full; bootstrap_limit, and the report's n_boot and seed: see word_ledger.
    gate_model: build_gate_model(model), to share with other readers of the same batches.
    """

    def __init__(self, model, word_ids=None, bootstrap_limit=100_000, gate_model=None):
        self.word_ids = dict(word_ids or {})
        self.vocab = embedding_layer(model).input_dim
        for label, word_id in self.word_ids.items():
            if not 0 < int(word_id) < self.vocab:
                raise ValueError(f"word {label!r} has id {word_id}, outside 1..{self.vocab - 1}")
        self.model = model
        self.gate_model = build_gate_model(model) if gate_model is None else gate_model
        self.head = logit_head(model)
        self.names = DIRECTION_NAMES[: len(directions(model))]
        self.by_id = {
            key: np.zeros(self.vocab)
            for key in ["A", "abs_A", "read", "retention", "retention_count"]
            + [f"abs_A_{name}" for name in self.names]
        }
        self.id_counts = np.zeros(self.vocab, dtype=np.int64)
        self.id_reviews = np.zeros(self.vocab, dtype=np.int64)
        n_dir = len(self.names)
        self.tracked = {label: _Tracked(n_dir, bootstrap_limit) for label in self.word_ids}
        self.everything = _Tracked(n_dir, bootstrap_limit)

    def add(self, ids, per_direction=None) -> None:
        """One batch: ids <int32>[batch, time] right-padded; per_direction: its
        gate_model.gates, if at hand."""
        result = batch_ledger(self.model, ids, self.gate_model, self.head, per_direction)
        mask = result["mask"]
        tokens = ids[mask]
        per_token = _per_token(result, mask, self.names)
        self._add_by_id(ids, tokens, per_token)
        targets = [
            (self.tracked[label], tokens == word_id, ids == word_id)
            for label, word_id in self.word_ids.items()
        ]
        targets.append((self.everything, np.ones(tokens.shape, dtype=bool), mask))
        for target, hits, hit_grid in targets:
            if hits.any():
                self._add_tracked(target, hits, hit_grid, per_token)

    def _add_by_id(self, ids, tokens, per_token) -> None:
        vocab, by_id = self.vocab, self.by_id
        self.id_counts += np.bincount(tokens, minlength=vocab)
        # Each id once per review: the reviews containing it.
        present = np.concatenate([np.unique(row[row != 0]) for row in ids])
        self.id_reviews += np.bincount(present, minlength=vocab)
        for key in ("A", "abs_A", "read"):
            by_id[key] += np.bincount(tokens, weights=per_token[key], minlength=vocab)
        for name in self.names:
            by_id[f"abs_A_{name}"] += np.bincount(
                tokens, weights=per_token[f"abs_A_{name}"], minlength=vocab
            )
            by_id["retention"] += np.bincount(
                tokens, weights=per_token[f"retention_{name}"], minlength=vocab
            )
            by_id["retention_count"] += np.bincount(
                tokens, weights=per_token[f"retention_count_{name}"], minlength=vocab
            )

    def _add_tracked(self, target, hits, hit_grid, per_token) -> None:
        target.reviews += int(hit_grid.any(axis=1).sum())
        target.add_values(per_token["A"][hits])
        for key, values in per_token.items():
            if not key.startswith(("half_life_", "censored_")):
                target.add(key, values[hits].sum())
        for d, name in enumerate(self.names):
            half_life = per_token[f"half_life_{name}"][hits]
            observed = half_life[~np.isnan(half_life)].astype(np.int64)
            target.histograms[d] = _add_histogram(target.histograms[d], observed)
            target.censored[d] += int(per_token[f"censored_{name}"][hits].sum())

    def report(self, n_boot: int = 1000, seed: int = 0) -> dict:
        """word_ledger's result from the sums so far."""
        with np.errstate(invalid="ignore", divide="ignore"):
            counts = np.where(self.id_counts > 0, self.id_counts, np.nan)
            retention_count = self.by_id["retention_count"]
            report_by_id = {
                "count": self.id_counts,
                "reviews": self.id_reviews,
                "mean_A": self.by_id["A"] / counts,
                "mean_abs_A": self.by_id["abs_A"] / counts,
                "mean_read": self.by_id["read"] / counts,
                "mean_retention": self.by_id["retention"]
                / np.where(retention_count > 0, retention_count, np.nan),
            }
            for name in self.names:
                report_by_id[f"mean_abs_A_{name}"] = self.by_id[f"abs_A_{name}"] / counts
        words = {
            label: _summaries(
                self.tracked[label],
                self.names,
                n_boot,
                np.random.default_rng([seed, int(word_id) + 1]),
            )
            for label, word_id in self.word_ids.items()
        }
        everything = _summaries(
            self.everything, self.names, n_boot, np.random.default_rng([seed, 0])
        )
        return {"words": words, "all": everything, "by_id": report_by_id}


def word_ledger(
    model: keras.Model,
    reviews,
    word_ids=None,
    batch_size: int = 64,
    n_boot: int = 1000,
    seed: int = 0,
    bootstrap_limit: int = 100_000,
    gate_model: keras.Model | None = None,
) -> dict:
    """The ledger summed up by word over many reviews.

    reviews: list of <int32>[len_i] id arrays (no padding; empty ones are skipped).
    word_ids: {label: vocabulary id} of the words to report in full (bootstrap intervals and
        half-life medians need per-occurrence values, kept for these words only).
    n_boot, seed: bootstrap replicates and their seed (each key draws from
        default_rng([seed, id + 1]), all tokens from [seed, 0]: results do not depend on
        which other words are asked for).
    bootstrap_limit: above this many occurrences a key's interval is the normal one,
        mean ± 1.96 s/√n from running sums (the bootstrap's large-n limit), and no values
        are kept: memory stays bounded.
    Returns:
        "words": {label: report}, "all": report over every real token, where a report is
            count, reviews (that contain it), mean_A and mean_A_ci (A summed over directions),
            mean_abs_A and mean_abs_A_ci (|A| of that sum), ci_method ("bootstrap" or
            "normal"), mean_read (summed over directions), mean_retention (over both
            directions' writes), half_life_median (median over the writes whose half-life
            was observed inside the review, both directions) and half_life_censored (share of
            the writes with a nonzero write that were not halved before the review ended),
            and per direction ("forward", "backward") mean_abs_A, mean_read, mean_retention,
            half_life_median, half_life_censored. None where a word never occurs.
        "by_id": every vocabulary id, <[vocab]> arrays: count, reviews (int64), mean_A,
            mean_abs_A, mean_read, mean_retention, mean_abs_A_<direction> (float64, NaN
            where count is 0).
    """
    if batch_size < 1 or n_boot < 1 or bootstrap_limit < 1:
        raise ValueError("batch_size, n_boot and bootstrap_limit must be positive")
    sums = WordLedger(model, word_ids, bootstrap_limit, gate_model)
    for ids, _ in review_batches(reviews, batch_size):
        sums.add(ids, gates(model, ids, sums.gate_model))
    return sums.report(n_boot, seed)


def top_words(report: dict, n: int = 30, min_count: int = 50, exclude=(0, 1)) -> dict:
    """The word ids whose tokens earn the logit the most, each way.

    report: a word_ledger result (its "by_id" arrays).
    n: ids per list; min_count: occurrences an id needs; exclude: ids never listed (padding
    0 and [UNK] 1 by default).
    Returns {"positive": <int64>[<= n] ids with mean A > 0, highest first; "negative": ids with
    mean A < 0, lowest first}.
    """
    by_id = report["by_id"]
    counts, mean_A = by_id["count"], by_id["mean_A"]
    eligible = counts >= min_count
    eligible[[k for k in exclude if 0 <= k < len(counts)]] = False
    ids = np.flatnonzero(eligible)
    order = ids[np.argsort(-mean_A[ids], kind="stable")]
    positive = order[mean_A[order] > 0][:n]
    negative = order[::-1][mean_A[order[::-1]] < 0][:n]
    return {"positive": positive.astype(np.int64), "negative": negative.astype(np.int64)}
