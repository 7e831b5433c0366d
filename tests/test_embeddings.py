"""Pretrained word vectors (PPMI + truncated SVD): each stage against a hand count or NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_reviews.config import Config
from lstm_reviews.data import embeddings, imdb
from lstm_reviews.data.tokens import prepare_tokens


def _dense(rows, cols, values, size):
    matrix = np.zeros((size, size))
    np.add.at(matrix, (rows, cols), values)
    return matrix


def test_cooccurrence_worked_example():
    # The module docstring's example: window 1 over [2, 3] and [3, 2, 4].
    rows, cols, counts = embeddings.cooccurrence([np.array([2, 3]), np.array([3, 2, 4])], 5, 1)
    matrix = _dense(rows, cols, counts, 5)
    expected = np.zeros((5, 5))
    expected[2, 3] = expected[3, 2] = 2
    expected[2, 4] = expected[4, 2] = 1
    np.testing.assert_array_equal(matrix, expected)


def test_cooccurrence_weights_by_distance_and_skips_padding_unk_and_review_borders():
    reviews = [np.array([2, 1, 3]), np.array([4, 0, 5])]  # [UNK] and padding inside
    matrix = _dense(*embeddings.cooccurrence(reviews, 6, 2), 6)
    expected = np.zeros((6, 6))
    expected[2, 3] = expected[3, 2] = 0.5  # two tokens apart
    expected[4, 5] = expected[5, 4] = 0.5
    # 3 (end of the first review) and 4 (start of the second) are never paired.
    np.testing.assert_array_equal(matrix, expected)


def test_ppmi_matches_the_formula_on_a_dense_matrix():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=(7, 7)).astype(float)
    counts = counts + counts.T
    rows, cols = np.nonzero(counts)
    out_rows, out_cols, values = embeddings.ppmi(rows, cols, counts[rows, cols], 7)
    total = counts.sum()
    context = counts.sum(axis=0) ** 0.75
    with np.errstate(divide="ignore"):
        pmi = (
            np.log(counts / total)
            - np.log(counts.sum(axis=1, keepdims=True) / total)
            - np.log(context / context.sum())[None, :]
        )
    expected = np.where(counts > 0, np.maximum(pmi, 0), 0)
    np.testing.assert_allclose(
        _dense(out_rows, out_cols, values, 7), expected, rtol=1e-5, atol=1e-6
    )
    assert np.all(values > 0) and 0 < len(values) < len(rows)


def test_truncated_svd_matches_numpy():
    rng = np.random.default_rng(1)
    size, rank = 60, 5
    # Low rank plus a little noise, sparse-ish: a clear top-5 spectrum.
    matrix = rng.standard_normal((size, rank)) @ rng.standard_normal((rank, size)) * 3
    matrix += 0.01 * rng.standard_normal((size, size))
    matrix[rng.random((size, size)) < 0.05] = 0.0
    rows, cols = np.nonzero(matrix)
    u, s = embeddings.truncated_svd(
        rows, cols, matrix[rows, cols].astype(np.float32), size, rank, seed=0
    )
    u_ref, s_ref, _ = np.linalg.svd(matrix)
    np.testing.assert_allclose(s, s_ref[:rank], rtol=1e-3)
    # Singular vectors up to sign.
    np.testing.assert_allclose(np.abs(np.sum(u * u_ref[:, :rank], axis=0)), 1.0, atol=1e-3)


def test_word_vectors_group_words_that_share_contexts():
    rng = np.random.default_rng(2)
    # Words 2/3 both appear around 4 and 5; words 6/7 both around 8 and 9.
    reviews = []
    for _ in range(300):
        a, b = rng.choice([2, 3]), rng.choice([6, 7])
        reviews.append(np.array([4, a, 5, 8, b, 9] if rng.random() < 0.5 else [8, b, 9, 4, a, 5]))
    vectors = embeddings.word_vectors(reviews, 12, 4, window=1)
    assert vectors.shape == (12, 4) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[:2], 0.0)  # padding and [UNK]
    np.testing.assert_array_equal(vectors[10:], 0.0)  # never seen
    np.testing.assert_allclose(np.linalg.norm(vectors[2:10], axis=1), 1.0, rtol=1e-5)
    assert vectors[2] @ vectors[3] > 0.9  # same contexts: same direction
    assert vectors[6] @ vectors[7] > 0.9
    assert abs(vectors[2] @ vectors[6]) < vectors[2] @ vectors[3] - 0.3


def test_pretrained_embeddings_are_cached_and_reused(tiny_imdb, tmp_path, monkeypatch):
    config = Config(data=str(tiny_imdb), cache_dir=str(tmp_path), vocab_size=60, embedding_dim=6)
    tokens = prepare_tokens(config)
    vectors = embeddings.pretrained_embeddings(config, tokens)
    assert vectors.shape == (len(tokens.vocabulary), 6)
    assert len(list(tmp_path.glob("vectors-*.npy"))) == 1
    # The second call reads the cache: it never loads reviews again.
    monkeypatch.setattr(imdb, "load_unlabeled", lambda config: pytest.fail("cache not used"))
    np.testing.assert_array_equal(embeddings.pretrained_embeddings(config, tokens), vectors)
