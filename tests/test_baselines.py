"""benchmarks/baselines.py on the tiny aclImdb tree: the NB ratio, NBSVM-bi and TF-IDF.

scikit-learn comes with requirements-dev.txt: without it these tests fail, they do not skip.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from helpers import NEGATIVE_WORDS, POSITIVE_WORDS, write_tiny_imdb

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "baselines.py"
_SPEC = importlib.util.spec_from_file_location("baselines", _PATH)
baselines = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(baselines)


def test_nb_log_count_ratio_by_hand():
    # 3 reviews x 3 n-grams: n-gram 0 only in positives, 1 only in the negative, 2 in all.
    features = np.array([[1, 0, 1], [1, 0, 1], [0, 1, 1]])
    labels = np.array([1, 1, 0])
    p, q = np.array([3.0, 1.0, 3.0]), np.array([1.0, 2.0, 2.0])  # alpha 1 + the counts
    expected = np.log((p / 7.0) / (q / 5.0))
    np.testing.assert_allclose(baselines.nb_log_count_ratio(features, labels), expected)


def test_nbsvm_interpolates_towards_the_mean_weight():
    texts = ["good fun", "good film", "bad film", "bad plot"]
    labels = np.array([1, 1, 0, 0])
    plain = baselines.NBSVM(beta=1.0).fit(texts, labels)  # beta 1: the NB-scaled SVM alone
    mixed = baselines.NBSVM(beta=0.25).fit(texts, labels)
    w = plain.svm.coef_
    np.testing.assert_allclose(mixed.svm.coef_, 0.75 * np.abs(w).mean() + 0.25 * w)
    np.testing.assert_array_equal(mixed.svm.intercept_, plain.svm.intercept_)


def test_baselines_on_the_tiny_tree(tmp_path, capsys):
    top = write_tiny_imdb(tmp_path / "data", per_class_train=40, per_class_test=30)
    results = baselines.run_baselines(str(top))
    assert results["reviews"]["train"] + results["reviews"]["validation"] == 80
    assert results["reviews"]["test"] == 60
    # The fixture's sentiment words never cross classes: far above chance (0.5).
    for name in ("nbsvm", "tfidf"):
        assert results[name]["test_accuracy"] >= 0.9, (name, results[name])
        # The validation split is a few movies' reviews: above chance by a margin, not 0.9.
        assert results[name]["validation_accuracy"] >= 0.75, (name, results[name])
        assert results[name]["seconds"] > 0
    assert results["tfidf"]["c"] in baselines.TFIDF_C_VALUES
    model = results["nbsvm_model"]
    assert all(model.ratio_of(word) > 0.5 for word in POSITIVE_WORDS)
    assert all(model.ratio_of(word) < -0.5 for word in NEGATIVE_WORDS)
    # Text went through standardize_review: the fixture's <br /> tags are not words.
    assert "br" not in model.vectorizer.vocabulary_

    assert baselines.main(["--data", str(top)]) == 0
    printed = capsys.readouterr().out
    assert "NBSVM-bi (C=1, beta=0.25): validation" in printed
    assert "TF-IDF uni+bigram LR" in printed and "test" in printed
