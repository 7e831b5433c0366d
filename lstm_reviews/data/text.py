"""Text to token ids and back to batches' rows: the one path every part of the project shares.

    standardize_review   raw text -> lowercase words (TF string ops, so it runs in a SavedModel)
    Vectorizer           standardize, split, look up: texts -> ids, on TensorFlow whatever
                         the Keras backend (the SavedModel carries its lookup table)
    build_vectorizer     a Vectorizer adapted on the training split: the vocabulary
    vectorizer_from_vocabulary   the same vectorizer again, from a saved vocabulary
    encode               texts -> token ids, one <int32>[tokens] array per text
    keep_last_tokens     a review cut to max_length keeps its end
    pad                  id arrays -> <int32>[batch, time], right-padded with 0
                         (keras.utils.pad_sequences; cut to their ends with truncating="pre")

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


class Vectorizer:
    """Raw text -> token ids with TensorFlow ops alone, whatever the Keras backend.

    The ids of keras.layers.TextVectorization(standardize=standardize_review,
    split="whitespace", output_mode="int", ragged=True) with the same vocabulary, which that
    layer can only give under the TensorFlow backend: standardize_review, split on
    whitespace, then one lookup table: '' -> 0 (padding), '[UNK]' and unknown words -> 1, the
    vocabulary's other words -> their index.

    Call: texts <string>[batch] (or a list of str) -> ragged <int64>[batch, (tokens)].
    `table` is the lookup table, a TensorFlow resource: a SavedModel must track it.
    """

    def __init__(self, vocabulary: Sequence[str]):
        import tensorflow as tf

        vocabulary = [str(token) for token in vocabulary]
        if vocabulary[:2] != [PADDING, UNKNOWN]:
            raise ValueError(f"a vocabulary starts with {[PADDING, UNKNOWN]}, got {vocabulary[:2]}")
        self._vocabulary = vocabulary
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocabulary, tf.string), tf.range(len(vocabulary), dtype=tf.int64)
            ),
            default_value=1,  # [UNK]
        )

    def __call__(self, texts):
        import tensorflow as tf

        words = tf.strings.split(standardize_review(tf.convert_to_tensor(texts, tf.string)))
        return tf.ragged.map_flat_values(self.table.lookup, words)

    def get_vocabulary(self) -> list:
        """The tokens by id: '' (padding) and '[UNK]' first."""
        return list(self._vocabulary)

    def vocabulary_size(self) -> int:
        return len(self._vocabulary)


def build_vectorizer(texts: Sequence[str], vocab_size: int) -> Vectorizer:
    """A Vectorizer whose vocabulary is adapted on `texts` (the training split; with
    --vocabulary-from train+unlabeled also the unlabeled reviews).

    Keras' TextVectorization learns the vocabulary (the vocab_size - 2 most frequent words
    after '' and '[UNK]'); only its ragged output is TensorFlow-backend-only, so the adapting
    layer is dense and the Vectorizer does the lookup. Runs under any Keras backend.
    """
    import tensorflow as tf

    layer = keras.layers.TextVectorization(
        max_tokens=vocab_size, standardize=standardize_review, split="whitespace"
    )
    layer.adapt(tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string)).batch(1024))
    return Vectorizer([str(token) for token in layer.get_vocabulary()])


def vectorizer_from_vocabulary(vocabulary: Sequence[str]) -> Vectorizer:
    """The vectorizer for a saved vocabulary ('' and '[UNK]' first, as get_vocabulary() gives)."""
    return Vectorizer(vocabulary)


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

    time = the longest review, or `length` if that is larger (a fixed shape); a `length`
    below the longest review is an error, never a cut. Worked example:
    pad([[5, 6, 7], [8]]) == [[5, 6, 7], [8, 0, 0]].
    """
    longest = max((len(review) for review in reviews), default=0)
    if length and length < longest:
        raise ValueError(f"length {length} is shorter than the longest review ({longest})")
    # maxlen always given: without it pad_sequences fails on no reviews at all.
    return keras.utils.pad_sequences(
        reviews, maxlen=max(longest, length), dtype="int32", padding="post", value=0
    )
