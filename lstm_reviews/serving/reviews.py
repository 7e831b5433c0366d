"""Reading reviews in for prediction: arguments, files, directories of *.txt files and
standard input, one Review each; input that is not text is told apart from text with a few
damaged bytes (see python -m lstm_reviews.predict's help for the rules).
"""

from __future__ import annotations

import codecs
import io
import os
import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lstm_reviews.errors import UserError

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
