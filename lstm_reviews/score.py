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
import sys

from lstm_reviews.errors import UserError, run_command
from lstm_reviews.serving.predictor import Predictor, add_model_arguments
from lstm_reviews.serving.scoring import check_inputs, run_pipeline


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
        check_inputs(args.input)
        # Loaded here once so that a missing or corrupt model fails before the pipeline
        # starts, with its own message; each worker loads its own copy.
        model_dir = Predictor(args.model).path.resolve()
        return run_pipeline(args, beam_args, model_dir)

    return run_command(body, on_interrupt=lambda: "Interrupted: the output may be incomplete.")


if __name__ == "__main__":
    sys.exit(main())
