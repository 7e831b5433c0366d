"""IMDB reviews: find, read, split, standardize, vectorize, cache and batch them.

Where the reviews come from (`find_imdb`), first match wins:

  1. `--data PATH` (config.data): an aclImdb directory (or its parent) or aclImdb_v1.tar.gz;
  2. the environment variable LSTM_REVIEWS_DATA, same forms;
  3. Keras' cache, $KERAS_HOME/datasets or ~/.keras/datasets: `aclImdb/` or the tarball;
  4. a download with `keras.utils.get_file` from the dataset's home page.

A tarball is extracted once, into the Keras cache under
`datasets/lstm_reviews/aclImdb-<hash of the tarball's path, size and mtime>/`: through a
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

Text: `standardize_review` lowercases, removes HTML tags (`<br />`), keeps apostrophes inside
words ("don't", "isn't": negation flips a review), splits "!" and "?" into tokens of their
own (they carry emphasis and sarcasm), and turns every other punctuation mark into a space
(it mostly separates words, and keeping it would spread one word over many vocabulary
entries). Empty reviews (nothing but whitespace or tags) are dropped and counted, as they
give the model an all-padding row with nothing to learn from; undecodable bytes are replaced
by U+FFFD and counted. Both appear in `ImdbData.report` and in a logged warning.

Tokens: a `TextVectorization` adapted on the training split only; the vectorized splits are
cached in one .npz (`prepare_tokens`), which `load_token_cache` reads with numpy alone, so
training can run from it on the JAX or PyTorch backends without TensorFlow.

Batches: `make_dataset` (tf.data) and `NumpyBatches` (a `keras.utils.PyDataset`) make the same
batches: ids <int32>[batch, time] right-padded with 0 (0 is never a token; the Embedding's
mask_zero masks it) and labels <float32>[batch]. A review longer than max_length keeps its
LAST tokens: reviewers tend to close with their verdict ("... 8/10, go see it"), while the
opening is often plot summary. With bucketing, reviews of similar length share a batch, so
far less of each batch is padding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

import keras  # with the JAX, PyTorch or NumPy backend this does not load TensorFlow
import numpy as np

log = logging.getLogger(__name__)

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
TARBALL_NAME = "aclImdb_v1.tar.gz"
ENV_VAR = "LSTM_REVIEWS_DATA"
# Part of the token cache's key: change it whenever standardize_review changes its output.
STANDARDIZE_VERSION = "2"
_CACHE_FORMAT = 1
_SPLITS = ("train", "validation", "test")
_CLASSES = (("neg", 0), ("pos", 1))
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")  # the Python twin of standardize_review's tag rule
_REVIEW_FILE = re.compile(r"(\d+)_(\d+)\.txt")
_EXAMPLES = 10  # paths listed in the report per problem; the counts are complete


class DataError(ValueError):
    """A problem with the user's data; the message names the path and what was expected."""


# --------------------------------------------------------------------------- finding

@dataclasses.dataclass(frozen=True)
class _Located:
    kind: str  # "dir", "tarball" or "download"
    path: Optional[Path]
    origin: str  # how it was found, for messages


