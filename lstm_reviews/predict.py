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
import codecs
import io
import itertools
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lstm_reviews.errors import EXIT_OK, UserError, run_command
from lstm_reviews.serving.predictor import (
    Predictor,
    add_model_arguments,
    first_line,
    label,
    resolve_model_dir,  # noqa: F401  (kept importable from here)
)

EXIT_SOME_FAILED = 1  # some reviews got an error line instead of a prediction
# Length-sorted batching: reviews sorted within windows of this many batches, and a batch's
# padded size capped at batch_size times this many tokens (an IMDB review has a few hundred).
WINDOW_BATCHES = 8
TOKENS_PER_REVIEW = 1024
TEXT_PREFIX_CHARS = 60
SNIFF_BYTES = 8192  # the start of an input, read to tell text from binary
# Past this share of control or undecodable characters an input is not text: Latin-1 text
# has a few percent, UTF-16 without a byte order mark about half (its NUL bytes).
NOT_TEXT_SHARE = 0.1
_TEXT_CONTROLS = "\t\n\r\f\v"
# A byte that encodes a control character outside _TEXT_CONTROLS (C0 and DEL).
_CONTROL_BYTE = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
# Warnings about the input shown on standard error; the rest are counted in one line.
MAX_WARNINGS = 5
# aclImdb's movie lists (line k: the movie of review k) sit beside the review folders.
_ACLIMDB_URL_LIST = re.compile(r"urls_(pos|neg|unsup)\.txt")


@dataclass
class Review:
    text: str
    source: str | None = None  # file path, "<stdin>", or None for an argument
    line: int | None = None  # 1-based line in a line-per-review source
    error: str | None = None  # why this entry of the input cannot be predicted


def text_prefix(text: str, limit: int = TEXT_PREFIX_CHARS) -> str:
    """The review's start for display: whitespace collapsed, cut at `limit` characters."""
    collapsed = " ".join(text.split())
    return collapsed if len(collapsed) <= limit else collapsed[: limit - 1] + "…"


class InputWarnings:
    """Warnings about the input on standard error: the first MAX_WARNINGS, then (summary())
    how many more there were, so that a long damaged input cannot bury the output."""

    def __init__(self, limit: int = MAX_WARNINGS):
        self.limit, self.shown, self.hidden = limit, 0, 0

    def warn(self, message: str) -> None:
        if self.shown < self.limit:
            print(f"warning: {message}", file=sys.stderr)
            self.shown += 1
        else:
            self.hidden += 1

    def summary(self) -> None:
        if self.hidden:
            print(f"warning: ... and {self.hidden} more like these, not shown", file=sys.stderr)
            self.hidden = 0


def _decode(raw: bytes, where: str, warnings: InputWarnings) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        warnings.warn(f"{where}: invalid UTF-8, undecodable bytes replaced with U+FFFD")
        return raw.decode("utf-8", errors="replace")


def not_text(start: bytes) -> str | None:
    """Why bytes from an input's start are not UTF-8 text (binary, UTF-16), or None if they are."""
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)):
        return "it starts with a UTF-16 or UTF-32 byte order mark"
    # Incremental, final=False: a character cut at the sample's end is not an error.
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(start, final=False)
    except UnicodeDecodeError:
        if b"\0" in start:
            return "it holds NUL bytes and invalid UTF-8"
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(start, final=False)
    odd = sum(
        char == "\ufffd" or (unicodedata.category(char) == "Cc" and char not in _TEXT_CONTROLS)
        for char in text
    )
    if odd > max(1, NOT_TEXT_SHARE * len(text)):  # one stray NUL does not make a file binary
        return f"{odd} of its first {len(text)} characters are control characters or invalid UTF-8"
    return None


