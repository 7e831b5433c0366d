"""lstm_reviews: an LSTM cell written out gate by gate, trained on IMDB review sentiment.

    import lstm_reviews
    run = lstm_reviews.load_run("runs/imdb_lstm")    # or lstm_reviews.train(config, run_dir)
    run.predict(["An amazing film."]); run.explain("An amazing film."); run.export()
    lstm_reviews.Predictor("saved_models/imdb_lstm")(["An amazing film."])

(lstm_reviews.api). Those names and the submodules (`from lstm_reviews import cell`) are
imported on use, so that importing the package does not load TensorFlow.
"""

import importlib

__version__ = "0.1.0"

# name -> the module that defines it; `train` is the command module lstm_reviews.train, which is
# callable: lstm_reviews.train(config, run_dir) is lstm_reviews.api.train.
_LAZY = {
    "Config": "lstm_reviews.config",
    "Explanation": "lstm_reviews.inspection.explanation",
    "Predictor": "lstm_reviews.serving.predictor",
    "Run": "lstm_reviews.api",
    "load_run": "lstm_reviews.api",
}


def __getattr__(name: str):
    if name == "train":
        return importlib.import_module("lstm_reviews.train")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lstm_reviews' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), "train", *_LAZY])