def _keras_datasets_dir() -> Path:
    # Keras' own rule: $KERAS_HOME, else ~/.keras.
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _is_imdb_dir(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def _classify(path: Path, origin: str) -> _Located:
    path = path.expanduser()
    expected = f"expected an aclImdb directory or {TARBALL_NAME}"
    if not path.exists():
        raise DataError(f"{origin} {path}: does not exist; {expected}")
    if path.is_dir():
        for candidate in (path, path / "aclImdb"):
            if _is_imdb_dir(candidate):
                return _Located("dir", candidate.resolve(), origin)
        missing = " and ".join(f"{name}/" for name in ("train", "test")
                               if not (path / name).is_dir())
        raise DataError(f"{origin} {path}: not an aclImdb directory, it has no {missing}; "
                        f"expected train/ and test/ folders holding pos/ and neg/ reviews")
    return _Located("tarball", path.resolve(), origin)


def _locate(path: Optional[str]) -> _Located:
    """Where the data is, without extracting or downloading anything."""
    if path:
        return _classify(Path(path), "--data")
    if os.environ.get(ENV_VAR):
        return _classify(Path(os.environ[ENV_VAR]), f"${ENV_VAR}")
    datasets = _keras_datasets_dir()
    if _is_imdb_dir(datasets / "aclImdb"):
        return _Located("dir", (datasets / "aclImdb").resolve(), "Keras cache")
    if (datasets / TARBALL_NAME).is_file():
        return _Located("tarball", (datasets / TARBALL_NAME).resolve(), "Keras cache")
    return _Located("download", None, "download")


def _file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def short_hash(value) -> str:
    """12 hex digits of the SHA-256 of `value` as sorted JSON: the key in a cache file's name."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def write_atomically(path: Path, write) -> None:
    """Calls write(binary file) on a temporary file beside `path`, then renames it over `path`.

    os.replace is atomic: readers see the old file or the whole new one, never a torn write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def require_tensorflow(what: str, path: Path, instead: str) -> None:
    """Raises DataError if TensorFlow is missing: `what`, not cached at `path`, needs it."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise DataError(f"{what} is not cached at {path} and making it needs TensorFlow; run "
                        f"once with TensorFlow installed, or pass {instead}") from None


def _extract(tarball: Path) -> Path:
    """Extracts the tarball once into the Keras cache; returns its aclImdb directory."""
    parent = _keras_datasets_dir() / "lstm_reviews"
    target = parent / f"aclImdb-{short_hash(_file_identity(tarball))}"
    if _is_imdb_dir(target):
        return target
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"{parent}: cannot create the extraction cache ({error}); "
                        f"expected a writable $KERAS_HOME or ~/.keras") from error
    started = time.perf_counter()
    temporary = Path(tempfile.mkdtemp(prefix=".extracting-", dir=parent))
    try:
        try:
            with tarfile.open(tarball, "r:*") as tar:
                tar.extractall(temporary, filter="data")  # "data": no absolute paths, links out
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            raise DataError(f"{tarball}: cannot read the archive ({error}); "
                            f"expected a complete {TARBALL_NAME}") from error
        top = next((c for c in (temporary / "aclImdb", temporary) if _is_imdb_dir(c)), None)
        if top is None:
            raise DataError(f"{tarball}: the archive has no aclImdb/train/ and aclImdb/test/; "
                            f"expected the layout of {TARBALL_NAME}")
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
        tarball = keras.utils.get_file(fname=TARBALL_NAME, origin=IMDB_URL,
                                       cache_dir=str(_keras_datasets_dir().parent),
                                       cache_subdir="datasets")
    except Exception as error:  # get_file raises bare Exception for network errors
        raise DataError(f"could not download {IMDB_URL} ({error}); expected the dataset at "
                        f"--data PATH, ${ENV_VAR}, or {_keras_datasets_dir()}") from error
    return Path(tarball).resolve()


def find_imdb(path: Optional[str] = None) -> Path:
    """The aclImdb directory: from `path`, $LSTM_REVIEWS_DATA, Keras' cache, else downloaded.

    A tarball (given, cached or downloaded) is extracted once into the Keras cache.
    Raises DataError naming the path when it does not exist or is not IMDB.
    """
    located = _locate(path)
    if located.kind == "download":
        located = _Located("tarball", _download(), "download")
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

    def decode(self, raw: bytes, where: str) -> Optional[str]:
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
        return {"invalid_utf8_replaced": self.invalid_utf8,
                "invalid_utf8_examples": self.invalid_examples,
                "empty_dropped": self.empty, "empty_examples": self.empty_examples}

    def warn(self, what: str) -> None:
        if self.invalid_utf8:
            log.warning("%s: %d reviews had invalid UTF-8, decoded with U+FFFD replacements "
                        "(e.g. %s)", what, self.invalid_utf8, self.invalid_examples[0])
        if self.empty:
            log.warning("%s: dropped %d empty reviews (e.g. %s)", what, self.empty,
                        self.empty_examples[0])


def _review_files(folder: Path) -> list:
    """(review id, path) of folder's <id>_<rating>.txt files, by id."""
    if not folder.is_dir():
        raise DataError(f"{folder}: missing; expected a folder of <id>_<rating>.txt reviews")
    files = []
    for entry in folder.iterdir():
        if entry.suffix != ".txt":
            continue  # stray files (.DS_Store, editor backups) are not reviews
        match = _REVIEW_FILE.fullmatch(entry.name)
        if not match:
            raise DataError(f"{entry}: unexpected review file name; expected <id>_<rating>.txt")
        files.append((int(match.group(1)), entry))
    if not files:
        raise DataError(f"{folder}: holds no reviews; expected <id>_<rating>.txt files")
    return sorted(files)


def _movie_ids(urls_file: Path, review_ids: list) -> list:
    if not urls_file.is_file():
        raise DataError(f"{urls_file}: missing; expected line k = the IMDb URL of the movie of "
                        f"review id k (the validation split is grouped by movie)")
    lines = urls_file.read_text(encoding="utf-8", errors="replace").splitlines()
    if review_ids[-1] >= len(lines):
        raise DataError(f"{urls_file}: has {len(lines)} lines, but review id {review_ids[-1]} "
                        f"needs line {review_ids[-1] + 1}; expected one movie URL per review id")
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
    return Split([split.texts[i] for i in rows], split.labels[rows],
                 [split.movies[i] for i in rows] if split.movies else [])


def validation_rows_by_movie(movies: Sequence[str], share: float, seed: int) -> np.ndarray:
    """Row indices of the validation reviews: whole movies, seeded, about `share` of rows."""
    unique, inverse, counts = np.unique(np.asarray(movies), return_inverse=True,
                                        return_counts=True)
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
        rows = np.sort(shuffled[:round(share * len(train))])
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
        return tfds.load("imdb_reviews", split=split, as_supervised=True, data_dir=config.data,
                         shuffle_files=False)
    except Exception as error:  # tfds raises many kinds; the user needs the cause, not a trace
        raise DataError(f"tensorflow-datasets imdb_reviews ({split}) in data_dir "
                        f"{config.data or '~/tensorflow_datasets'}: cannot load ({error}); "
                        f"expected a prepared or downloadable imdb_reviews") from error


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
        raise DataError(f"unknown data source {config.source!r}; expected 'aclimdb' or 'tfds'")
    train, validation = _split_off_validation(train, config.validation_split, config.seed,
                                              by_movie=grouping == "movie")
    report = {
        "source": str(source),
        "reviews": {name: len(split) for name, split in
                    (("train", train), ("validation", validation), ("test", test))},
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
        texts = [text for _, path in _review_files(root / "train" / "unsup")
                 if (text := problems.decode(path.read_bytes(), str(path))) is not None]
    problems.warn("unlabeled reviews")
    return texts


# --------------------------------------------------------------------------- text

@keras.saving.register_keras_serializable(package="lstm_reviews")
def standardize_review(text):
    """Lowercase, no HTML tags, apostrophes only inside words, "!" and "?" as tokens.

    text: <string>[...] -> <string>[...], words separated by spaces. TF string ops only,
    so it runs inside a SavedModel. Bump STANDARDIZE_VERSION when changing it.
    """
    import tensorflow as tf

    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"</?[a-z][^<>]*>", " ")  # <br />, <i>, </p>, ...
    text = tf.strings.regex_replace(text, "[’‘´`]", "'")  # typographic apostrophes as "'"
    text = tf.strings.regex_replace(text, r"([!?])", r" \1 ")
    text = tf.strings.regex_replace(text, r"[^\pL\pN'!?]+", " ")  # other punctuation separates
    # RE2 has no lookaround: drop apostrophes at a word's start, then at its end (quotes).
    text = tf.strings.regex_replace(text, r"(^|[^\pL\pN])'+", r"\1 ")
    text = tf.strings.regex_replace(text, r"'+([^\pL\pN]|$)", r" \1")
    return text


def _text_vectorization(**kwargs):
    return keras.layers.TextVectorization(standardize=standardize_review, split="whitespace",
                                          output_mode="int", ragged=True, **kwargs)


def build_vectorizer(texts: Sequence[str], vocab_size: int):
    """A TextVectorization adapted on `texts` (the training split only).

    Output: <int32> ragged [batch, (tokens)]; 0 is padding, 1 is [UNK]. vocab_size counts both.
    """
    import tensorflow as tf

    vectorizer = _text_vectorization(max_tokens=vocab_size)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(list(texts)).batch(1024))
    return vectorizer


