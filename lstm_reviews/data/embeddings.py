"""Word vectors learned from review text alone: PPMI + truncated SVD (Levy et al., 2015).

Trained from scratch, the embedding sees each rare word in a handful of labeled reviews and
memorizes it. IMDB ships 50,000 unlabeled reviews; counting which words occur near which
gives every word a vector before training starts, so that "superb" begins close to
"excellent" even if the labeled reviews rarely use it.

    ids (training + unlabeled reviews, as token ids)
      -> co-occurrence counts within `window` tokens, weighted 1/distance      cooccurrence()
      -> positive pointwise mutual information, context counts ** 0.75          ppmi()
      -> randomized truncated SVD, rank = embedding_dim                         truncated_svd()
      -> vectors U·sqrt(S), each scaled to unit length                          word_vectors()

Only the training split and the unlabeled reviews are counted, never validation or test
text. The result is cached beside the token cache, keyed by the settings that made it.

Worked example (window 1, the reviews [2, 3] and [3, 2, 4]): the pairs within one token are
(2,3) (3,2) twice over and (2,4) (4,2) once, so counts[2,3] = counts[3,2] = 2 and
counts[2,4] = counts[4,2] = 1; padding (0) and [UNK] (1) are never counted.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lstm_reviews.config import VECTORS, cache_settings
from lstm_reviews.data import tokens as token_cache
from lstm_reviews.data.cache import cached, require_tensorflow, short_hash, write_atomically
from lstm_reviews.errors import UserError

FIRST_WORD_ID = 2  # 0 is padding, 1 is [UNK]: neither has a meaning to learn
_FORMAT = 1


def cooccurrence(ids: Sequence[np.ndarray], vocab_size: int, window: int):
    """Symmetric co-occurrence counts of word ids within `window` tokens, weighted 1/distance.

    ids: reviews, each <int>[length]. Returns (rows, cols, counts): <int64>[pairs] twice and
    <float64>[pairs], one entry per distinct (row, col) pair.
    """
    # Reviews joined with `window` padding ids between them: no pair spans two reviews.
    gap = np.zeros(window, dtype=np.int64)
    pieces = []
    for review in ids:
        pieces.extend((np.asarray(review, dtype=np.int64), gap))
    stream = np.concatenate(pieces) if pieces else gap
    keys, weights = [], []
    for distance in range(1, window + 1):
        left, right = stream[:-distance], stream[distance:]
        both_words = (left >= FIRST_WORD_ID) & (right >= FIRST_WORD_ID)
        left, right = left[both_words], right[both_words]
        pair_keys = np.concatenate([left * vocab_size + right, right * vocab_size + left])
        unique, counts = np.unique(pair_keys, return_counts=True)
        keys.append(unique)
        weights.append(counts / distance)
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(weights))
    return unique // vocab_size, unique % vocab_size, counts


def ppmi(rows, cols, counts, vocab_size: int, smoothing: float = 0.75):
    """Positive PMI of the counted pairs; returns (rows, cols, values) with values > 0 only.

    PMI(w, c) = log P(w, c) / (P(w) P_s(c)), where P_s raises context counts to `smoothing`
    (0.75, as word2vec does) so that rare contexts do not get huge PMI values.
    """
    total = counts.sum()
    word_totals = np.bincount(rows, weights=counts, minlength=vocab_size)
    context_totals = np.bincount(cols, weights=counts, minlength=vocab_size) ** smoothing
    context_share = context_totals / context_totals.sum()
    pmi = np.log(counts / total) - np.log(word_totals[rows] / total) - np.log(context_share[cols])
    keep = pmi > 0
    return rows[keep], cols[keep], pmi[keep].astype(np.float32)


def _sparse_products(rows, cols, values, size: int):
    """(x -> M x, x -> M^T x) for the sparse size x size matrix M and dense <float32>[size, k]
    blocks x: TensorFlow's sparse product where TensorFlow is, else SciPy's (a GPU machine
    with JAX alone: JAX installs SciPy). They agree within float32 rounding
    (tests/test_gpu_bundle.py)."""
    order = np.lexsort((cols, rows))
    try:
        import tensorflow as tf
    except ImportError:
        import scipy.sparse

        matrix = scipy.sparse.csr_matrix(
            (values[order], (rows[order], cols[order])), shape=(size, size), dtype=np.float32
        )
        transposed = matrix.T.tocsr()
        return (lambda x: matrix @ x), (lambda x: transposed @ x)
    matrix = tf.sparse.SparseTensor(
        np.stack([rows[order], cols[order]], axis=1), values[order], dense_shape=(size, size)
    )
    return (
        lambda x: tf.sparse.sparse_dense_matmul(matrix, x).numpy(),
        lambda x: tf.sparse.sparse_dense_matmul(matrix, x, adjoint_a=True).numpy(),
    )


def truncated_svd(rows, cols, values, size: int, rank: int, seed: int, power_iterations: int = 3):
    """The top `rank` left singular vectors and values of the sparse size x size matrix.

    Randomized range finding (Halko et al., 2011) with sparse products: the matrix stays
    sparse; only <float32>[size, rank + 10] dense blocks are formed.
    Returns (u <float32>[size, rank], s <float32>[rank]).
    """
    times, times_transposed = _sparse_products(rows, cols, values, size)
    rng = np.random.default_rng(seed)
    probe = rng.standard_normal((size, min(rank + 10, size))).astype(np.float32)
    basis = np.linalg.qr(times(probe))[0]
    for _ in range(power_iterations):  # sharpens the spectrum: better top vectors
        back = np.linalg.qr(times_transposed(basis))[0]
        basis = np.linalg.qr(times(back))[0]
    # basis^T M, computed as (M^T basis)^T: <float32>[rank + 10, size]
    small = times_transposed(basis).T
    u_small, s, _ = np.linalg.svd(small, full_matrices=False)
    return (basis @ u_small)[:, :rank].astype(np.float32), s[:rank].astype(np.float32)


def word_vectors(
    ids: Sequence[np.ndarray], vocab_size: int, dim: int, window: int, seed: int = 0
) -> np.ndarray:
    """<float32>[vocab_size, dim]: unit-length vectors for words; zeros for padding and [UNK],
    and for words never seen within `window` of another word."""
    rows, cols, counts = cooccurrence(ids, vocab_size, window)
    rows, cols, values = ppmi(rows, cols, counts, vocab_size)
    u, s = truncated_svd(rows, cols, values, vocab_size, min(dim, vocab_size - 1), seed)
    vectors = np.zeros((vocab_size, dim), dtype=np.float32)
    vectors[:, : u.shape[1]] = u * np.sqrt(s)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    vectors[:FIRST_WORD_ID] = 0.0
    return vectors


def _require_sparse_products(path: Path) -> None:
    """UserError if neither TensorFlow nor SciPy is here to make the vectors."""
    if not any(importlib.util.find_spec(name) for name in ("tensorflow", "scipy")):
        require_tensorflow("the pretrained word vectors", path, "--no-pretrain-embeddings")


def vectors_settings(config, tokens) -> dict:
    """Everything the word vectors depend on: the token ids and the fields that feed them."""
    return {"format": _FORMAT, "tokens": tokens.settings, **cache_settings(config, VECTORS)}


def pretrained_embeddings(config, tokens) -> np.ndarray:
    """Word vectors for `tokens.vocabulary`, from the training and unlabeled reviews; cached.

    tokens: the run's tokens.TokenData. Needs the unlabeled reviews' ids (made with
    TensorFlow, or carried in a bundle) and TensorFlow or SciPy for the sparse SVD; a cached
    result loads with NumPy alone.
    Returns <float32>[len(tokens.vocabulary), config.embedding_dim].
    """
    path = Path(config.cache_dir) / f"vectors-{short_hash(vectors_settings(config, tokens))}.npy"

    def build():
        _require_sparse_products(path)
        started = time.perf_counter()
        unlabeled = token_cache.unlabeled_ids(config, tokens)
        vectors = word_vectors(
            list(tokens.train.ids) + unlabeled,
            len(tokens.vocabulary),
            config.embedding_dim,
            config.vectors_window,
            seed=config.seed,
        )
        print(
            f"Word vectors from {len(tokens.train.ids)} training and {len(unlabeled)} "
            f"unlabeled reviews in {time.perf_counter() - started:.0f} s, cached at {path}"
        )
        return vectors

    def save(path, vectors):
        write_atomically(path, lambda file: np.save(file, vectors))

    def load(path):
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: not readable word vectors ({error})") from error

    return cached(path, build, save, load)
