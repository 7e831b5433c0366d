"""IMDB reviews: read them, split them (finding them: imdb_files.py).

Where the reviews come from, and the archive's one extraction: imdb_files.py.

`config.source == "tfds"` reads tensorflow-datasets' `imdb_reviews` instead (config.data,
when given, is its data_dir). It has no movie ids, so its validation split is a seeded random
share of the training reviews; reviews of one movie may then sit on both sides.

Splits: the validation reviews are held out of the training reviews by *movie*
(`train/urls_{pos,neg}.txt`, line k = movie of review id k): a seeded shuffle of the movies,
taking whole movies until the requested share is closest. Reviews of one movie share names,
plots and phrasing; splitting them would leak those into validation. The test split is for
the final evaluation only. The 50k unlabeled reviews come from `load_unlabeled` alone.

Empty reviews (nothing but whitespace or tags) are dropped and counted, as they give the
model an all-padding row with nothing to learn from; undecodable bytes are replaced by
U+FFFD and counted. Both appear in `ImdbData.report` and in a logged warning.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lstm_reviews.data.imdb_files import find_imdb
from lstm_reviews.errors import UserError

log = logging.getLogger(__name__)

_CLASSES = (("neg", 0), ("pos", 1))
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")  # the Python twin of text.standardize_review's tag rule
_REVIEW_FILE = re.compile(r"(\d+)_(\d+)\.txt")
_EXAMPLES = 10  # paths listed in the report per problem; the counts are complete


@dataclasses.dataclass
class Split:
    """Reviews of one split. texts: n strings; labels: <int32>[n], 1 positive, 0 negative;
    movies: n IMDb title ids (empty strings where unknown, as with tfds)."""

    texts: list
    labels: np.ndarray
    movies: list = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclasses.dataclass
class ImdbData:
    train: Split
    validation: Split
    test: Split
    report: dict


class _Problems:
    """Counts of invalid UTF-8 and empty reviews, with a few example paths each."""

    def __init__(self):
        self.invalid_utf8, self.empty = 0, 0
        self.invalid_examples, self.empty_examples = [], []

    def decode(self, raw: bytes, where: str) -> str | None:
        """The review's text, or None for an empty review (dropped, counted)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            self.invalid_utf8 += 1
            if len(self.invalid_examples) < _EXAMPLES:
                self.invalid_examples.append(where)
        if not _TAG.sub(" ", text).strip():
            self.empty += 1
            if len(self.empty_examples) < _EXAMPLES:
                self.empty_examples.append(where)
            return None
        return text

    def report(self) -> dict:
        return {
            "invalid_utf8_replaced": self.invalid_utf8,
            "invalid_utf8_examples": self.invalid_examples,
            "empty_dropped": self.empty,
            "empty_examples": self.empty_examples,
        }

    def warn(self, what: str) -> None:
        if self.invalid_utf8:
            log.warning(
                "%s: %d reviews had invalid UTF-8, decoded with U+FFFD replacements (e.g. %s)",
                what,
                self.invalid_utf8,
                self.invalid_examples[0],
            )
        if self.empty:
            log.warning(
                "%s: dropped %d empty reviews (e.g. %s)", what, self.empty, self.empty_examples[0]
            )


def _review_files(folder: Path) -> list:
    """(review id, path) of folder's <id>_<rating>.txt files, by id."""
    if not folder.is_dir():
        raise UserError(f"{folder}: missing; expected a folder of <id>_<rating>.txt reviews")
    files = []
    for entry in folder.iterdir():
        if entry.suffix != ".txt":
            continue  # stray files (.DS_Store, editor backups) are not reviews
        match = _REVIEW_FILE.fullmatch(entry.name)
        if not match:
            raise UserError(f"{entry}: unexpected review file name; expected <id>_<rating>.txt")
        files.append((int(match.group(1)), entry))
    if not files:
        raise UserError(f"{folder}: holds no reviews; expected <id>_<rating>.txt files")
    return sorted(files)


def _movie_ids(urls_file: Path, review_ids: list) -> list:
    if not urls_file.is_file():
        raise UserError(
            f"{urls_file}: missing; expected line k = the IMDb URL of the movie of "
            f"review id k (the validation split is grouped by movie)"
        )
    lines = urls_file.read_text(encoding="utf-8", errors="replace").splitlines()
    if review_ids[-1] >= len(lines):
        raise UserError(
            f"{urls_file}: has {len(lines)} lines, but review id {review_ids[-1]} "
            f"needs line {review_ids[-1] + 1}; expected one movie URL per review id"
        )
    # http://www.imdb.com/title/tt0453418/usercomments -> tt0453418
    movies = []
    for k in review_ids:
        match = re.search(r"/title/([^/]+)", lines[k])
        movies.append(match.group(1) if match else lines[k].strip())
    return movies


