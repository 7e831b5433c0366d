"""Predicts review sentiment with an exported SavedModel; needs TensorFlow, not the model code.

    python -m lstm_reviews.predict --model saved_models/imdb_lstm "A wonderful film." "Dull."
    python -m lstm_reviews.predict --model saved_models/imdb_lstm --file reviews.txt
    python -m lstm_reviews.predict --model saved_models/imdb_lstm --file aclImdb/test/pos
    cat reviews.txt | python -m lstm_reviews.predict --model saved_models/imdb_lstm

--model is a model directory (the highest numbered version is used) or one version's
directory. Reviews come from the arguments ("-" reads standard input), from --file (one
review per line; blank lines are skipped; or a directory: each *.txt file directly in it is
one review), or from standard input when neither is given and it is not a terminal.
A folder of review folders, like aclImdb/test (pos/, neg/ and the movie lists urls_*.txt,
which are not reviews), is refused with the folders to pass instead.

Output: one JSON line per review, in input order:

    {"text": "A wonderful film.", "probability": 0.97, "label": "positive", "tokens": 3}
    {"text": "Dull.", "probability": 0.08, "label": "negative", "tokens": 1,
     "source": "f.txt", "line": 2}
    {"text": "", "error": "empty review: nothing to predict", "source": "f.txt", "line": 3}

"text" is the review's start (about 60 characters, whitespace collapsed); "label" is
positive when probability >= 0.5; "tokens" counts the words the model read (the last
eval_max_length of the review, 4,096 by default: every IMDB review whole); "source"/"line"
say where a review came from. Reviews are batched by length (a long one never pads short
ones); the output keeps the input's order.
Invalid UTF-8 is decoded with U+FFFD replacements and still predicted, with a warning on
standard error (the first few; then how many more); a NUL byte separates words. Input that
is not text at all (a program, a UTF-16 file: NUL bytes in invalid UTF-8, a UTF-16 byte
order mark, or over 10% control or undecodable characters at its start) is refused. A line
further on that is not text (control characters among invalid UTF-8, or mostly invalid
UTF-8: binary data appended to text), a review that cannot be predicted, a *.txt file of a
directory that cannot be read or is not text, and a file or standard input holding no
review at all each get an "error" line instead; the others are unaffected.

Exit codes:
    0  every review got a prediction
    1  some reviews got an error line instead (the rest were predicted), or writing the
       output failed (disk full)
    2  usage error, input that is not UTF-8 text, unreadable input, closed standard
       input or output, or a missing/incomplete/corrupt model
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lstm_reviews.errors import EXIT_OK, run_command
from lstm_reviews.serving.prediction_lines import run
from lstm_reviews.serving.predictor import (
    Predictor,
    add_model_arguments,
    resolve_model_dir,  # noqa: F401  (kept importable from here)
)
from lstm_reviews.serving.reviews import check_files, iter_reviews, review_files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_reviews.predict",
        description="Predict the sentiment of movie reviews with an exported SavedModel. "
        "Prints one JSON line per review: text (its start), probability, label, tokens.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="reviews come from the arguments ('-' reads standard input), from --file, or from\n"
        "standard input when neither is given. An empty review, an empty file or standard\n"
        "input, and an unreadable or binary *.txt file of a --file directory each get an\n"
        "error line.\n\n"
        "exit codes:\n"
        "  0  every review got a prediction\n"
        "  1  some reviews got an error line instead (the rest were predicted), or writing the\n"
        "     output failed (disk full)\n"
        "  2  usage error, input that is not UTF-8 text, unreadable input, closed standard\n"
        "     input or output, or a missing/incomplete/corrupt model",
    )
    parser.add_argument(
        "reviews", nargs="*", metavar="REVIEW", help="review text; '-' reads standard input"
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--file",
        metavar="PATH",
        type=Path,
        action="append",
        default=[],
        help="UTF-8 file with one review per line, or a directory of .txt reviews (one per "
        "file; not a folder of such folders); repeatable",
    )
    return parser


def _refuse_directory(parser, path: Path) -> None:
    folders = sorted(
        folder for folder in path.iterdir() if folder.is_dir() and any(folder.glob("*.txt"))
    )
    if folders:  # e.g. aclImdb/test: its reviews are in pos/ and neg/
        parser.error(
            f"--file {path} holds no .txt reviews itself, but its folders "
            f"{', '.join(folder.name + '/' for folder in folders)} do: pass them, as in "
            + " ".join(f"--file {folder}" for folder in folders)
        )
    parser.error(
        f"--file {path} is a directory without .txt files (expected one review per .txt file)"
    )


def main(argv=None, stdin=None, stdout=None) -> int:
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size <= 0:
        parser.error(f"--batch-size must be positive, got {args.batch_size}")
    for path in args.file:
        if not path.exists():
            parser.error(f"--file {path} does not exist")
        if path.is_dir() and not review_files(path):
            _refuse_directory(parser, path)
    if not args.reviews and not args.file and (stdin is None or stdin.isatty()):
        parser.error(
            "no reviews given: pass them as arguments, with --file PATH, or on standard input"
        )
    if "-" in args.reviews and stdin is None:  # Python's stand-in for a closed descriptor 0
        parser.error("'-' reads standard input, but it is closed")

    def body():
        if stdout is sys.stdout and (getattr(stdout, "encoding", "") or "").lower() != "utf-8":
            stdout.reconfigure(encoding="utf-8")  # JSON text is UTF-8 whatever the locale says
        check_files(args.file)
        try:
            predictor = Predictor(args.model)
            return run(
                predictor, iter_reviews(args.reviews, args.file, stdin), stdout, args.batch_size
            )
        except BrokenPipeError:
            # The reader (e.g. `| head`) left; stop quietly, without Python's flush-time complaint.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK

    return run_command(body, on_interrupt=lambda: "Interrupted: the lines above were predicted.")


if __name__ == "__main__":
    sys.exit(main())
