"""The score command's records (no Beam here): an input file's lines -> reviews or bad lines,
and a review with its model output -> a predictions line or an errors line. The formats are
described in python -m lstm_reviews.score's help.
"""

from __future__ import annotations

import codecs
import json

from lstm_reviews.serving.reviews import SNIFF_BYTES, not_text

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
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
        return _json_record(text, where)
    if not text.strip():
        return {**where, "error": EMPTY}
    return {**where, "text": text}


def _json_record(text: str, where: dict) -> dict:
    """One JSON line -> a review {"text", "source", "line"[, "id"]} or a bad line."""
    if not text.strip():
        return {**where, "error": EMPTY}
    try:
        value = json.loads(text)
    except ValueError as error:
        return {**where, "error": f"bad JSON: {error}"}
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return {**where, "error": 'no "text" field holding a string'}
    identity = {"id": value["id"]} if "id" in value else {}
    if not value["text"].strip():
        return {**where, **identity, "error": EMPTY}
    return {**where, "text": value["text"], **identity}


def file_records(readable, forced_format: str) -> list[dict]:
    """Every line of one matched file as a review or a bad line; a file that is not text as
    one bad line. readable: a Beam fileio.ReadableFile."""
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
