"""TF Serving's view of an export: its warm-up file, its signature as saved_model_cli shows it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_reviews import predict
from lstm_reviews.serving import warmup as serving_warmup


@pytest.fixture(scope="module")
def version_dir(tiny_export):
    return tiny_export[2]  # exported once for the session (conftest.py)


@pytest.mark.slow
def test_warmup_requests_replay_against_the_savedmodel(version_dir):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    logs = [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(str(path))
    ]
    assert len(logs) == len(serving_warmup.EXAMPLE_REVIEWS) + 1  # each alone, then a batch
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    predictor = predict.Predictor(version_dir)
    sizes = []
    for log in logs:
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "imdb_lstm"  # the model directory's name
        assert request.model_spec.signature_name == "serving_default"
        assert list(request.inputs) == ["reviews"]
        reviews = tf.make_ndarray(request.inputs["reviews"])
        assert reviews.dtype == object and reviews.ndim == 1
        sizes.append(len(reviews))
        outputs = signature(reviews=tf.constant(reviews))
        texts = [review.decode("utf-8") for review in reviews]
        assert texts == [t for t in serving_warmup.EXAMPLE_REVIEWS if t in texts]
        np.testing.assert_allclose(
            outputs["probability"].numpy(),
            [result["probability"] for result in predictor(texts)],
            atol=1e-6,
        )
        assert (outputs["tokens"].numpy() > 0).all()  # real reviews, not empty strings
    examples = len(serving_warmup.EXAMPLE_REVIEWS)
    assert sizes == [1] * examples + [examples]


def _saved_model_cli() -> list[str]:
    found = shutil.which("saved_model_cli", path=str(Path(sys.executable).parent))
    if found:
        return [found]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


@pytest.mark.slow
def test_signature_as_saved_model_cli_shows_it(version_dir):
    shown = subprocess.run(
        [
            *_saved_model_cli(),
            "show",
            "--dir",
            str(version_dir),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert (
        "The given SavedModel SignatureDef contains the following input(s): "
        "inputs['reviews'] tensor_info: dtype: DT_STRING shape: (-1) "
        "name: serving_default_reviews:0"
    ) in text
    for name, dtype in (("logit", "DT_FLOAT"), ("probability", "DT_FLOAT"), ("tokens", "DT_INT32")):
        assert f"outputs['{name}'] tensor_info: dtype: {dtype} shape: (-1)" in text
    assert text.count("outputs['") == 3
    assert "Method name is: tensorflow/serving/predict" in text
