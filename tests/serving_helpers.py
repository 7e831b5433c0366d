"""A tiny trained-looking run directory for the export and predict tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lstm_reviews.config import Config
from lstm_reviews.rundir import RunDir

TRAIN_TEXTS = [
    "A wonderful film, the actors were brilliant and I loved the story.",
    "Awful plot. The worst movie of the year, boring and dull.",
    "Great scenes, superb music: this movie is amazing!",
    "I hated it. Terrible acting and a dull, boring script.",
    "The story of the film was fine, the ending was great.",
    "Nothing happens. Worst ending ever?",
]
# Small enough for 2 shared cores, but the whole model: embedding, BiLSTM of our cell, pooling.
# Pooling "max": the weights below were scaled for it, so reviews get clearly different scores.
# eval_max_length 12: a long review is cut when served (whole reviews: tests/test_recipe.py).
TINY = dict(
    vocab_size=50,
    max_length=12,
    eval_max_length=12,
    embedding_dim=8,
    units=4,
    dropout=0.0,
    pooling="max",
)


def write_run_dir(run_dir: Path, **overrides) -> Config:
    """config.json, vocabulary.txt and model.keras, as training leaves them; returns the Config.

    The weights are random but large, so that different reviews get clearly different
    probabilities (an untrained model says ~0.5 to everything, which would hide mistakes).
    """
    import keras

    from lstm_reviews.data.text import build_vectorizer
    from lstm_reviews.model.classifier import build_model

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = Config(**{**TINY, "output_dir": str(run_dir), **overrides})
    keras.utils.set_random_seed(config.seed)
    vectorizer = build_vectorizer(TRAIN_TEXTS, config.vocab_size)
    vocabulary = vectorizer.get_vocabulary()
    model = build_model(config, len(vocabulary))
    rng = np.random.default_rng(config.seed)
    model.set_weights(
        [rng.normal(0.0, 1.5, size=w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    RunDir(run_dir).write_config(config)
    (run_dir / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    model.save(run_dir / "model.keras")
    return config


def keras_probabilities(run_dir: Path, texts: list[str]) -> np.ndarray:
    """The reference: the run's Keras model on evaluation-style ids: each review's last
    config.eval_max_length tokens (text.keep_last_tokens), or all of them.

    texts: N reviews -> <float32>[N] probabilities of the positive class.
    """
    import keras

    import lstm_reviews.model.classifier  # noqa: F401  (registers the layers)
    from lstm_reviews.data.text import keep_last_tokens, vectorizer_from_vocabulary

    run_dir = Path(run_dir)
    config = RunDir(run_dir).read_config()
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    vectorizer = vectorizer_from_vocabulary(RunDir(run_dir).read_vocabulary())
    length = config.eval_max_length
    rows = [
        keep_last_tokens(np.asarray(ids), length) if length else np.asarray(ids, np.int64)
        for ids in vectorizer(texts).to_list()
    ]
    ids = np.zeros((len(rows), max(1, max(len(row) for row in rows))), np.int32)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
    logits = np.asarray(model(ids, training=False))[:, 0]
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
