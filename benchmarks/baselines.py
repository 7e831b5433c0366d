"""Bag-of-n-grams baselines on the LSTM's own splits: NBSVM-bi and TF-IDF logistic regression.

    python benchmarks/baselines.py [--data PATH] [--beta 0.25]

The reviews are read by lstm_reviews.data.imdb (the same training / movie-grouped validation /
test split as `python -m lstm_reviews.train`, same seed and share) and cleaned by
lstm_reviews.data.text.standardize_review, so the baselines see the words the LSTM sees. Both are
trained on the training split alone; validation and test accuracy are printed with seconds.

- NBSVM-bi (Wang & Manning 2012, "Baselines and bigrams"): binarized uni- and bigram counts
  x ∈ {0, 1}^V, the naive-Bayes log-count ratio r = log((p / |p|_1) / (q / |q|_1)) with
  p = α + Σ_{positive} x, q = α + Σ_{negative} x, α = 1; a linear SVM (L2-regularized,
  squared hinge, C = 1) on r ⊙ x; then their interpolation w' = (1 - β) w̄ + β w with
  w̄ = |w|_1 / V (the mean magnitude) and β = 0.25, the bias kept.
- TF-IDF: uni- and bigram TF-IDF (sublinear tf), logistic regression; its C is the one of
  TFIDF_C_VALUES with the best validation accuracy.

scikit-learn is a benchmark dependency (requirements-dev.txt), not a runtime one.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from lstm_reviews.config import Config
from lstm_reviews.data import imdb, text

NB_ALPHA = 1.0  # Laplace smoothing of the NB counts (Wang & Manning)
NBSVM_C = 1.0  # their SVM's C
NBSVM_BETA = 0.25  # their interpolation: 0 = the mean weight only, 1 = the NB-scaled SVM alone
TFIDF_C_VALUES = (1.0, 10.0, 100.0)
# standardize_review leaves words separated by spaces: split on them, as the LSTM's
# vectorizer does ("!" and "?" are tokens), and keep the case it made.
_VECTORIZER_ARGS = dict(ngram_range=(1, 2), token_pattern=r"\S+", lowercase=False)


def standardize(texts, batch_size: int = 4096) -> list:
    """texts (str) -> the same texts through text.standardize_review (TensorFlow string ops)."""
    import tensorflow as tf

    cleaned = []
    for start in range(0, len(texts), batch_size):
        batch = tf.constant(list(texts[start : start + batch_size]), tf.string)
        cleaned.extend(s.decode("utf-8") for s in text.standardize_review(batch).numpy())
    return cleaned


def nb_log_count_ratio(features, labels, alpha: float = NB_ALPHA) -> np.ndarray:
    """r <float64>[V] = log((p / |p|_1) / (q / |q|_1)) for features <n, V> (binarized counts,
    sparse or dense) and labels <int>[n] (1 positive): r_j > 0 for n-grams of positive reviews."""
    labels = np.asarray(labels)
    p = alpha + np.asarray(features[labels == 1].sum(axis=0), np.float64).ravel()
    q = alpha + np.asarray(features[labels == 0].sum(axis=0), np.float64).ravel()
    return np.log(p / p.sum()) - np.log(q / q.sum())


class NBSVM:
    """NBSVM-bi: fit(texts, labels), predict(texts) -> <int>[n]; texts standardized already."""

    def __init__(self, c: float = NBSVM_C, beta: float = NBSVM_BETA, alpha: float = NB_ALPHA):
        self.beta, self.alpha = beta, alpha
        self.vectorizer = CountVectorizer(binary=True, **_VECTORIZER_ARGS)
        self.svm = LinearSVC(C=c, random_state=0)  # liblinear shuffles its coordinates
        self.ratio = None

    def fit(self, texts, labels):
        features = self.vectorizer.fit_transform(texts)
        self.ratio = nb_log_count_ratio(features, labels, self.alpha)
        self.svm.fit(features.multiply(self.ratio).tocsr(), labels)
        weights = self.svm.coef_
        mean_magnitude = np.abs(weights).mean()  # w̄ = |w|_1 / V
        self.svm.coef_ = (1.0 - self.beta) * mean_magnitude + self.beta * weights
        return self

    def predict(self, texts) -> np.ndarray:
        features = self.vectorizer.transform(texts)
        return self.svm.predict(features.multiply(self.ratio).tocsr())

    def ratio_of(self, ngram: str) -> float:
        """r of one n-gram of the training vocabulary (KeyError if unseen)."""
        return float(self.ratio[self.vectorizer.vocabulary_[ngram]])


def accuracy(model, texts, labels) -> float:
    return float(np.mean(model.predict(texts) == np.asarray(labels)))


def run_baselines(
    data: str | None = None, tfidf_c_values=TFIDF_C_VALUES, nbsvm_beta: float = NBSVM_BETA
) -> dict:
    """Trains both baselines on `data`'s training split (None: found as the training command
    finds IMDB). Returns {"reviews": {split: n}, "nbsvm": {...}, "tfidf": {...}, "nbsvm_model"},
    each baseline's dict holding validation_accuracy, test_accuracy and seconds (training and
    prediction, the standardization excluded); "tfidf" also its chosen C."""
    splits = imdb.load_imdb(Config(data=data))
    texts = {
        name: standardize(getattr(splits, name).texts) for name in ("train", "validation", "test")
    }
    labels = {name: getattr(splits, name).labels for name in texts}
    results = {"reviews": {name: len(texts[name]) for name in texts}}

    started = time.perf_counter()
    nbsvm = NBSVM(beta=nbsvm_beta).fit(texts["train"], labels["train"])
    results["nbsvm"] = {
        "validation_accuracy": accuracy(nbsvm, texts["validation"], labels["validation"]),
        "test_accuracy": accuracy(nbsvm, texts["test"], labels["test"]),
        "seconds": time.perf_counter() - started,
    }
    results["nbsvm_model"] = nbsvm

    started = time.perf_counter()
    vectorizer = TfidfVectorizer(sublinear_tf=True, **_VECTORIZER_ARGS)
    train_features = vectorizer.fit_transform(texts["train"])
    validation_features = vectorizer.transform(texts["validation"])
    best = None
    for c in tfidf_c_values:  # the validation split picks C; the test split is read once
        model = LogisticRegression(C=c, solver="liblinear", random_state=0).fit(
            train_features, labels["train"]
        )
        score = float(np.mean(model.predict(validation_features) == labels["validation"]))
        if best is None or score > best[0]:
            best = (score, c, model)
    score, c, model = best
    test_predictions = model.predict(vectorizer.transform(texts["test"]))
    results["tfidf"] = {
        "validation_accuracy": score,
        "test_accuracy": float(np.mean(test_predictions == labels["test"])),
        "seconds": time.perf_counter() - started,
        "c": c,
    }
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=None,
        help="aclImdb directory or aclImdb_v1.tar.gz (default: as `python -m "
        "lstm_reviews.train` finds IMDB: $LSTM_REVIEWS_DATA, ~/.keras/datasets, download)",
    )
    parser.add_argument(
        "--beta",
        type=float,
        default=NBSVM_BETA,
        help="NBSVM's interpolation w' = (1 - beta) mean|w| + beta w; 1 leaves it out",
    )
    args = parser.parse_args(argv)
    results = run_baselines(args.data, nbsvm_beta=args.beta)
    reviews = results["reviews"]
    print(
        f"IMDB: {reviews['train']} train, {reviews['validation']} validation (by movie), "
        f"{reviews['test']} test reviews"
    )
    nbsvm_name = f"NBSVM-bi (C={NBSVM_C:g}, beta={args.beta:g})"
    for key, name in (("nbsvm", nbsvm_name), ("tfidf", "TF-IDF uni+bigram LR")):
        row = results[key]
        if key == "tfidf":
            name = f"{name} (C={row['c']:g})"
        print(
            f"{name}: validation {row['validation_accuracy']:.2%}, "
            f"test {row['test_accuracy']:.2%}, {row['seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
