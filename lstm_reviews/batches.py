"""Batches for training and evaluation: (ids <int32>[batch, time], labels <float32>[batch]).

`make_dataset` (tf.data) and `NumpyBatches` (a `keras.utils.PyDataset`, NumPy alone: the
JAX and PyTorch backends) make the same batches: ids right-padded with 0 (0 is never a
token; the Embedding's mask_zero masks it). A review longer than max_length keeps its LAST
tokens: reviewers tend to close with their verdict ("... 8/10, go see it"), while the
opening is often plot summary. With bucketing, reviews of similar length share a batch, so
far less of each batch is padding. `make_batches` picks the one for the backend.
"""

from __future__ import annotations

from collections import defaultdict

import keras  # with the JAX, PyTorch or NumPy backend this does not load TensorFlow
import numpy as np

from lstm_reviews.text import keep_last_tokens, pad
from lstm_reviews.tokens import TokenSplit, flat


def bucket_boundaries(lengths: np.ndarray, num_buckets: int = 16) -> list:
    """Upper bounds (exclusive) of length buckets holding about equally many reviews."""
    lengths = np.asarray(lengths)
    if not len(lengths):
        return [1]
    quantiles = np.quantile(lengths, np.linspace(0, 1, num_buckets + 1)[1:-1])
    boundaries = sorted({int(q) + 1 for q in quantiles})
    return boundaries or [int(lengths.max()) + 1]


def _truncated(split: TokenSplit, max_length: int):
    ids = [keep_last_tokens(np.asarray(x, np.int32), max_length) for x in split.ids]
    return ids, np.fromiter((len(x) for x in ids), np.int64, len(ids))


def make_dataset(
    split: TokenSplit,
    batch_size: int,
    max_length: int,
    shuffle: bool = False,
    seed: int = 0,
    bucket: bool = True,
    num_buckets: int = 16,
):
    """tf.data batches: (ids <int32>[batch, time] right-padded with 0, labels <float32>[batch]).

    time is the longest review of the batch, at most max_length (longer reviews keep their
    end). bucket: batch reviews of similar length (tf.data's bucket_by_sequence_length).
    """
    import tensorflow as tf

    ids, lengths = _truncated(split, max_length)
    all_ids = tf.constant(flat(ids))
    ends = np.cumsum(lengths)
    labels = split.labels.astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((ends - lengths, ends, labels))
    # Slicing one flat tensor: from_tensor_slices of a RaggedTensor yields ragged elements,
    # which padded_batch refuses.
    dataset = dataset.map(lambda start, end, label: (all_ids[start:end], label))
    if shuffle:
        dataset = dataset.shuffle(max(len(ids), 1), seed=seed, reshuffle_each_iteration=True)
    if bucket:
        boundaries = bucket_boundaries(lengths, num_buckets)
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda ids, label: tf.shape(ids)[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padded_shapes=([None], []),
            padding_values=(0, 0.0),
        )
    else:
        dataset = dataset.padded_batch(
            batch_size, padded_shapes=([None], []), padding_values=(0, 0.0)
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


class NumpyBatches(keras.utils.PyDataset):
    """The batches of make_dataset, from numpy alone (JAX/PyTorch backends, no TensorFlow).

    Item i: (ids <int32>[batch, time] right-padded with 0, labels <float32>[batch]). With
    bucket=True, reviews go to the same length buckets as in make_dataset and a bucket
    yields a batch when it holds batch_size reviews; leftovers close the epoch. Shuffled
    anew each epoch when shuffle=True, seeded by (seed, epoch).
    """

    def __init__(
        self,
        split: TokenSplit,
        batch_size: int,
        max_length: int,
        shuffle: bool = False,
        seed: int = 0,
        bucket: bool = True,
        num_buckets: int = 16,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._ids, self._lengths = _truncated(split, max_length)
        self._labels = np.asarray(split.labels, np.float32)
        self._batch_size, self._shuffle, self._seed = batch_size, shuffle, seed
        self._buckets = (
            np.searchsorted(
                bucket_boundaries(self._lengths, num_buckets), self._lengths, side="right"
            )
            if bucket
            else None
        )
        self._epoch = 0
        self._batches = self._plan()

    def _plan(self) -> list:
        count = len(self._ids)
        order = (
            np.random.default_rng([self._seed, self._epoch]).permutation(count)
            if self._shuffle
            else np.arange(count)
        )
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

    def __getitem__(self, index):
        rows = self._batches[index]
        return pad([self._ids[row] for row in rows]), self._labels[rows]

    def on_epoch_end(self) -> None:
        self._epoch += 1
        if self._shuffle:
            self._batches = self._plan()


def padding_share(batches) -> float:
    """Share of padding (id 0) among all positions of (ids, labels) batches."""
    padding = total = 0
    for ids, _ in batches:
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


def make_batches(split: TokenSplit, config, shuffle: bool):
    """Batches of (ids <int32>[batch, time], labels <float32>[batch]) for `split`, per `config`.

    tf.data under the TensorFlow backend; NumpyBatches otherwise (no TensorFlow needed).
    """
    kwargs = dict(
        batch_size=config.batch_size,
        max_length=config.max_length,
        shuffle=shuffle,
        seed=config.seed,
        bucket=config.bucket_by_length,
    )
    return make_dataset(split, **kwargs) if uses_tf_data() else NumpyBatches(split, **kwargs)


def count_tokens(split: TokenSplit, max_length: int) -> int:
    """Non-padding tokens per epoch of `split` once reviews are cut to max_length."""
    return int(sum(min(len(ids), max_length) for ids in split.ids))
