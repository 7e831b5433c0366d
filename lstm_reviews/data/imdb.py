"""IMDB reviews: find them, read them, split them.

Where the reviews come from (`find_imdb`), first match wins:

  1. `--data PATH` (config.data): an aclImdb directory (or its parent) or aclImdb_v1.tar.gz;
  2. the environment variable LSTM_REVIEWS_DATA, same forms;
  3. Keras' cache, $KERAS_HOME/datasets or ~/.keras/datasets: `aclImdb/` or the tarball;
  4. a download with `keras.utils.get_file` from the dataset's home page.

A tarball is extracted once, into the Keras cache under
`datasets/lstm_reviews/aclImdb-<hash of the tarball's size and SHA-256>/`: through a
temporary directory renamed into place, so an interrupted extraction never looks complete.
Reading 100k small files from disk is several times faster than decompressing the archive
on every run, and the later runs do not even get that far: they hit the token cache.

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
import hashlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lstm_reviews.data.cache import short_hash
from lstm_reviews.errors import UserError
from lstm_reviews.startup import deferred_import

keras = deferred_import("keras")  # for a download alone: locating --data needs no Keras

log = logging.getLogger(__name__)

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
TARBALL_NAME = "aclImdb_v1.tar.gz"
ENV_VAR = "LSTM_REVIEWS_DATA"
_CLASSES = (("neg", 0), ("pos", 1))
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")  # the Python twin of text.standardize_review's tag rule
_REVIEW_FILE = re.compile(r"(\d+)_(\d+)\.txt")
_EXAMPLES = 10  # paths listed in the report per problem; the counts are complete

# --------------------------------------------------------------------------- finding


@dataclasses.dataclass(frozen=True)
class Located:
    kind: str  # "dir", "tarball" or "download"
    path: Path | None
    origin: str  # how it was found, for messages


def _keras_datasets_dir() -> Path:
    # Keras' own rule: $KERAS_HOME, else ~/.keras.
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _is_imdb_dir(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def _classify(path: Path, origin: str) -> Located:
    path = path.expanduser()
    expected = f"expected an aclImdb directory or {TARBALL_NAME}"
    if not path.exists():
        raise UserError(f"{origin} {path}: does not exist; {expected}")
    if path.is_dir():
        for candidate in (path, path / "aclImdb"):
            if _is_imdb_dir(candidate):
                return Located("dir", candidate.resolve(), origin)
        missing = " and ".join(
            f"{name}/" for name in ("train", "test") if not (path / name).is_dir()
        )
        raise UserError(
            f"{origin} {path}: not an aclImdb directory, it has no {missing}; "
            f"expected train/ and test/ folders holding pos/ and neg/ reviews"
        )
    return Located("tarball", path.resolve(), origin)


def locate(path: str | None) -> Located:
    """Where the data is, without extracting or downloading anything."""
    if path:
        return _classify(Path(path), "--data")
    if os.environ.get(ENV_VAR):
        return _classify(Path(os.environ[ENV_VAR]), f"${ENV_VAR}")
    datasets = _keras_datasets_dir()
    if _is_imdb_dir(datasets / "aclImdb"):
        return Located("dir", (datasets / "aclImdb").resolve(), "Keras cache")
    if (datasets / TARBALL_NAME).is_file():
        return Located("tarball", (datasets / TARBALL_NAME).resolve(), "Keras cache")
    return Located("download", None, "download")


def file_identity(path: Path) -> dict:
    """What a file holds: its size and SHA-256 (0.06 s for IMDB's 60 MB on 2 CPU cores). Not
    its path or modification time: the same archive downloaded again or copied elsewhere
    still finds its extraction and the caches made from it."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _extract(tarball: Path) -> Path:
    """Extracts the tarball once into the Keras cache; returns its aclImdb directory."""
    parent = _keras_datasets_dir() / "lstm_reviews"
    target = parent / f"aclImdb-{short_hash(file_identity(tarball))}"
    if _is_imdb_dir(target):
        return target
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"{parent}: cannot create the extraction cache ({error}); "
            f"expected a writable $KERAS_HOME or ~/.keras"
        ) from error
    started = time.perf_counter()
    temporary = Path(tempfile.mkdtemp(prefix=".extracting-", dir=parent))
    try:
        try:
            with tarfile.open(tarball, "r:*") as tar:
                tar.extractall(temporary, filter="data")  # "data": no absolute paths, links out
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            raise UserError(
                f"{tarball}: cannot read the archive ({error}); expected a complete {TARBALL_NAME}"
            ) from error
        top = next((c for c in (temporary / "aclImdb", temporary) if _is_imdb_dir(c)), None)
        if top is None:
            raise UserError(
                f"{tarball}: the archive has no aclImdb/train/ and aclImdb/test/; "
                f"expected the layout of {TARBALL_NAME}"
            )
        try:
            os.rename(top, target)  # atomic: the directory appears complete or not at all
        except OSError:
            if not _is_imdb_dir(target):  # else another process finished first: use theirs
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    log.info("extracted %s into %s in %.1f s", tarball, target, time.perf_counter() - started)
    return target


def _download() -> Path:
    try:
        tarball = keras.utils.get_file(
            fname=TARBALL_NAME,
            origin=IMDB_URL,
            cache_dir=str(_keras_datasets_dir().parent),
            cache_subdir="datasets",
        )
    except Exception as error:  # get_file raises bare Exception for network errors
        raise UserError(
            f"could not download {IMDB_URL} ({error}); expected the dataset at "
            f"--data PATH, ${ENV_VAR}, or {_keras_datasets_dir()}"
        ) from error
    return Path(tarball).resolve()


def find_imdb(path: str | None = None) -> Path:
    """The aclImdb directory: from `path`, $LSTM_REVIEWS_DATA, Keras' cache, else downloaded.

    A tarball (given, cached or downloaded) is extracted once into the Keras cache.
    Raises UserError naming the path when it does not exist or is not IMDB.
    """
    located = locate(path)
    if located.kind == "download":
        located = Located("tarball", _download(), "download")
    if located.kind == "tarball":
        return _extract(located.path)
    return located.path


# --------------------------------------------------------------------------- reading


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
