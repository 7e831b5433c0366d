"""Cross-checks of the memory ledger's shares A_t (inspection.ledger): what deleting each
token does to the logit (occlusion), and how two rankings of the tokens agree (Spearman).
"""

from __future__ import annotations

import keras
import numpy as np

from lstm_reviews.data.text import pad
from lstm_reviews.inspection.gate_model import model_logits


def occlusion(model: keras.Model, ids, batch_size: int = 256) -> np.ndarray:
    """The logit change from removing each token, as an effect: <float64>[time].

    ids: one review <int32>[time] (no padding). Entry t is logit(review) − logit(review
    without token t), dropout off: positive when token t pushes towards positive, the sign
    convention of A. The model re-reads every shortened review (later gates change too), so
    this is a cross-check of A, not its equal. A one-token review's occlusion leaves an
    empty review, whose pooled features are 0: its logit is the bias.
    """
    ids = np.asarray(ids).reshape(-1)
    if ids.size == 0 or np.any(ids == 0):
        raise ValueError("occlusion needs one review of at least one token and no padding")
    ids = ids.astype(np.int32)
    length = len(ids)
    full = model_logits(model, ids[None, :])[0]
    # Row t: the review without token t, right-padded (all padding for a one-token review).
    shortened = pad([np.delete(ids, t) for t in range(length)], length=max(length - 1, 1))
    logits = [
        model_logits(model, shortened[k : k + batch_size]) for k in range(0, length, batch_size)
    ]
    return full - np.concatenate(logits)


def _ranks(x):
    """Ranks 0..n-1 of x, ties sharing their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts
    return (first + (counts - 1) / 2.0)[inverse.reshape(-1)]


def rank_correlation(a, b) -> float:
    """Spearman's rank correlation of two <[n]> arrays (Pearson's of the tie-averaged ranks).

    NaN when either is constant; ValueError for different lengths, n < 2 or non-finite values.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two arrays of the same length >= 2, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("rank_correlation needs finite values")
    rank_a, rank_b = _ranks(a), _ranks(b)
    rank_a -= rank_a.mean()
    rank_b -= rank_b.mean()
    denominator = np.sqrt((rank_a * rank_a).sum() * (rank_b * rank_b).sum())
    if denominator == 0:
        return float("nan")
    return float((rank_a * rank_b).sum() / denominator)
