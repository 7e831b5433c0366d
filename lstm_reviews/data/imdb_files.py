"""Where the IMDB reviews are: locate them, download and extract the archive once.

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
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

from lstm_reviews.data.cache import short_hash
from lstm_reviews.errors import UserError
from lstm_reviews.startup import deferred_import

keras = deferred_import("keras")  # for a download alone: locating --data needs no Keras

log = logging.getLogger(__name__)

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
TARBALL_NAME = "aclImdb_v1.tar.gz"
ENV_VAR = "LSTM_REVIEWS_DATA"


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
