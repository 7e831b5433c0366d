"""Length buckets: which reviews share a batch, and how long its rows are.

Shapes (config.batch_shapes, resolved by `fixed_shapes`). Dynamic: reviews of similar length
share a batch (length buckets of about equally many reviews of the split), each batch is
padded to its own longest review, and a bucket's last batch is short: the least padding, in
some 50 shapes an epoch on IMDB, which tf.function's relaxed shapes trace at no cost. Fixed:
reviews go to length buckets (bucket_boundaries: about equally many training reviews
in each), and a bucket's batches are padded to the bucket's longest length, not to their own
longest review; every batch holds exactly batch_size rows, a bucket's last, short batch being
topped up with padding rows (all ids 0, label 0, weight 0). So an epoch brings one shape per
bucket, the same every epoch, for training and for evaluation alike: JAX and XLA compile a
step once per shape. The weights keep the padding
rows out of the loss and the metrics (model.compile_model divides the loss by the weights'
sum), so a padded batch trains and scores its reviews exactly as the unpadded one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstm_reviews.backend import runs_on_tensorflow
from lstm_reviews.data.text import keep_last_tokens
from lstm_reviews.data.tokens import TokenSplit

# 16 shapes per batch size. On IMDB, 8.5% of the training batches' positions are padding
# (6.8% when each batch was padded to its own longest review, in 53 shapes an epoch).
NUM_BUCKETS = 16


def fixed_shapes(config) -> bool:
    """Whether batches have fixed shapes, per config.batch_shapes: "fixed" or "dynamic", and
    "auto" fixed under the JAX and PyTorch backends (a compilation per shape) but dynamic
    under TensorFlow (relaxed tracing takes any shape; the least padding)."""
    if config.batch_shapes == "auto":
        return not runs_on_tensorflow()
    return config.batch_shapes == "fixed"


def _quantile_bounds(lengths: np.ndarray, num_buckets: int) -> list:
    """Exclusive upper bounds at the inner quantiles of `lengths`: buckets of about equally
    many reviews (none for no lengths)."""
    if not len(lengths):
        return []
    quantiles = np.quantile(lengths, np.linspace(0, 1, num_buckets + 1)[1:-1])
    return [int(q) + 1 for q in quantiles]


def own_boundaries(lengths: np.ndarray, num_buckets: int = NUM_BUCKETS) -> list:
    """Dynamic shapes: exclusive upper bounds of buckets of about equally many `lengths`; a
    review past the last bound goes to one more bucket."""
    lengths = np.asarray(lengths)
    if not len(lengths):
        return [1]
    return sorted(set(_quantile_bounds(lengths, num_buckets))) or [int(lengths.max()) + 1]


def bucket_boundaries(lengths: np.ndarray, max_length: int, num_buckets: int = NUM_BUCKETS) -> list:
    """Exclusive upper bounds of length buckets holding about equally many of `lengths`.

    lengths: <int>[reviews], already cut to max_length. The last bound is max_length + 1, so
    every review has a bucket; a bucket's batches are padded to its bound - 1 (tf.data's
    pad_to_bucket_boundary), never fewer than 1 step. Worked example: lengths [3, 5, 9, 40],
    max_length 40, 2 buckets: the median 7 gives [8, 41]; reviews of 3 and 5 tokens are padded
    to 7, those of 9 and 40 to 40.
    """
    bounds = _quantile_bounds(np.asarray(lengths), num_buckets)
    # At least 2: a bucket padded to 0 steps would give the LSTM nothing to run over.
    return sorted({max(bound, 2) for bound in bounds} | {max_length + 1})


def truncated(split: TokenSplit, max_length: int):
    ids = [keep_last_tokens(np.asarray(x, np.int32), max_length) for x in split.ids]
    return ids, np.fromiter((len(x) for x in ids), np.int64, len(ids))


def checked_boundaries(
    lengths, max_length: int, bucket: bool, boundaries: Sequence[int] | None
) -> list:
    """The given boundaries (checked), else this split's own (bucket) or one bucket."""
    if boundaries is None:
        return bucket_boundaries(lengths, max_length) if bucket else [max_length + 1]
    boundaries = [int(b) for b in boundaries]
    if boundaries != sorted(set(boundaries)) or boundaries[0] < 2 or boundaries[-1] <= max_length:
        raise ValueError(
            f"bucket boundaries must increase from >= 2 to above max_length {max_length}, "
            f"got {boundaries}"
        )
    return boundaries
