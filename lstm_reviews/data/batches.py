"""Batches for training and evaluation: (ids <int32>[batch, time], labels <float32>[batch]),
and with fixed shapes weights <float32>[batch].

`NumpyBatches` (a `keras.utils.PyDataset`, NumPy alone) and `make_dataset` (tf.data, for
evaluation under TensorFlow: tf_batches.py) make the same batches: ids right-padded with 0
(0 is never a token; the Embedding's mask_zero masks it). A review longer than max_length
keeps its LAST tokens: reviewers tend to close with their verdict ("... 8/10, go see it"),
while the opening is often plot summary. Training batches (`epoch_batches`) come from NumpyBatches
under every backend; `make_batches` picks the evaluation batches' maker for the backend.

Shapes (config.batch_shapes, resolved by `fixed_shapes`): see buckets.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import keras  # with the JAX, PyTorch or NumPy backend this does not load TensorFlow
import numpy as np

from lstm_reviews.backend import runs_on_tensorflow
from lstm_reviews.data.buckets import (
    checked_boundaries,
    fixed_shapes,
    own_boundaries,
    truncated,
)
from lstm_reviews.data.text import keep_last_tokens, pad
from lstm_reviews.data.tf_batches import make_dataset
from lstm_reviews.data.tokens import TokenSplit

# Inspection and the ledger: lengths rounded up to a multiple of 16, at most 38 for 600 tokens.
LENGTH_MULTIPLE = 16


def eval_batch_size(config) -> int:
    """Reviews per validation and test batch: config.eval_batch_size, else the training's."""
    return config.eval_batch_size or config.batch_size


