"""Scores files of reviews with an exported SavedModel in an Apache Beam pipeline.

    python -m lstm_reviews.score --model saved_models/imdb_lstm \\
        --input 'reviews/*.txt' --input 'more/*.jsonl' --output scored/

Needs the optional extra: `pip install -e .[beam]` (Apache Beam; training does not).

Input: files matched by --input glob patterns, on any file system Beam reads (local paths,
gs://, s3://, hdfs:// with the matching Beam extra). A file named *.jsonl, *.ndjson or *.json
holds JSON lines, {"text": "...", "id": ...} ("id" optional, any JSON value); any other file
holds one review per line (`--format` overrides the guess).

Output, in shards (--num-shards; 0 lets the runner choose):

    OUTPUT/predictions-00000-of-00002.jsonl   one line per scored review:
        {"id": 7, "probability": 0.97, "label": "positive", "tokens": 212}
        {"source": "reviews/a.txt", "line": 3, "probability": 0.08, ...}  (no "id" given)
    OUTPUT/errors-00000-of-00001.jsonl        one line per input line that was not scored:
        {"source": "reviews/a.txt", "line": 4, "error": "empty review: nothing to predict"}

Every input line lands in exactly one of the two (a file that is not text at all lands in
errors as one line for the whole file, "line": null). Reasons: an empty line, bytes that are
not UTF-8, a line that is not JSON, a JSON line without a "text" string, a review with no
words left after standardization (only markup or punctuation), a failed prediction.
"tokens" counts the words the model read: it keeps the last eval_max_length tokens of a
review (the bound is inside the SavedModel), as `lstm_reviews.predict` does.

The pipeline runs in this process by default (Beam's DirectRunner, which downloads
nothing); any other Beam option (--runner, --direct_num_workers, --project, ...) passes
through to Beam's PipelineOptions. The model is read by each worker: give a path they see.

Exit codes: 0 every line scored, 1 some lines went to errors (the rest were scored),
2 usage error, Beam not installed, no file matches a pattern, or a missing/corrupt model.
"""

from __future__ import annotations

import argparse
import codecs
import json
import sys
from pathlib import Path

from lstm_reviews.errors import EXIT_OK, UserError, run_command
from lstm_reviews.serving.predictor import add_model_arguments

EXIT_SOME_BAD = 1  # some lines went to the errors output
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
NAMESPACE = "lstm_reviews.score"  # Beam metrics counters
EMPTY = "empty review: nothing to predict"
NO_WORDS = (
    "no words left after standardization (only markup, punctuation or symbols): nothing to predict"
)


def file_format(path: str, forced: str) -> str:
    """ "jsonl" or "text": forced, or guessed from the file name."""
    if forced != "auto":
        return forced
    return "jsonl" if path.lower().endswith(JSON_SUFFIXES) else "text"


def parse_line(raw: bytes, source: str, line: int, fmt: str) -> dict:
    """One input line -> a review {"text", "source", "line"[, "id"]} or a bad line {"error"...}.

    raw: the line's bytes without its line break.
    """
    where = {"source": source, "line": line}
    if line == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]  # not part of the review
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return {**where, "error": f"not UTF-8 text: {error.reason} at byte {error.start}"}
    if fmt == "jsonl":
        if not text.strip():
            return {**where, "error": EMPTY}
        try:
            value = json.loads(text)
        except ValueError as error:
            return {**where, "error": f"bad JSON: {error}"}
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            return {**where, "error": 'no "text" field holding a string'}
        record = {**where, "text": value["text"]}
        if "id" in value:
            record["id"] = value["id"]
            if not value["text"].strip():
                return {**where, "id": value["id"], "error": EMPTY}
        elif not value["text"].strip():
            return {**where, "error": EMPTY}
        return record
    if not text.strip():
        return {**where, "error": EMPTY}
    return {**where, "text": text}


def file_records(readable, forced_format: str) -> list[dict]:
    """Every line of one matched file as a review or a bad line; a file that is not text as
    one bad line. readable: a Beam fileio.ReadableFile."""
    from lstm_reviews.predict import SNIFF_BYTES, not_text

    source = readable.metadata.path
    with readable.open() as stream:
        data = stream.read()
    reason = not_text(data[:SNIFF_BYTES])
    if reason:
        return [{"source": source, "line": None, "error": f"not text ({reason})"}]
    # Only "\n" ends a line ("\r\n" too, its "\r" trimmed), as Beam's ReadFromText reads.
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the final line break ends the last line; it opens no new one
    fmt = file_format(source, forced_format)
    return [
        parse_line(raw.removesuffix(b"\r"), source, number, fmt)
        for number, raw in enumerate(lines, start=1)
    ]