def vectorizer_from_vocabulary(vocabulary: Sequence[str]):
    """The vectorizer for a saved vocabulary ('' and '[UNK]' first, as get_vocabulary() gives)."""
    vocabulary = list(vocabulary)
    if vocabulary[:2] == ["", "[UNK]"]:
        vocabulary = vocabulary[2:]  # TextVectorization adds the padding and OOV entries itself
    return _text_vectorization(vocabulary=vocabulary)


def vectorize(vectorizer, texts: Sequence[str], batch_size: int = 2048) -> list:
    """Token ids of each text: a list of <int32>[length], one per text, untruncated."""
    import tensorflow as tf

    if not len(texts):
        return []
    flats, lengths = [], []
    dataset = tf.data.Dataset.from_tensor_slices(list(texts)).batch(batch_size)
    for ragged in dataset.map(vectorizer, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2):
        flats.append(ragged.flat_values.numpy().astype(np.int32))
        lengths.append(ragged.row_lengths().numpy())
    return np.split(np.concatenate(flats), np.cumsum(np.concatenate(lengths))[:-1])


def unlabeled_ids(config, vocabulary: Sequence[str]) -> list:
    """The unlabeled reviews as token ids of `vocabulary`: n arrays <int32>[tokens].

    For the word vectors and the language model; needs TensorFlow (TextVectorization).
    """
    return vectorize(vectorizer_from_vocabulary(vocabulary), load_unlabeled(config))