def line_not_text(raw: bytes) -> str | None:
    """Why one line of an input whose start is text is not text, or None if it is. Stricter
    than not_text for short lines: invalid UTF-8 alone (a Latin-1 word) stays text, unless
    it is most of the line; with control characters among it, not_text's rule decides."""
    if _CONTROL_BYTE.search(raw):
        return not_text(raw)
    if raw.isascii():
        return None
    text = raw.decode("utf-8", errors="replace")
    invalid = text.count("\ufffd")
    if invalid > len(text) / 2:
        return f"{invalid} of its {len(text)} characters are invalid UTF-8"
    return None


def _text_stream(stream, source: str):
    """`stream` (binary), after checking that its start reads as text; UserError if not."""
    if not hasattr(stream, "peek"):
        stream = io.BufferedReader(stream)  # peek looks ahead without consuming the review
    reason = not_text(stream.peek(SNIFF_BYTES)[:SNIFF_BYTES])
    if reason:
        raise UserError(
            f"{source} is not text ({reason}); expected UTF-8 text, one review per line"
        )
    return stream


def _lines(stream, source: str, warnings: InputWarnings) -> Iterator[Review]:
    """One review per non-blank line of a binary stream; an error entry for a line that is
    not text (binary data after text), and if there is no review."""
    found = False
    for number, raw in enumerate(_text_stream(stream, source), start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]  # a UTF-8 byte order mark is not part of the review
        raw = raw.rstrip(b"\r\n")
        reason = line_not_text(raw)
        if reason:
            found = True
            error = f"not text ({reason}); expected UTF-8 text, one review per line"
            yield Review("", source, number, error=error)
            continue
        text = _decode(raw, f"{source} line {number}", warnings)
        if text.strip():  # blank lines separate reviews; they are not reviews
            found = True
            yield Review(text, source, number)
    if not found:  # like an empty review argument: an error line, not a silent success
        yield Review("", source, error=f"no reviews in {source}: it is empty or only blank lines")


def review_files(folder: Path) -> list[Path]:
    """The reviews of a --file directory: its *.txt files, except aclImdb's movie lists."""
    return sorted(
        path for path in folder.glob("*.txt") if not _ACLIMDB_URL_LIST.fullmatch(path.name)
    )


def _file_review(path: Path, warnings: InputWarnings) -> Review:
    """One *.txt file of a directory as one review; an error entry if it cannot be one."""
    try:
        raw = path.read_bytes()
    except OSError as error:  # one bad entry must not cost the other files their predictions
        return Review("", str(path), error=f"cannot read {path}: {error.strerror or error}")
    reason = not_text(raw[:SNIFF_BYTES])
    if reason:
        return Review(
            "", str(path), error=f"not text ({reason}); expected UTF-8 text, one review per file"
        )
    return Review(_decode(raw, str(path), warnings), str(path))


def read_file(path: Path, warnings: InputWarnings) -> Iterator[Review]:
    """Reviews of a file (one per line) or a directory (one per *.txt file)."""
    if path.is_dir():
        for file in review_files(path):
            yield _file_review(file, warnings)
        return
    try:
        with open(path, "rb") as stream:
            yield from _lines(stream, str(path), warnings)
    except OSError as error:
        raise UserError(
            f"cannot read {error.filename or path}: {error.strerror or error}"
        ) from None


def check_files(paths: list[Path]) -> None:
    """Reads the start of every --file that is a file, so that unreadable or binary input is
    refused before the model loads and before any line of output."""
    for path in paths:
        if not path.is_file():
            # A directory's entries are checked one by one (a bad one gets an error line); a
            # pipe is checked as it is read: what this look consumed would be lost.
            continue
        try:
            with open(path, "rb") as stream:
                _text_stream(stream, str(path))
        except OSError as error:
            raise UserError(f"cannot read {path}: {error.strerror or error}") from None


def _argument_text(argument: str, warnings: InputWarnings) -> str:
    """An argument as text; bytes that were not UTF-8 (surrogate-escaped by Python) are replaced."""
    try:
        argument.encode("utf-8")
        return argument
    except UnicodeEncodeError:
        return _decode(os.fsencode(argument), "argument", warnings)


