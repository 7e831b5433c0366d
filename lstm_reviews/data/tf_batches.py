"""Batches from tf.data (the TensorFlow backend's path; batches.py's NumpyBatches makes the
same batches from NumPy alone): see batches.py for what a batch holds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstm_reviews.data.buckets import checked_boundaries, own_boundaries, truncated
from lstm_reviews.data.tokens import TokenSplit, flat


def make_dataset(
    split: TokenSplit,
    batch_size: int,
    max_length: int,
    shuffle: bool = False,
    seed: int = 0,
    bucket: bool = True,
    boundaries: Sequence[int] | None = None,
    fixed: bool = True,
):
    """tf.data batches: (ids <int32>[batch_size, time], labels <float32>[batch_size],
    weights <float32>[batch_size]), weight 0 for the padding rows that fill a short batch.

    time is the bucket's bound - 1 (see the module's docstring). boundaries: the length
    buckets (bucket_boundaries); None: this split's own, or with bucket=False a single
    bucket, every batch then max_length long. fixed=False: dynamic shapes, (ids <int32>[batch,
    time], labels <float32>[batch]), time the batch's longest review, boundaries this split's
    own, a bucket's last batch short (bucket=False: batches in order).
    """
    import tensorflow as tf

    ids, lengths = truncated(split, max_length)
    if fixed:
        boundaries = checked_boundaries(lengths, max_length, bucket, boundaries)
    elif bucket:
        boundaries = own_boundaries(lengths)
    all_ids = tf.constant(flat(ids))
    ends = np.cumsum(lengths)
    labels = split.labels.astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((ends - lengths, ends, labels))
    # Slicing one flat tensor: from_tensor_slices of a RaggedTensor yields ragged elements,
    # which padded_batch refuses.
    dataset = dataset.map(lambda start, end, label: (all_ids[start:end], label))
    if shuffle:
        dataset = dataset.shuffle(max(len(ids), 1), seed=seed, reshuffle_each_iteration=True)
    if not fixed and not bucket:
        dataset = dataset.padded_batch(
            batch_size, padded_shapes=([None], []), padding_values=(0, 0.0)
        )
        return dataset.prefetch(tf.data.AUTOTUNE)
    return _bucketed(dataset, boundaries, batch_size, fixed).prefetch(tf.data.AUTOTUNE)


def _bucketed(dataset, boundaries: Sequence[int], batch_size: int, fixed: bool):
    """(ids, label) elements -> batches of one length bucket each; with fixed shapes padded
    to the bucket's bound - 1 and topped up to batch_size rows of weight 0."""
    import tensorflow as tf

    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda ids, label: tf.shape(ids)[0],
        bucket_boundaries=boundaries,
        # tf.data keeps a bucket past the last bound: with fixed shapes no review reaches it.
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes=([None], []),
        padding_values=(0, 0.0),
        pad_to_bucket_boundary=fixed,
    )
    if not fixed:
        return dataset

    def fill(ids, labels):  # a bucket's last batch may be short: padding rows of weight 0
        missing = batch_size - tf.shape(ids)[0]
        weights = tf.pad(tf.ones_like(labels), [[0, missing]])
        return tf.pad(ids, [[0, missing], [0, 0]]), tf.pad(labels, [[0, missing]]), weights

    return dataset.map(fill)