# --------------------------------------------------------------------------- token cache

@dataclasses.dataclass
class TokenSplit:
    """ids: n arrays <int32>[tokens] (not truncated); labels: <int32>[n]."""
    ids: list
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), np.int64, len(self.ids))


@dataclasses.dataclass
class TokenData:
    vocabulary: list  # index 0 '' (padding), 1 '[UNK]'
    train: TokenSplit
    validation: TokenSplit
    test: TokenSplit
    settings: dict  # what made it: the cache key
    report: dict  # load_imdb's report, plus vocabulary coverage, lengths and timings


def _source_identity(config) -> dict:
    """What the data is, cheaply (no extraction, no reading): part of the cache key."""
    if config.source == "tfds":
        return {"tfds": "imdb_reviews/plain_text", "data_dir": config.data}
    located = _locate(config.data)
    if located.kind == "download":
        return {"download": IMDB_URL}
    if located.kind == "tarball":
        return {"tarball": _file_identity(located.path)}
    # A directory: its path and the modification times of the folders holding the reviews.
    folders = [located.path / split / name
               for split in ("train", "test") for name in ("pos", "neg")]
    return {"dir": str(located.path), "mtime_ns": [f.stat().st_mtime_ns if f.exists() else None
                                                    for f in folders]}


def token_settings(config) -> dict:
    """Everything the token cache depends on."""
    return {"format": _CACHE_FORMAT, "source": config.source, "data": _source_identity(config),
            "vocab_size": config.vocab_size, "validation_split": config.validation_split,
            "seed": config.seed, "standardize": STANDARDIZE_VERSION}


def token_cache_path(config, settings: Optional[dict] = None) -> Path:
    """<cache_dir>/tokens-<12 hex digits of the settings' hash>.npz"""
    settings = token_settings(config) if settings is None else settings
    return Path(config.cache_dir) / f"tokens-{short_hash(settings)}.npz"


def _save_token_cache(path: Path, data: TokenData) -> None:
    arrays = {"vocabulary": np.array("\n".join(data.vocabulary)),  # tokens never hold "\n"
              "settings": np.array(json.dumps(data.settings, sort_keys=True)),
              "report": np.array(json.dumps(data.report, sort_keys=True))}
    for name in _SPLITS:
        split = getattr(data, name)
        arrays[f"{name}_ids"] = _flat(split.ids)
        offsets = np.concatenate([[0], np.cumsum(split.lengths())])
        arrays[f"{name}_offsets"] = offsets.astype(np.int64)
        arrays[f"{name}_labels"] = split.labels.astype(np.int32)
    # Uncompressed: loads in well under a second.
    write_atomically(path, lambda file: np.savez(file, **arrays))


