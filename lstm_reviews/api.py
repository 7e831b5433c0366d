"""The package from Python: train a run, load it, predict, explain, export, serve.

    import lstm_reviews
    run = lstm_reviews.train(lstm_reviews.Config(output_dir="runs/first"))  # or:
    run = lstm_reviews.load_run("runs/first")
    run.predict(["An amazing film.", "Dull."])   # [{"probability": 0.98, "label": ...}, ...]
    explanation = run.explain("An amazing film, give it a try.")
    print(explanation.table()); explanation.plot("ledger.png"); explanation.html("ledger.html")
    version = run.export("saved_models/imdb_lstm")          # .../saved_models/imdb_lstm/1
    lstm_reviews.Predictor(version)(["An amazing film."])   # the SavedModel, raw text in

The commands call the same functions: `train` is training.run.train_and_evaluate, `explain` is
inspection.explanation.explain_review, `export` is export.export_saved_model, `Predictor` is what
`python -m lstm_reviews.predict` calls. This module sits above them all (it imports them,
none imports it), and `import lstm_reviews` loads none of it until a name is used.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lstm_reviews import rundir
from lstm_reviews.config import Config
from lstm_reviews.data import text
from lstm_reviews.serving.prediction_lines import length_batches
from lstm_reviews.serving.predictor import Predictor, label
from lstm_reviews.training.run import train_and_evaluate

__all__ = ["Config", "Predictor", "Run", "load_run", "train"]

PREDICT_BATCH = 256


@dataclasses.dataclass
class Run(rundir.Run):
    """A finished run directory, loaded (path, config, vocabulary, model, encode), with the
    model's uses as methods."""

    def predict(self, texts, batch_size: int = PREDICT_BATCH) -> list[dict]:
        """texts: N reviews (or one str) -> N dicts, in order, as lstm_reviews.Predictor gives
        them from the exported SavedModel:

            probability  float  P(positive)
            label        str    "positive" when probability >= 0.5, else "negative"
            logit        float  log-odds of positive
            tokens       int    the tokens the model read (at most the last
                                config.eval_max_length); 0: nothing was left of the review,
                                the probability is the bias alone

        Reviews of similar length share a batch (prediction_lines.length_batches, as the command
        batches them), each padded to its longest (padding is masked, so a review's verdict
        does not depend on its batch).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        encoded = self.encode(texts)
        logits = np.zeros(len(texts), np.float64)
        for rows in length_batches([len(ids) for ids in encoded], batch_size):
            reviews = [encoded[k] for k in rows]
            # At least one step: a batch of reviews with no tokens is all padding, as in serving.
            batch = text.pad(reviews, length=max(1, max(map(len, reviews))))
            logits[rows] = np.asarray(self.model.predict_on_batch(batch), np.float64)[:, 0]
        probabilities = np.exp(-np.logaddexp(0.0, -logits))  # sigmoid, without overflow
        return [
            {
                "probability": float(probability),
                "label": label(probability),
                "logit": float(logit),
                "tokens": len(ids),
            }
            for probability, logit, ids in zip(probabilities, logits, encoded)
        ]

    def explain(self, review: str):
        """One review's gates and memory ledger: an inspection.explanation.Explanation (.tokens,
        .shares, .gates, .probability; .table(), .plot(path), .html(path)). UserError if the
        review has no tokens."""
        from lstm_reviews.inspection.explanation import explain_review

        return explain_review(self, review)

    def export(self, out_dir=None) -> Path:
        """Publishes the run as a new SavedModel version in out_dir (default: the run's
        config.export_dir); returns the version's directory (TensorFlow backend only)."""
        from lstm_reviews.serving.savedmodel import export_saved_model

        return export_saved_model(self.path, out_dir)


def load_run(path) -> Run:
    """The finished run in `path`; UserError names what is missing or wrong."""
    loaded = rundir.load_run(path)
    return Run(**{field.name: getattr(loaded, field.name) for field in dataclasses.fields(loaded)})


def train(config: Config | None = None, run_dir=None) -> Run:
    """Trains per `config` (default: Config(), the default recipe) in `run_dir` (default:
    config.output_dir), as `python -m lstm_reviews.train` does, and returns the finished run.
    With config.resume, continues an interrupted run. The SavedModel is exported to
    config.export_dir as well unless config.export is False."""
    config = Config() if config is None else config
    train_and_evaluate(config, run_dir)
    return load_run(run_dir or config.output_dir)
