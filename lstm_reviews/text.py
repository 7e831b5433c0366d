"""Text to token ids and back to batches' rows: the one path every part of the project shares.

    standardize_review   raw text -> lowercase words (TF string ops, so it runs in a SavedModel)
    build_vectorizer     a TextVectorization adapted on the training split: the vocabulary
    vectorizer_from_vocabulary   the same vectorizer again, from a saved vocabulary
    encode               texts -> token ids, one <int32>[tokens] array per text
    keep_last_tokens     a review cut to max_length keeps its end
    pad                  id arrays -> <int32>[batch, time], right-padded with 0

Training (tokens.py, batches.py), the SavedModel (export.py) and the inspection
(inspection.py, ledger.py) all go through these functions, so a review is read the same
way everywhere.

Standardization lowercases, removes HTML tags (`<br />`), keeps apostrophes inside words
("don't", "isn't": negation flips a review), splits "!" and "?" into tokens of their own
(they carry emphasis and sarcasm), and turns every other punctuation mark into a space (it
mostly separates words, and keeping it would spread one word over many vocabulary entries).
Id 0 is padding and never a token; id 1 is [UNK].
"""

from __future__ import annotations

from collections.abc import Sequence

import keras  # with the JAX, PyTorch or NumPy backend this does not load TensorFlow
import numpy as np

# Recorded in every token cache and run directory: change it whenever standardize_review
# changes its output, so that ids made by the old rule are never read by the new one.
STANDARDIZE_VERSION = "2"
PADDING, UNKNOWN = "", "[UNK]"  # ids 0 and 1 of every vocabulary


@keras.saving.register_keras_serializable(package="lstm_reviews")
def standardize_review(text):
    """Lowercase, no HTML tags, apostrophes only inside words, "!" and "?" as tokens.

    text: <string>[...] -> <string>[...], words separated by spaces. TF string ops only,
    so it runs inside a SavedModel. Bump STANDARDIZE_VERSION when changing it.
    """
    import tensorflow as tf

    # lower() with an encoding stops at a NUL byte, cutting the review there: a NUL separates
    # words like other control characters. No IMDB review holds one: same ids, same version.
    text = tf.strings.regex_replace(text, r"\x00", " ")
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"</?[a-z][^<>]*>", " ")  # <br />, <i>, </p>, ...
    text = tf.strings.regex_replace(text, "[’‘´`]", "'")  # typographic apostrophes as "'"
    text = tf.strings.regex_replace(text, r"([!?])", r" \1 ")
    text = tf.strings.regex_replace(text, r"[^\pL\pN'!?]+", " ")  # other punctuation separates
    # RE2 has no lookaround: drop apostrophes at a word's start, then at its end (quotes).
    text = tf.strings.regex_replace(text, r"(^|[^\pL\pN])'+", r"\1 ")
    text = tf.strings.regex_replace(text, r"'+([^\pL\pN]|$)", r" \1")
    return text


def _text_vectorization(**kwargs):
    return keras.layers.TextVectorization(
        standardize=standardize_review, split="whitespace", output_mode="int", ragged=True, **kwargs
    )


def build_vectorizer(texts: Sequence[str], vocab_size: int):
    """A TextVectorization adapted on `texts` (the training split only).

    Output: <int32> ragged [batch, (tokens)]; 0 is padding, 1 is [UNK]. vocab_size counts both.
    """
    import tensorflow as tf

    vectorizer = _text_vectorization(max_tokens=vocab_size)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(list(texts)).batch(1024))
    return vectorizer


def vectorizer_from_vocabulary(vocabulary: Sequence[str]):
    """The vectorizer for a saved vocabulary ('' and '[UNK]' first, as get_vocabulary() gives)."""
    vocabulary = list(vocabulary)
    if vocabulary[:2] == [PADDING, UNKNOWN]:
        vocabulary = vocabulary[2:]  # TextVectorization adds the padding and OOV entries itself
    return _text_vectorization(vocabulary=vocabulary)


def encode(vectorizer, texts: Sequence[str], batch_size: int = 2048) -> list:
    """Token ids of each text: a list of <int32>[length], one per text, untruncated."""
    import tensorflow as tf

    if not len(texts):
        return []
    flats, lengths = [], []
    dataset = tf.data.Dataset.from_tensor_slices(list(texts)).batch(batch_size)
    for ragged in dataset.map(vectorizer, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2):
        flats.append(ragged.flat_values.numpy().astype(np.int32))
        lengths.append(ragged.row_lengths().numpy())
    return np.split(np.concatenate(flats), np.cumsum(np.concatenate(lengths))[:-1])


def keep_last_tokens(ids, max_length: int):
    """The last max_length tokens of one review's ids <int>[tokens] (all of them if fewer):
    a review's closing lines usually hold its verdict."""
    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length!r}")
    return ids[-max_length:] if len(ids) > max_length else ids


def pad(reviews: Sequence[np.ndarray], length: int = 0) -> np.ndarray:
    """Id arrays -> <int32>[len(reviews), time], right-padded with 0.

    time = the longest review, or `length` if that is larger (a fixed shape).
    Worked example: pad([[5, 6, 7], [8]]) == [[5, 6, 7], [8, 0, 0]].
    """
    longest = max((len(review) for review in reviews), default=0)
    if length and length < longest:
        raise ValueError(f"length {length} is shorter than the longest review ({longest})")
    ids = np.zeros((len(reviews), max(longest, length)), np.int32)
    for row, review in zip(ids, reviews):
        row[: len(review)] = review
    return ids