def load_token_cache(path) -> TokenData:
    """Reads a token cache with numpy alone. Raises DataError naming the file if unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            splits = {}
            for name in _SPLITS:
                flat, offsets = npz[f"{name}_ids"], npz[f"{name}_offsets"]
                labels = npz[f"{name}_labels"]
                if len(offsets) != len(labels) + 1 or offsets[-1] != len(flat):
                    raise ValueError(f"{name}: offsets do not match ids and labels")
                splits[name] = TokenSplit(np.split(flat, offsets[1:-1]) if len(labels) else [],
                                          labels)
            vocabulary = str(npz["vocabulary"]).split("\n")
            settings, report = json.loads(str(npz["settings"])), json.loads(str(npz["report"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable token cache ({error}); expected an .npz "
                        f"written by prepare_tokens (delete it to rebuild)") from error
    return TokenData(vocabulary, splits["train"], splits["validation"], splits["test"],
                     settings, report)


def _flat(ids: Sequence[np.ndarray]) -> np.ndarray:
    """Reviews' ids end to end, <int32>[total tokens] (empty for no reviews)."""
    return np.concatenate([np.zeros(0, np.int32)] + [np.asarray(x, np.int32) for x in ids])


def _percentiles(lengths: np.ndarray) -> dict:
    if not len(lengths):
        return {}
    return {str(q): int(np.percentile(lengths, q)) for q in (50, 90, 95, 99)}


def prepare_tokens(config) -> TokenData:
    """The vectorized splits: from the token cache if it has these settings, else built
    (read, split, adapt on train, vectorize) and cached atomically."""
    settings = token_settings(config)
    if "download" in settings["data"]:
        find_imdb(config.data)  # download now, so the key names the file that was used
        settings = token_settings(config)
    path = token_cache_path(config, settings)
    if path.exists():
        started = time.perf_counter()
        try:
            data = load_token_cache(path)
        except DataError as error:
            log.warning("%s; rebuilding it", error)
        else:
            if data.settings == settings:
                data.report["cache"] = {"path": str(path), "hit": True,
                                        "load_seconds": round(time.perf_counter() - started, 2)}
                return data
            log.warning("%s: made with other settings; rebuilding it", path)

    imdb = load_imdb(config)
    started = time.perf_counter()
    vectorizer = build_vectorizer(imdb.train.texts, config.vocab_size)
    adapt_seconds = time.perf_counter() - started
    splits = {}
    for name in _SPLITS:
        split = getattr(imdb, name)
        splits[name] = TokenSplit(vectorize(vectorizer, split.texts), split.labels)
    vectorize_seconds = time.perf_counter() - started - adapt_seconds
    test_ids = _flat(splits["test"].ids)
    train_lengths = splits["train"].lengths()
    report = dict(imdb.report)
    report.update({
        "vocabulary_size": len(vectorizer.get_vocabulary()),
        "test_tokens_in_vocabulary": (round(float(np.mean(test_ids != 1)), 4)
                                      if len(test_ids) else None),
        "train_token_length_percentiles": _percentiles(train_lengths),
        "train_reviews_whole_at_max_length": {
            str(config.max_length): round(float(np.mean(train_lengths <= config.max_length)), 4)},
        "adapt_seconds": round(adapt_seconds, 2),
        "vectorize_seconds": round(vectorize_seconds, 2),
    })
    data = TokenData([str(token) for token in vectorizer.get_vocabulary()], splits["train"],
                     splits["validation"], splits["test"], settings, report)
    _save_token_cache(path, data)
    data.report["cache"] = {"path": str(path), "hit": False}
    return data


# --------------------------------------------------------------------------- batches

def keep_last_tokens(ids, max_length: int):
    """The last max_length tokens of one review's ids <int>[tokens] (all of them if fewer):
    a review's closing lines usually hold its verdict."""
    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length!r}")
    return ids[-max_length:] if len(ids) > max_length else ids


def bucket_boundaries(lengths: np.ndarray, num_buckets: int = 16) -> list:
    """Upper bounds (exclusive) of length buckets holding about equally many reviews."""
    lengths = np.asarray(lengths)
    if not len(lengths):
        return [1]
    quantiles = np.quantile(lengths, np.linspace(0, 1, num_buckets + 1)[1:-1])
    boundaries = sorted({int(q) + 1 for q in quantiles})
    return boundaries or [int(lengths.max()) + 1]