class NumpyBatches(keras.utils.PyDataset):
    """The batches of make_dataset, from numpy alone (JAX/PyTorch backends, no TensorFlow).

    Item i: (ids <int32>[batch_size, time], labels <float32>[batch_size], weights
    <float32>[batch_size]), as make_dataset gives them. Reviews go to the same length buckets;
    a bucket yields a batch when it holds batch_size reviews, and its leftovers, topped up
    with padding rows, close the epoch. Shuffled anew each epoch when shuffle=True, seeded
    by (seed, epoch), from `epoch` on. rows(i) names the reviews of item i. fixed=False:
    make_dataset's dynamic batches, (ids <int32>[batch, time], labels <float32>[batch]), the
    leftovers short, no padding rows (bucket=False: batches in order).
    """

    def __init__(
        self,
        split: TokenSplit,
        batch_size: int,
        max_length: int,
        shuffle: bool = False,
        seed: int = 0,
        bucket: bool = True,
        boundaries: Sequence[int] | None = None,
        fixed: bool = True,
        epoch: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._ids, lengths = truncated(split, max_length)
        self._labels = np.asarray(split.labels, np.float32)
        self._batch_size, self._shuffle, self._seed = batch_size, shuffle, seed
        self._fixed = fixed
        if fixed:
            boundaries = checked_boundaries(lengths, max_length, bucket, boundaries)
            self._times = np.asarray(boundaries) - 1  # a bucket's padded length
        else:
            boundaries = own_boundaries(lengths) if bucket else None
        self._buckets = (
            None if boundaries is None else np.searchsorted(boundaries, lengths, side="right")
        )
        self._epoch = epoch  # a resumed run starts at its epoch's order
        self._batches = self._plan()

    def _plan(self) -> list:
        count = len(self._ids)
        order = epoch_order(count, self._seed, self._epoch) if self._shuffle else np.arange(count)
        size = self._batch_size
        if self._buckets is None:
            return [order[start : start + size] for start in range(0, count, size)]
        batches, pending = [], defaultdict(list)
        for row in order:
            bucket = pending[self._buckets[row]]
            bucket.append(row)
            if len(bucket) == size:
                batches.append(np.array(bucket))
                bucket.clear()
        batches.extend(np.array(rows) for _, rows in sorted(pending.items()) if rows)
        return batches

    def __len__(self) -> int:
        return len(self._batches)  # the same every epoch: sum of ceil(bucket size / batch)

    def rows(self, index: int) -> np.ndarray:
        """<int64>[reviews]: the split's reviews in item `index`, its first rows, in order."""
        return self._batches[index]

    def __getitem__(self, index):
        rows = self._batches[index]
        if not self._fixed:
            return pad([self._ids[row] for row in rows]), self._labels[rows]
        time = int(self._times[self._buckets[rows[0]]])
        missing = self._batch_size - len(rows)
        ids = np.pad(pad([self._ids[row] for row in rows], length=time), [(0, missing), (0, 0)])
        labels = np.pad(self._labels[rows], (0, missing))
        weights = np.pad(np.ones(len(rows), np.float32), (0, missing))
        return ids, labels, weights

    def on_epoch_end(self) -> None:
        self._epoch += 1
        if self._shuffle:
            self._batches = self._plan()


def by_length(reviews: Sequence[np.ndarray], batch_size: int, multiple: int = LENGTH_MULTIPLE):
    """Prediction batches (ids <int32>[<= batch_size, time], rows: the reviews' indices) of
    `reviews` (id arrays, no padding), shortest first; empty reviews are skipped.

    time is the batch's longest review rounded up to a multiple of `multiple`: at most
    ceil(longest / multiple) lengths, so at most that many shapes, and one more for the last,
    short batch, whatever the reviews. Worked example: lengths [3, 20, 5], batch_size 2,
    multiple 16 -> rows [0, 2] as <int32>[2, 16], then rows [1] as <int32>[1, 32].
    """
    order = sorted(
        (k for k, review in enumerate(reviews) if len(review)), key=lambda k: len(reviews[k])
    )
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        longest = max(len(reviews[k]) for k in rows)
        yield pad([reviews[k] for k in rows], length=-(-longest // multiple) * multiple), rows


def padding_share(batches) -> float:
    """Share of padding (id 0) among all positions of (ids, labels[, weights]) batches;
    padding rows count as padding."""
    padding = total = 0
    for ids, *_ in batches:
        ids = np.asarray(ids)
        padding += int(np.sum(ids == 0))
        total += ids.size
    return padding / total if total else 0.0


def uses_tf_data() -> bool:
    """Evaluation batches from tf.data under the TensorFlow backend (when TensorFlow is
    installed), else NumpyBatches. model.evaluate turns a PyDataset into a tf.data pipeline
    whose shapes come from its first batches, which dynamic batches of other lengths break."""
    return runs_on_tensorflow()


def split_boundaries(split: TokenSplit, config) -> list | None:
    """The length buckets of `split` (the training split's serve every split), per `config`;
    None with dynamic shapes (fixed_shapes), where each split has its own."""
    if not fixed_shapes(config):
        return None
    return checked_boundaries(
        truncated(split, config.max_length)[1], config.max_length, config.bucket_by_length, None
    )


def evaluation_length(split: TokenSplit, config) -> int:
    """Tokens kept per review of `split` when it is evaluated: its longest review's, at most
    config.eval_max_length (the bound that keeps every IMDB review whole)."""
    longest = max((len(ids) for ids in split.ids), default=1)
    return max(min(longest, config.eval_max_length), 1)


def evaluation_boundaries(boundaries: Sequence[int], length: int) -> list:
    """The training split's length buckets, extended for evaluation reviews of up to `length`
    tokens by doubling the last bucket's length until it holds them: a few more shapes.

    Worked example: [8, 41] (max_length 40), length 100 -> [8, 41, 81, 161]."""
    boundaries = list(boundaries)
    while boundaries[-1] <= length:
        boundaries.append(2 * (boundaries[-1] - 1) + 1)
    return boundaries


def make_batches(split: TokenSplit, config, boundaries: Sequence[int] | None):
    """Evaluation batches of (ids <int32>[batch, time], labels <float32>[batch], weights
    <float32>[batch]) for `split`, per `config`: in order, of eval_batch_size(config) rows,
    reviews cut to evaluation_length (whole by default). boundaries:
    split_boundaries(training split), extended for the longer reviews. With dynamic shapes
    (fixed_shapes), (ids, labels) batches, boundaries unused. Training batches: epoch_batches.

    tf.data under the TensorFlow backend (uses_tf_data); NumpyBatches otherwise (no
    TensorFlow needed).
    """
    fixed = fixed_shapes(config)
    length = evaluation_length(split, config)
    kwargs = dict(
        batch_size=eval_batch_size(config),
        max_length=length,
        bucket=config.bucket_by_length,
        boundaries=evaluation_boundaries(boundaries, length) if fixed and boundaries else None,
        fixed=fixed,
    )
    return make_dataset(split, **kwargs) if uses_tf_data() else NumpyBatches(split, **kwargs)


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """<int64>[count]: the order of the training reviews in 0-based `epoch`, a function of
    (seed, epoch) alone, as NumpyBatches shuffles: a resumed run finds any epoch's order
    without replaying the epochs before it, as tf.data's reshuffle_each_iteration would need."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def epoch_batches(
    split: TokenSplit, config, boundaries: Sequence[int] | None, epoch: int, first_step: int = 0
):
    """The training batches of 0-based `epoch` from batch `first_step` on, make_batches' but
    of config.batch_size rows and shuffled by (config.seed, epoch) alone, so a resumed run
    sees each epoch's batches in the order the uninterrupted run saw them. An iterable."""
    fixed = fixed_shapes(config)
    kwargs = dict(
        batch_size=config.batch_size,
        max_length=config.max_length,
        seed=config.seed,
        bucket=config.bucket_by_length,
        boundaries=boundaries if fixed else None,
        fixed=fixed,
    )
    # NumPy under every backend: train.py calls train_on_batch batch by batch, so tf.data's
    # prefetching has nothing to overlap with (benchmarks/bench_batches.py: the same batches).
    made = NumpyBatches(split, shuffle=True, epoch=epoch, **kwargs)
    return (made[index] for index in range(first_step, len(made)))


class UnlabeledRows:
    """Unlabeled reviews to end each training batch with (--vat-epsilon).

    reviews: the unlabeled reviews' ids, each <int>[tokens]; cut to their last max_length
    tokens. rows(count, width, epoch, step) -> <int32>[count, width]: `count` reviews drawn by
    (seed, epoch, step) alone, so a resumed run draws what the uninterrupted one did, from the
    `window` reviews whose lengths are nearest below `width` (a batch of short reviews gets
    short ones: little padding, few tokens cut), each cut to its last `width` tokens.

    Worked example, window 2: reviews of lengths 3, 5, 9, 40 and width 8: the draw is from
    the reviews of 3 and 5 tokens; width 40: from those of 9 and 40.
    """

    def __init__(self, reviews: Sequence[np.ndarray], max_length: int, seed: int, window=2048):
        if not len(reviews):
            raise ValueError("no unlabeled reviews to draw from")
        cut = [keep_last_tokens(np.asarray(review, np.int32), max_length) for review in reviews]
        lengths = np.fromiter((len(review) for review in cut), np.int64, len(cut))
        order = np.argsort(lengths, kind="stable")
        self._reviews = [cut[index] for index in order]
        self._lengths = lengths[order]
        self._seed, self._window = seed, window

    def rows(self, count: int, width: int, epoch: int, step: int) -> np.ndarray:
        if width <= 0:  # pad_sequences would keep a review whole for maxlen 0
            raise ValueError(f"max_length must be positive, got {width!r}")
        below = int(np.searchsorted(self._lengths, width, side="right"))
        end = min(len(self._reviews), max(below, self._window))
        start = max(0, end - self._window)
        rng = np.random.default_rng([self._seed, epoch, step])
        picked = start + rng.choice(end - start, size=count, replace=end - start < count)
        # Each cut to its last `width` tokens (keep_last_tokens) and right-padded: pad's.
        return keras.utils.pad_sequences(
            [self._reviews[i] for i in picked],
            maxlen=width,
            dtype="int32",
            padding="post",
            truncating="pre",
        )


def with_unlabeled(ids, labels, weights, unlabeled: np.ndarray):
    """A training batch (ids <int32>[batch, time], labels <float32>[batch], weights
    <float32>[batch] or None) followed by the rows `unlabeled` <int32>[U, time], of label 0
    and weight 0 (AdversarialClassifier reads them apart): NumPy arrays of batch + U rows."""
    ids, labels = np.asarray(ids), np.asarray(labels)
    if weights is not None:
        weights = np.concatenate([np.asarray(weights), np.zeros(len(unlabeled), "float32")])
    return (
        np.concatenate([ids, unlabeled.astype(ids.dtype)]),
        np.concatenate([labels, np.zeros(len(unlabeled), labels.dtype)]),
        weights,
    )
