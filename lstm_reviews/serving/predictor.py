"""Serving an exported SavedModel from Python: find its version, load it, predict raw text.

    from lstm_reviews.serving.predictor import Predictor
    Predictor("saved_models/imdb_lstm")(["A wonderful film.", "Dull."])
    # [{"probability": 0.97, "logit": 3.5, "label": "positive", "tokens": 3}, ...]

Needs TensorFlow, not the model code. `python -m lstm_reviews.predict` is the command line
around it; lstm_reviews.api's Run.predict gives the same dicts from a run directory.
"""

from __future__ import annotations

from pathlib import Path

from lstm_reviews.errors import UserError
from lstm_reviews.serving.versions import version_dirs
from lstm_reviews.startup import quiet_start


def label(probability: float) -> str:
    """The verdict's name: positive from probability 0.5 up."""
    return "positive" if probability >= 0.5 else "negative"


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def add_model_arguments(parser) -> None:
    """--model (what resolve_model_dir reads) and --batch-size, as predict and score take them."""
    from lstm_reviews.config import Config

    parser.add_argument(
        "--model",
        metavar="DIR",
        default=Config().export_dir,
        help="model directory (highest version used) or a version directory (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        metavar="N",
        type=int,
        default=32,
        help="reviews per model call (default: %(default)s)",
    )


def resolve_model_dir(path) -> Path:
    """The SavedModel directory for `path`: itself, or its highest numbered version."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"model path {path} does not exist "
            f"(export one with python -m lstm_reviews.export RUN_DIR)"
        )
    if not path.is_dir():
        raise UserError(f"model path {path} is not a directory")
    if (path / "saved_model.pb").exists():
        return path
    versions = version_dirs(path)
    if not versions:
        raise UserError(
            f"no SavedModel in {path}: "
            f"expected {path}/saved_model.pb or numbered version directories"
        )
    # Like TF Serving: the highest version wins; a broken one is reported, not skipped.
    latest = versions[-1]
    if not (latest / "saved_model.pb").is_file():
        raise UserError(f"{latest} is not a complete SavedModel: it has no saved_model.pb")
    return latest


class Predictor:
    """Calls the "serving_default" signature of a review SavedModel on batches of text."""

    def __init__(self, model_path):
        self.path = resolve_model_dir(model_path)
        if not (self.path / "variables").is_dir():
            raise UserError(
                f"{self.path} is not a complete SavedModel: it has no variables/ directory"
            )
        quiet_start("tensorflow")  # after the cheap checks: a wrong path fails fast
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(str(self.path))
        except Exception as error:  # TF raises many types for a damaged SavedModel
            raise UserError(
                f"cannot load the SavedModel in {self.path}: {first_line(error)}"
            ) from None
        signature = (
            loaded.signatures.get("serving_default") if hasattr(loaded, "signatures") else None
        )
        if signature is None:
            raise UserError(f"the SavedModel in {self.path} has no serving_default signature")
        inputs = signature.structured_input_signature[1]
        outputs = signature.structured_outputs
        if (
            len(inputs) != 1
            or next(iter(inputs.values())).dtype != tf.string
            or "probability" not in outputs
        ):
            raise UserError(
                f"the SavedModel in {self.path} does not take review strings to a probability "
                f"(inputs {sorted(inputs)}, outputs {sorted(outputs)}): "
                f"was it made by lstm_reviews.export?"
            )
        self._loaded = loaded  # keeps the signature's resources alive
        self._signature = signature
        self._input_name = next(iter(inputs))
        self._tf = tf

    def __call__(self, texts) -> list[dict]:
        """texts: N str (or one str) -> N dicts: probability (float, P(positive)), label
        ("positive" or "negative"), logit (float) and tokens (int, the tokens the model read;
        0: nothing was left of the review, the probability is the bias alone)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        # NUL as a space, as text.standardize_review reads it: SavedModels exported before
        # that rule would cut the review at its first NUL.
        batch = self._tf.constant(
            [text.replace("\0", " ").encode("utf-8") for text in texts], dtype=self._tf.string
        )
        outputs = {
            key: value.numpy()
            for key, value in self._signature(**{self._input_name: batch}).items()
        }
        results = []
        for index in range(len(texts)):
            probability = float(outputs["probability"][index])
            result = {"probability": probability, "label": label(probability)}
            if "logit" in outputs:
                result["logit"] = float(outputs["logit"][index])
            if "tokens" in outputs:
                result["tokens"] = int(outputs["tokens"][index])
            results.append(result)
        return results