def iter_reviews(arguments: list[str], files: list[Path], stdin) -> Iterator[Review]:
    warnings = InputWarnings()
    try:
        for argument in arguments:
            if argument == "-":
                yield from _lines(stdin.buffer, "<stdin>", warnings)
            else:
                yield Review(_argument_text(argument, warnings))
        for path in files:
            yield from read_file(path, warnings)
        if not arguments and not files:
            yield from _lines(stdin.buffer, "<stdin>", warnings)
    finally:
        warnings.summary()


def _record(review: Review, **fields) -> dict:
    record = {"text": text_prefix(review.text), **fields}
    if review.source is not None:
        record["source"] = review.source
    if review.line is not None:
        record["line"] = review.line
    return record


def _prediction_record(review: Review, result: dict) -> dict:
    if result.get("tokens") == 0:
        # A probability from no words is the bias alone: not a prediction about this review.
        return _record(
            review,
            error="no words left after standardization (only markup, "
            "punctuation or symbols): nothing to predict",
        )
    probability = result["probability"]
    fields = {"probability": probability, "label": label(probability)}
    if "tokens" in result:
        fields["tokens"] = result["tokens"]
    return _record(review, **fields)


def predict_batch(predictor, reviews: list[Review]) -> list[dict]:
    """One record per review; a failing batch is retried review by review."""
    records: list[dict | None] = [None] * len(reviews)
    todo = []
    for index, review in enumerate(reviews):
        if review.error is not None:
            records[index] = _record(review, error=review.error)
        elif review.text.strip():
            todo.append(index)
        else:
            records[index] = _record(review, error="empty review: nothing to predict")
    if todo:
        try:
            results = predictor([reviews[index].text for index in todo])
        except Exception:
            results = None  # one bad review must not cost the others their predictions
        if results is not None:
            for index, result in zip(todo, results):
                records[index] = _prediction_record(reviews[index], result)
        else:
            for index in todo:
                try:
                    records[index] = _prediction_record(
                        reviews[index], predictor([reviews[index].text])[0]
                    )
                except Exception as error:
                    records[index] = _record(
                        reviews[index], error=f"prediction failed: {first_line(error)}"
                    )
    return records


def _windows(items: Iterable[Review], size: int) -> Iterator[list[Review]]:
    iterator = iter(items)
    while window := list(itertools.islice(iterator, size)):
        yield window


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices of `lengths` grouped into batches of similar length, shortest first.

    A batch is padded to its longest review, so one long review must not make its neighbours
    pay for its length: a batch holds at most batch_size reviews and at most
    batch_size * TOKENS_PER_REVIEW padded tokens (a review longer than that goes alone).
    """
    budget = batch_size * TOKENS_PER_REVIEW
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        batch = batches[-1] if batches else None
        # Sorted ascending: this review is the longest of the batch it joins.
        if batch and len(batch) < batch_size and (len(batch) + 1) * lengths[index] <= budget:
            batch.append(index)
        else:
            batches.append([index])
    return batches


def predict_window(predictor, reviews: list[Review], batch_size: int) -> list[dict]:
    """One record per review, in input order; the model sees them in batches of similar length
    (words counted before the model: a close enough estimate of its tokens)."""
    records: list[dict | None] = [None] * len(reviews)
    for batch in length_batches([len(review.text.split()) for review in reviews], batch_size):
        for index, record in zip(batch, predict_batch(predictor, [reviews[i] for i in batch])):
            records[index] = record
    return records


def run(predictor, reviews: Iterable[Review], out, batch_size: int = 32) -> int:
    """Writes one JSON line per review to `out`, in input order; returns the exit code (0 or 1).

    Reviews are read WINDOW_BATCHES batches at a time and sorted by length within a window."""
    failed = 0
    for window in _windows(reviews, batch_size * WINDOW_BATCHES):
        for record in predict_window(predictor, window, batch_size):
            failed += "error" in record
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()  # results appear window by window when reading a stream
    return EXIT_SOME_FAILED if failed else EXIT_OK


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