def _truncated(split: TokenSplit, max_length: int):
    ids = [keep_last_tokens(np.asarray(x, np.int32), max_length) for x in split.ids]
    return ids, np.fromiter((len(x) for x in ids), np.int64, len(ids))


def make_dataset(split: TokenSplit, batch_size: int, max_length: int, shuffle: bool = False,
                 seed: int = 0, bucket: bool = True, num_buckets: int = 16):
    """tf.data batches: (ids <int32>[batch, time] right-padded with 0, labels <float32>[batch]).

    time is the longest review of the batch, at most max_length (longer reviews keep their
    end). bucket: batch reviews of similar length (tf.data's bucket_by_sequence_length).
    """
    import tensorflow as tf

    ids, lengths = _truncated(split, max_length)
    flat = tf.constant(_flat(ids))
    ends = np.cumsum(lengths)
    labels = split.labels.astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((ends - lengths, ends, labels))
    # Slicing one flat tensor: from_tensor_slices of a RaggedTensor yields ragged elements,
    # which padded_batch refuses.
    dataset = dataset.map(lambda start, end, label: (flat[start:end], label))
    if shuffle:
        dataset = dataset.shuffle(max(len(ids), 1), seed=seed, reshuffle_each_iteration=True)
    if bucket:
        boundaries = bucket_boundaries(lengths, num_buckets)
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda ids, label: tf.shape(ids)[0],
            bucket_boundaries=boundaries, bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padded_shapes=([None], []), padding_values=(0, 0.0))
    else:
        dataset = dataset.padded_batch(batch_size, padded_shapes=([None], []),
                                       padding_values=(0, 0.0))
    return dataset.prefetch(tf.data.AUTOTUNE)


class NumpyBatches(keras.utils.PyDataset):
    """The batches of make_dataset, from numpy alone (JAX/PyTorch backends, no TensorFlow).

    Item i: (ids <int32>[batch, time] right-padded with 0, labels <float32>[batch]). With
    bucket=True, reviews go to the same length buckets as in make_dataset and a bucket
    yields a batch when it holds batch_size reviews; leftovers close the epoch. Shuffled
    anew each epoch when shuffle=True, seeded by (seed, epoch).
    """

    def __init__(self, split: TokenSplit, batch_size: int, max_length: int, shuffle: bool = False,
                 seed: int = 0, bucket: bool = True, num_buckets: int = 16, **kwargs):
        super().__init__(**kwargs)
        self._ids, self._lengths = _truncated(split, max_length)
        self._labels = np.asarray(split.labels, np.float32)
        self._batch_size, self._shuffle, self._seed = batch_size, shuffle, seed
        self._buckets = (np.searchsorted(bucket_boundaries(self._lengths, num_buckets),
                                         self._lengths, side="right") if bucket else None)
        self._epoch = 0
        self._batches = self._plan()

    def _plan(self) -> list:
        count = len(self._ids)
        order = (np.random.default_rng([self._seed, self._epoch]).permutation(count)
                 if self._shuffle else np.arange(count))
        size = self._batch_size
        if self._buckets is None:
            return [order[start:start + size] for start in range(0, count, size)]
        batches, pending = [], defaultdict(list)
        for row in order:
            bucket = pending[self._buckets[row]]
            bucket.append(row)
            if len(bucket) == size:
                batches.append(np.array(bucket))
                bucket.clear()
        batches.extend(np.array(rows) for _, rows in sorted(pending.items()) if rows)
        return batches

    def __len__(self) -> int:
        return len(self._batches)  # the same every epoch: sum of ceil(bucket size / batch)

    def __getitem__(self, index):
        rows = self._batches[index]
        ids = np.zeros((len(rows), int(self._lengths[rows].max())), np.int32)
        for out, row in zip(ids, rows):
            out[:self._lengths[row]] = self._ids[row]
        return ids, self._labels[rows]

    def on_epoch_end(self) -> None:
        self._epoch += 1
        if self._shuffle:
            self._batches = self._plan()


def padding_share(batches) -> float:
    """Share of padding (id 0) among all positions of (ids, labels) batches."""
    padding = total = 0
    for ids, _ in batches:
        ids = np.asarray(ids)
        padding += int(np.sum(ids == 0))
        total += ids.size
    return padding / total if total else 0.0