def _read_labeled(root: Path, split: str, problems: _Problems) -> Split:
    texts, labels, movies = [], [], []
    for name, label in _CLASSES:
        files = _review_files(root / split / name)
        ids = [review_id for review_id, _ in files]
        movie_of = _movie_ids(root / split / f"urls_{name}.txt", ids)
        for (_, path), movie in zip(files, movie_of):
            text = problems.decode(path.read_bytes(), str(path))
            if text is not None:
                texts.append(text)
                labels.append(label)
                movies.append(movie)
    return Split(texts, np.asarray(labels, np.int32), movies)


def _take(split: Split, rows: np.ndarray) -> Split:
    return Split(
        [split.texts[i] for i in rows],
        split.labels[rows],
        [split.movies[i] for i in rows] if split.movies else [],
    )


def validation_rows_by_movie(movies: Sequence[str], share: float, seed: int) -> np.ndarray:
    """Row indices of the validation reviews: whole movies, seeded, about `share` of rows."""
    unique, inverse, counts = np.unique(np.asarray(movies), return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    cumulative = np.cumsum(counts[order])
    target = share * len(movies)
    # The first k + 1 movies reach the target; k movies instead when that lands closer.
    k = int(np.searchsorted(cumulative, target))
    take = k + 1
    if 0 < k < len(cumulative) and target - cumulative[k - 1] < cumulative[k] - target:
        take = k
    take = min(max(take, 1), len(unique) - 1)  # both sides keep at least one movie
    return np.flatnonzero(np.isin(inverse.ravel(), order[:take]))


def _split_off_validation(train: Split, share: float, seed: int, by_movie: bool):
    if by_movie:
        rows = validation_rows_by_movie(train.movies, share, seed)
    else:
        shuffled = np.random.default_rng(seed).permutation(len(train))
        rows = np.sort(shuffled[: round(share * len(train))])
    keep = np.setdiff1d(np.arange(len(train)), rows)
    return _take(train, keep), _take(train, rows)


def _load_aclimdb(config) -> tuple:
    root = find_imdb(config.data)
    problems = _Problems()
    train = _read_labeled(root, "train", problems)
    test = _read_labeled(root, "test", problems)
    problems.warn(str(root))
    return root, train, test, problems


def _tfds_load(config, split: str):
    import tensorflow_datasets as tfds

    try:
        return tfds.load(
            "imdb_reviews",
            split=split,
            as_supervised=True,
            data_dir=config.data,
            shuffle_files=False,
        )
    except Exception as error:  # tfds raises many kinds; the user needs the cause, not a trace
        raise UserError(
            f"tensorflow-datasets imdb_reviews ({split}) in data_dir "
            f"{config.data or '~/tensorflow_datasets'}: cannot load ({error}); "
            f"expected a prepared or downloadable imdb_reviews"
        ) from error


def _read_tfds(config, split: str, problems: _Problems) -> Split:
    texts, labels = [], []
    for index, (text, label) in enumerate(_tfds_load(config, split).as_numpy_iterator()):
        decoded = problems.decode(text, f"imdb_reviews/{split}[{index}]")
        if decoded is not None:
            texts.append(decoded)
            labels.append(label)
    return Split(texts, np.asarray(labels, np.int32), [])


def load_imdb(config) -> ImdbData:
    """The labeled reviews: train and validation (held out of train, by movie) and test."""
    started = time.perf_counter()
    if config.source == "tfds":
        problems = _Problems()
        train, test = _read_tfds(config, "train", problems), _read_tfds(config, "test", problems)
        problems.warn("imdb_reviews")
        source = f"tfds:imdb_reviews data_dir={config.data}"
        grouping = "random (tfds has no movie ids)"
    elif config.source == "aclimdb":
        source, train, test, problems = _load_aclimdb(config)
        grouping = "movie"
    else:
        raise UserError(f"unknown data source {config.source!r}; expected 'aclimdb' or 'tfds'")
    train, validation = _split_off_validation(
        train, config.validation_split, config.seed, by_movie=grouping == "movie"
    )
    report = {
        "source": str(source),
        "reviews": {
            name: len(split)
            for name, split in (("train", train), ("validation", validation), ("test", test))
        },
        "validation_grouped_by": grouping,
        "validation_movies": len(set(validation.movies)),
        "train_movies": len(set(train.movies)),
        **problems.report(),
        "load_seconds": round(time.perf_counter() - started, 2),
    }
    return ImdbData(train, validation, test, report)


def load_unlabeled(config) -> list:
    """The 50k unlabeled reviews (train/unsup), as strings; never part of a labeled split."""
    problems = _Problems()
    if config.source == "tfds":
        texts = _read_tfds(config, "unsupervised", problems).texts
    else:
        root = find_imdb(config.data)
        texts = [
            text
            for _, path in _review_files(root / "train" / "unsup")
            if (text := problems.decode(path.read_bytes(), str(path))) is not None
        ]
    problems.warn("unlabeled reviews")
    return texts
