"""Predictions as JSON lines: reviews in windows, batched by length, one record each in
input order; a review that cannot be predicted gets an "error" record (the command line:
python -m lstm_reviews.predict)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator

from lstm_reviews.errors import EXIT_OK
from lstm_reviews.serving.predictor import first_line, label
from lstm_reviews.serving.reviews import Review, text_prefix

EXIT_SOME_FAILED = 1  # some reviews got an error line instead of a prediction
# Length-sorted batching: reviews sorted within windows of this many batches, and a batch's
# padded size capped at batch_size times this many tokens (an IMDB review has a few hundred).
WINDOW_BATCHES = 8
TOKENS_PER_REVIEW = 1024


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