def where(record: dict) -> dict:
    """The fields that say which input line a record is: its id, else its source and line."""
    if "id" in record:
        return {"id": record["id"]}
    return {"source": record["source"], "line": record["line"]}


def scored_record(review: dict, result: dict) -> dict:
    """A review and its model output -> a predictions line, or an errors line."""
    if "error" not in result and result.get("tokens") == 0:
        # A probability from no words is the bias alone: not a prediction about this review.
        result = {"error": NO_WORDS}
    if "error" in result:
        located = {"source": review["source"], "line": review["line"]}
        return {**located, **where(review), "error": result["error"]}
    probability = result["probability"]
    return {
        **where(review),
        "probability": probability,
        "label": "positive" if probability >= 0.5 else "negative",
        "tokens": result.get("tokens"),
    }


def _handler_class():
    """ReviewModelHandler, defined once Beam is importable (its base class is Beam's)."""
    from apache_beam.ml.inference.base import ModelHandler

    from lstm_reviews import predict

    class ReviewModelHandler(ModelHandler):
        """RunInference's model: the SavedModel's serving_default signature via
        predict.Predictor (tf.saved_model.load). Beam's TFModelHandlerTensor loads with
        tf.keras.models.load_model, which Keras 3 refuses for a SavedModel.

        Batches from Beam are regrouped by length (predict.length_batches): a batch is padded
        to its longest review, so one long review must not make short ones pay for it.
        """

        def __init__(self, model_dir: str, batch_size: int, max_tokens: int | None):
            super().__init__()
            self._model_dir = model_dir
            self._batch_size = batch_size
            self._max_tokens = max_tokens

        def load_model(self):
            return predict.Predictor(self._model_dir)

        def batch_elements_kwargs(self):
            # Large enough that sorting by length within it makes batches of like length.
            return {
                "min_batch_size": 1,
                "max_batch_size": self._batch_size * predict.WINDOW_BATCHES,
            }

        def run_inference(self, batch, model, inference_args=None):
            """batch: review dicts -> [(review, result)]; result: probability, logit, tokens,
            or {"error": ...} for a review the model failed on."""
            bound = self._max_tokens or sys.maxsize
            lengths = [min(len(review["text"].split()), bound) for review in batch]
            results: list[dict | None] = [None] * len(batch)
            for group in predict.length_batches(lengths, self._batch_size):
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_reviews.score",
        description="Score files of reviews with an exported SavedModel in an Apache Beam "
        "pipeline (pip install -e .[beam]). Writes OUTPUT/predictions-*.jsonl and "
        "OUTPUT/errors-*.jsonl; every input line lands in one of them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Other options (--runner, --direct_num_workers, ...) go to Beam's "
        "PipelineOptions;\nthe default runner is DirectRunner, in this process.\n\n"
        "exit codes:\n"
        "  0  every line scored\n"
        "  1  some lines went to the errors output (the rest were scored)\n"
        "  2  usage error, Beam not installed, an --input that matches nothing,\n"
        "     or a missing/incomplete/corrupt model",
    )
    parser.add_argument(
        "--input",
        metavar="PATTERN",
        action="append",
        required=True,
        help="file or glob pattern (any file system Beam reads); *.jsonl/*.ndjson/*.json "
        "are JSON lines with a 'text' field, others one review per line; repeatable",
    )
    parser.add_argument(
        "--output", metavar="DIR", required=True, help="directory or prefix for the shards"
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--format",
        choices=("auto", "text", "jsonl"),
        default="auto",
        help="how to read the input files (default: %(default)s, by file name)",
    )
    parser.add_argument(
        "--num-shards",
        metavar="N",
        type=int,
        default=1,
        help="shards of each output; 0 lets the runner choose (default: %(default)s)",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if args.batch_size <= 0:
        parser.error(f"--batch-size must be positive, got {args.batch_size}")
    if args.num_shards < 0:
        parser.error(f"--num-shards must be 0 or more, got {args.num_shards}")

    def body():
        try:
            import apache_beam  # noqa: F401
        except ImportError:
            raise UserError(
                "scoring needs Apache Beam, which is not installed: pip install -e .[beam]"
            ) from None
        from lstm_reviews.predict import Predictor

        check_inputs(args.input)
        # Loaded here once so that a missing or corrupt model fails before the pipeline
        # starts, with its own message; each worker loads its own copy.
        model_dir = Predictor(args.model).path.resolve()
        return run_pipeline(args, beam_args, model_dir)

    return run_command(body, on_interrupt=lambda: "Interrupted: the output may be incomplete.")


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


if __name__ == "__main__":
    sys.exit(main())
