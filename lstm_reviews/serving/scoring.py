"""The score command's Apache Beam pipeline: match the --input files, read each one whole
into records (score_lines), score the reviews with RunInference, write the predictions and
errors shards, count both (python -m lstm_reviews.score is its command line).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lstm_reviews.errors import EXIT_OK, UserError
from lstm_reviews.serving.prediction_lines import WINDOW_BATCHES, length_batches
from lstm_reviews.serving.predictor import Predictor
from lstm_reviews.serving.score_lines import file_records, scored_record

EXIT_SOME_BAD = 1  # some lines went to the errors output
NAMESPACE = "lstm_reviews.score"  # Beam metrics counters


def _handler_class():
    """ReviewModelHandler, defined once Beam is importable (its base class is Beam's)."""
    from apache_beam.ml.inference.base import ModelHandler

    class ReviewModelHandler(ModelHandler):
        """RunInference's model: the SavedModel's serving_default signature via
        serving.predictor.Predictor (tf.saved_model.load). Beam's TFModelHandlerTensor loads with
        tf.keras.models.load_model, which Keras 3 refuses for a SavedModel.

        Batches from Beam are regrouped by length (prediction_lines.length_batches): a batch
        is padded to its longest review, so one long review must not make short ones pay.
        """

        def __init__(self, model_dir: str, batch_size: int, max_tokens: int | None):
            super().__init__()
            self._model_dir = model_dir
            self._batch_size = batch_size
            self._max_tokens = max_tokens

        def load_model(self):
            return Predictor(self._model_dir)

        def batch_elements_kwargs(self):
            # Large enough that sorting by length within it makes batches of like length.
            return {
                "min_batch_size": 1,
                "max_batch_size": self._batch_size * WINDOW_BATCHES,
            }

        def run_inference(self, batch, model, inference_args=None):
            """batch: review dicts -> [(review, result)]; result: probability, logit, tokens,
            or {"error": ...} for a review the model failed on."""
            bound = self._max_tokens or sys.maxsize
            lengths = [min(len(review["text"].split()), bound) for review in batch]
            results: list[dict | None] = [None] * len(batch)
            for group in length_batches(lengths, self._batch_size):
                texts = [batch[index]["text"] for index in group]
                try:
                    outputs = model(texts)
                except Exception:
                    # One bad review must not cost the others their predictions.
                    outputs = [_predict_one(model, text) for text in texts]
                for index, output in zip(group, outputs):
                    results[index] = output
            return list(zip(batch, results))

        def get_metrics_namespace(self):
            return NAMESPACE

    return ReviewModelHandler


def _predict_one(model, text: str) -> dict:
    try:
        return model([text])[0]
    except Exception as error:
        first = (str(error).strip() or type(error).__name__).splitlines()[0]
        return {"error": f"prediction failed: {first}"}


def model_token_bound(model_dir: Path) -> int | None:
    """The tokens per review the SavedModel keeps, from its export.json; None if unknown."""
    try:
        info = json.loads((model_dir / "assets.extra" / "export.json").read_text("utf-8"))
        return int(info["config"]["eval_max_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_pipeline(pipeline, args, handler) -> None:
    """Adds the scoring steps to `pipeline`; returns nothing (the sinks are its leaves)."""
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.ml.inference.base import RunInference

    forced = args.format
    patterns = [str(pattern) for pattern in args.input]
    matched = (
        pipeline
        | "Patterns" >> beam.Create(patterns)
        | "Match" >> fileio.MatchAll()
        | "Open" >> fileio.ReadMatches()
        # Each file read whole by one worker: line numbers need the whole file.
        | "Lines" >> beam.FlatMap(file_records, forced)
    )
    reviews, bad_lines = matched | "Split" >> beam.Partition(_good_or_bad, 2)
    scored = (
        reviews
        # A file's lines come out of one worker; spread them before the costly step.
        | "Spread" >> beam.Reshuffle()
        | "Score" >> RunInference(handler)
        | "Records" >> beam.MapTuple(scored_record)
    )
    predictions, failed = scored | "Good" >> beam.Partition(_good_or_bad, 2)
    out = args.output.rstrip("/")
    shards = dict(
        num_shards=args.num_shards, shard_name_template="-SSSSS-of-NNNNN", file_name_suffix=".jsonl"
    )
    (
        predictions
        | "Count good" >> beam.Map(_count, "scored")
        | "Good JSON" >> beam.Map(_json)
        | "Write predictions" >> beam.io.WriteToText(f"{out}/predictions", **shards)
    )
    (
        (bad_lines, failed)
        | "Bad" >> beam.Flatten()
        | "Count bad" >> beam.Map(_count, "errors")
        | "Bad JSON" >> beam.Map(_json)
        | "Write errors" >> beam.io.WriteToText(f"{out}/errors", **shards)
    )


def _good_or_bad(record: dict, partitions: int) -> int:
    return 1 if "error" in record else 0


def _count(record: dict, name: str) -> dict:
    from apache_beam.metrics import Metrics

    Metrics.counter(NAMESPACE, name).inc()
    return record


def _json(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def _counter(result, name: str) -> int:
    from apache_beam.metrics.metric import MetricsFilter

    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name(name))
    return sum(counter.committed or 0 for counter in counters["counters"])


def check_inputs(patterns: list[str]) -> None:
    """Every --input pattern matches a file (Beam's own file systems): UserError if not."""
    from apache_beam.io.filesystems import FileSystems

    for pattern in patterns:
        try:
            matches = FileSystems.match([pattern])[0].metadata_list
        except Exception as error:  # BeamIOError, a file system Beam lacks an extra for
            first = (str(error).strip() or type(error).__name__).splitlines()[0]
            raise UserError(f"cannot list --input {pattern}: {first}") from None
        if not matches:
            raise UserError(f"--input {pattern} matches no file")


def run_pipeline(args, beam_args: list[str], model_dir: Path) -> int:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    if not any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args):
        # Beam's own default may fetch a runner binary; this one runs in-process.
        beam_args = ["--runner=DirectRunner", *beam_args]
    try:
        options = PipelineOptions(beam_args)
        options.view_as(beam.options.pipeline_options.StandardOptions)  # rejects bad values
    except (SystemExit, ValueError) as error:
        raise UserError(f"bad Beam option in {' '.join(beam_args)}: {error}") from None
    handler = _handler_class()(str(model_dir), args.batch_size, model_token_bound(model_dir))
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, args, handler)
    result = pipeline.run()
    result.wait_until_finish()
    scored, bad = _counter(result, "scored"), _counter(result, "errors")
    print(
        f"scored {scored} reviews into {args.output.rstrip('/')}/predictions-*.jsonl; "
        f"{bad} lines in {args.output.rstrip('/')}/errors-*.jsonl",
        file=sys.stderr,
    )
    return EXIT_SOME_BAD if bad else EXIT_OK
