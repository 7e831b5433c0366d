"""Batches for training and evaluation, of a few fixed shapes:
(ids <int32>[batch, time], labels <float32>[batch], weights <float32>[batch]).

`make_dataset` (tf.data) and `NumpyBatches` (a `keras.utils.PyDataset`, NumPy alone: the
JAX and PyTorch backends) make the same batches: ids right-padded with 0 (0 is never a
token; the Embedding's mask_zero masks it). A review longer than max_length keeps its LAST
tokens: reviewers tend to close with their verdict ("... 8/10, go see it"), while the
opening is often plot summary. `make_batches` picks the one for the backend.

Shapes. Reviews go to length buckets (bucket_boundaries: about equally many training reviews
in each), and a bucket's batches are padded to the bucket's longest length, not to their own
longest review; every batch holds exactly batch_size rows, a bucket's last, short batch being
topped up with padding rows (all ids 0, label 0, weight 0). So an epoch brings one shape per
bucket, the same every epoch, for training and for evaluation alike: JAX and XLA compile a
step once per shape, and tf.function traces once per shape. The weights keep the padding
rows out of the loss and the metrics (model.compile_model divides the loss by the weights'
sum), so a padded batch trains and scores its reviews exactly as the unpadded one would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import keras  # with the JAX, PyTorch or NumPy backend this does not load TensorFlow
import numpy as np

from lstm_reviews.text import keep_last_tokens, pad
from lstm_reviews.tokens import TokenSplit, flat

# Inspection and the ledger: lengths rounded up to a multiple of 16, at most 38 for 600 tokens.
LENGTH_MULTIPLE = 16
# 16 shapes per batch size. On IMDB, 8.5% of the training batches' positions are padding
# (6.8% when each batch was padded to its own longest review, in 53 shapes an epoch).
NUM_BUCKETS = 16


def bucket_boundaries(lengths: np.ndarray, max_length: int, num_buckets: int = NUM_BUCKETS) -> list:
    """Exclusive upper bounds of length buckets holding about equally many of `lengths`.

    lengths: <int>[reviews], already cut to max_length. The last bound is max_length + 1, so
    every review has a bucket; a bucket's batches are padded to its bound - 1 (tf.data's
    pad_to_bucket_boundary), never fewer than 1 step. Worked example: lengths [3, 5, 9, 40],
    max_length 40, 2 buckets: the median 7 gives [8, 41]; reviews of 3 and 5 tokens are padded
    to 7, those of 9 and 40 to 40.
    """
    lengths = np.asarray(lengths)
    quantiles = (
        np.quantile(lengths, np.linspace(0, 1, num_buckets + 1)[1:-1]) if len(lengths) else []
    )
    # At least 2: a bucket padded to 0 steps would give the LSTM nothing to run over.
    return sorted({max(int(q) + 1, 2) for q in quantiles} | {max_length + 1})


def _truncated(split: TokenSplit, max_length: int):
    ids = [keep_last_tokens(np.asarray(x, np.int32), max_length) for x in split.ids]
    return ids, np.fromiter((len(x) for x in ids), np.int64, len(ids))


def _boundaries(lengths, max_length: int, bucket: bool, boundaries: Sequence[int] | None) -> list:
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


def make_dataset(
    split: TokenSplit,
    batch_size: int,
    max_length: int,
    shuffle: bool = False,
    seed: int = 0,
    bucket: bool = True,
    boundaries: Sequence[int] | None = None,
):
    """tf.data batches: (ids <int32>[batch_size, time], labels <float32>[batch_size],
    weights <float32>[batch_size]), weight 0 for the padding rows that fill a short batch.

    time is the bucket's bound - 1 (see the module's docstring). boundaries: the length
    buckets (bucket_boundaries); None: this split's own, or with bucket=False a single
    bucket, every batch then max_length long.
    """
    import tensorflow as tf

    ids, lengths = _truncated(split, max_length)
    boundaries = _boundaries(lengths, max_length, bucket, boundaries)
    all_ids = tf.constant(flat(ids))
    ends = np.cumsum(lengths)
    labels = split.labels.astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((ends - lengths, ends, labels))
    # Slicing one flat tensor: from_tensor_slices of a RaggedTensor yields ragged elements,
    # which padded_batch refuses.
    dataset = dataset.map(lambda start, end, label: (all_ids[start:end], label))
    if shuffle:
        dataset = dataset.shuffle(max(len(ids), 1), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda ids, label: tf.shape(ids)[0],
        bucket_boundaries=boundaries,
        # tf.data keeps a bucket past the last bound: no review reaches it (all < its bound).
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes=([None], []),
        padding_values=(0, 0.0),
        pad_to_bucket_boundary=True,
    )

    def fill(ids, labels):  # a bucket's last batch may be short: padding rows of weight 0
        missing = batch_size - tf.shape(ids)[0]
        weights = tf.pad(tf.ones_like(labels), [[0, missing]])
        return tf.pad(ids, [[0, missing], [0, 0]]), tf.pad(labels, [[0, missing]]), weights

    return dataset.map(fill).prefetch(tf.data.AUTOTUNE)


class NumpyBatches(keras.utils.PyDataset):
    """The batches of make_dataset, from numpy alone (JAX/PyTorch backends, no TensorFlow).

    Item i: (ids <int32>[batch_size, time], labels <float32>[batch_size], weights
    <float32>[batch_size]), as make_dataset gives them. Reviews go to the same length buckets;
    a bucket yields a batch when it holds batch_size reviews, and its leftovers, topped up
    with padding rows, close the epoch. Shuffled anew each epoch when shuffle=True, seeded
    by (seed, epoch). rows(i) names the reviews of item i.
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._ids, lengths = _truncated(split, max_length)
        self._labels = np.asarray(split.labels, np.float32)
        self._batch_size, self._shuffle, self._seed = batch_size, shuffle, seed
        boundaries = _boundaries(lengths, max_length, bucket, boundaries)
        self._buckets = np.searchsorted(boundaries, lengths, side="right")
        self._times = np.asarray(boundaries) - 1  # a bucket's padded length
        self._epoch = 0
        self._batches = self._plan()

    def _plan(self) -> list:
        count = len(self._ids)
        order = (
            np.random.default_rng([self._seed, self._epoch]).permutation(count)
            if self._shuffle
            else np.arange(count)
        )
        batches, pending = [], defaultdict(list)
        for row in order:
            bucket = pending[self._buckets[row]]
            bucket.append(row)
            if len(bucket) == self._batch_size:
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
    """tf.data under the TensorFlow backend (when TensorFlow is installed), else NumpyBatches."""
    if keras.backend.backend() != "tensorflow":
        return False
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def split_boundaries(split: TokenSplit, config) -> list:
    """The length buckets of `split` (the training split's serve every split), per `config`."""
    return _boundaries(
        _truncated(split, config.max_length)[1], config.max_length, config.bucket_by_length, None
    )


def make_batches(split: TokenSplit, config, boundaries: Sequence[int], train: bool = False):
    """Batches of (ids <int32>[batch, time], labels <float32>[batch], weights <float32>[batch])
    for `split`, per `config`: shuffled, of config.batch_size rows, when `train`; else in
    order, of config.eval_batch_size rows. boundaries: split_boundaries(training split).

    tf.data under the TensorFlow backend; NumpyBatches otherwise (no TensorFlow needed).
    """
    kwargs = dict(
        batch_size=config.batch_size if train else config.eval_batch_size,
        max_length=config.max_length,
        shuffle=train,
        seed=config.seed,
        boundaries=boundaries,
    )
    return make_dataset(split, **kwargs) if uses_tf_data() else NumpyBatches(split, **kwargs)


def count_tokens(split: TokenSplit, max_length: int) -> int:
    """Non-padding tokens per epoch of `split` once reviews are cut to max_length."""
    return int(sum(min(len(ids), max_length) for ids in split.ids))
