"""Token ids of every split, made once and cached: training reads them with NumPy alone.

    prepare_tokens(config)      train / validation / test ids and the vocabulary:
                                read (imdb), adapt on train, encode (text); cached
    unlabeled_ids(config, tokens)   the 50k unlabeled reviews as ids of that vocabulary; cached

Both caches are .npz files in config.cache_dir named by the settings that made them
(lstm_reviews.data.cache). `load_token_cache` reads one with NumPy alone, so training can run
from it on the JAX or PyTorch backends without TensorFlow, and the unlabeled reviews are
read and encoded once for the word vectors and the language model together.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lstm_reviews.config import TOKENS, cache_settings
from lstm_reviews.data import imdb, imdb_files
from lstm_reviews.data.cache import cached, require_tensorflow, short_hash, write_atomically
from lstm_reviews.errors import UserError
from lstm_reviews.startup import deferred_import

text = deferred_import("lstm_reviews.data.text")  # Keras: checking --data needs none

log = logging.getLogger(__name__)

_CACHE_FORMAT = 1
_SPLITS = ("train", "validation", "test")


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
    located = imdb_files.locate(config.data)
    if located.kind == "download":
        return {"download": imdb_files.IMDB_URL}
    if located.kind == "tarball":
        return {"tarball": imdb_files.file_identity(located.path)}
    # A directory: its path and the modification times of the folders holding the reviews.
    folders = [
        located.path / split / name for split in ("train", "test") for name in ("pos", "neg")
    ]
    return {
        "dir": str(located.path),
        "mtime_ns": [f.stat().st_mtime_ns if f.exists() else None for f in folders],
    }


def token_settings(config) -> dict:
    """Everything the token cache depends on: the Config fields that feed it (config.TOKENS),
    the data named by what it is rather than by the option's text, the standardization."""
    return {**_settings_but_data(config), "data": _source_identity(config)}


def _settings_but_data(config) -> dict:
    """token_settings less the data's identity: what a token cache given as --data must match."""
    settings = cache_settings(config, TOKENS)
    settings.pop("data")
    settings.update(format=_CACHE_FORMAT, standardize=text.STANDARDIZE_VERSION)
    return settings


def token_cache_path(config, settings: dict | None = None) -> Path:
    """<cache_dir>/tokens-<12 hex digits of the settings' hash>.npz"""
    settings = token_settings(config) if settings is None else settings
    return Path(config.cache_dir) / f"tokens-{short_hash(settings)}.npz"


def _save_token_cache(path: Path, data: TokenData) -> None:
    arrays = {
        "vocabulary": np.array("\n".join(data.vocabulary)),  # tokens never hold "\n"
        "settings": np.array(json.dumps(data.settings, sort_keys=True)),
        "report": np.array(json.dumps(data.report, sort_keys=True)),
    }
    for name in _SPLITS:
        split = getattr(data, name)
        arrays[f"{name}_ids"] = flat(split.ids)
        offsets = np.concatenate([[0], np.cumsum(split.lengths())])
        arrays[f"{name}_offsets"] = offsets.astype(np.int64)
        arrays[f"{name}_labels"] = split.labels.astype(np.int32)
    # Uncompressed: loads in well under a second.
    write_atomically(path, lambda file: np.savez(file, **arrays))


def compact_ids(ids: np.ndarray) -> np.ndarray:
    """Flat ids in uint16 when every id fits (a vocabulary under 65,536 words): half the bytes
    of int32. Loading turns them back into int32, so training reads the same numbers."""
    if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(np.uint16).max):
        return ids
    return ids.astype(np.uint16)


def compact_cache(path: Path) -> None:
    """Rewrites a token or unlabeled-ids cache (.npz) with uint16 ids, zip-compressed: about a
    third of its size, for a bundle that travels; every reader loads either form."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for name in arrays:
        if name == "ids" or name.endswith("_ids"):
            arrays[name] = compact_ids(arrays[name])
    write_atomically(path, lambda file: np.savez_compressed(file, **arrays))


def load_token_cache(path) -> TokenData:
    """Reads a token cache with numpy alone. Raises UserError naming the file if unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            splits = {}
            for name in _SPLITS:
                ids = npz[f"{name}_ids"].astype(np.int32, copy=False)  # uint16 if compacted
                offsets = npz[f"{name}_offsets"]
                labels = npz[f"{name}_labels"]
                if len(offsets) != len(labels) + 1 or offsets[-1] != len(ids):
                    raise ValueError(f"{name}: offsets do not match ids and labels")
                splits[name] = TokenSplit(
                    np.split(ids, offsets[1:-1]) if len(labels) else [], labels
                )
            vocabulary = str(npz["vocabulary"]).split("\n")
            settings, report = json.loads(str(npz["settings"])), json.loads(str(npz["report"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(
            f"{path}: not a readable token cache ({error}); expected an .npz "
            f"written by prepare_tokens (delete it to rebuild)"
        ) from error
    return TokenData(
        vocabulary, splits["train"], splits["validation"], splits["test"], settings, report
    )


def flat(ids: Sequence[np.ndarray]) -> np.ndarray:
    """Reviews' ids end to end, <int32>[total tokens] (empty for no reviews)."""
    return np.concatenate([np.zeros(0, np.int32)] + [np.asarray(x, np.int32) for x in ids])


def _percentiles(lengths: np.ndarray) -> dict:
    if not len(lengths):
        return {}
    return {str(q): int(np.percentile(lengths, q)) for q in (50, 90, 95, 99)}


def names_token_cache(data) -> bool:
    """Whether --data names a token cache (tokens-<hash>.npz) rather than the reviews."""
    return bool(data) and Path(data).suffix == ".npz"


def check_data_path(config) -> None:
    """UserError if --data (or $LSTM_REVIEWS_DATA) names no IMDB data; needs no Keras."""
    if config.source == "aclimdb" and not names_token_cache(config.data):
        imdb_files.locate(config.data)


def _given_token_cache(config) -> TokenData:
    """The token cache --data names, made elsewhere (where TensorFlow and the reviews are),
    if made with this config's settings; its settings stay the key of the caches made from it
    (unlabeled ids, word vectors, language model), so those are found beside it."""
    data = load_token_cache(config.data)
    wanted = _settings_but_data(config)
    stored = {name: data.settings.get(name) for name in wanted}
    if stored != wanted:
        differing = ", ".join(
            f"{name} {stored[name]!r} (here {wanted[name]!r})"
            for name in wanted
            if stored[name] != wanted[name]
        )
        raise UserError(
            f"--data {config.data}: a token cache made with other settings: {differing}"
        )
    data.report["cache"] = {"path": str(config.data), "hit": True, "given": True}
    return data


def prepare_tokens(config) -> TokenData:
    """The vectorized splits: the token cache --data names; else from the token cache if it
    has these settings, else built (read, split, adapt on train, vectorize) and cached
    atomically."""
    if names_token_cache(config.data):
        return _given_token_cache(config)
    settings = token_settings(config)
    if "download" in settings["data"]:
        imdb_files.find_imdb(config.data)  # download now, so the key names the file that was used
        settings = token_settings(config)
    path = token_cache_path(config, settings)
    started = time.perf_counter()

    def load(path):
        data = load_token_cache(path)
        if data.settings != settings:
            raise UserError(f"{path}: made with other settings")
        data.report["cache"] = {
            "path": str(path),
            "hit": True,
            "load_seconds": round(time.perf_counter() - started, 2),
        }
        return data

    data = cached(path, lambda: _build_tokens(config, settings), _save_token_cache, load)
    data.report.setdefault("cache", {"path": str(path), "hit": False})
    return data


def _build_tokens(config, settings: dict) -> TokenData:
    """Reads the reviews, adapts the vocabulary on the training split (and with
    config.vocabulary_from, the unlabeled reviews), encodes every split."""
    reviews = imdb.load_imdb(config)
    counted = list(reviews.train.texts)
    if config.vocabulary_from == "train+unlabeled":
        counted += imdb.load_unlabeled(config)
    started = time.perf_counter()
    vectorizer = text.build_vectorizer(counted, config.vocab_size)
    adapt_seconds = time.perf_counter() - started
    splits = {}
    for name in _SPLITS:
        split = getattr(reviews, name)
        splits[name] = TokenSplit(text.encode(vectorizer, split.texts), split.labels)
    vectorize_seconds = time.perf_counter() - started - adapt_seconds
    test_ids = flat(splits["test"].ids)
    train_lengths = splits["train"].lengths()
    report = dict(reviews.report)
    report.update(
        {
            "vocabulary_size": len(vectorizer.get_vocabulary()),
            "test_tokens_in_vocabulary": (
                round(float(np.mean(test_ids != 1)), 4) if len(test_ids) else None
            ),
            "train_token_length_percentiles": _percentiles(train_lengths),
            "train_reviews_whole_at_max_length": {
                str(config.max_length): round(float(np.mean(train_lengths <= config.max_length)), 4)
            },
            "adapt_seconds": round(adapt_seconds, 2),
            "vectorize_seconds": round(vectorize_seconds, 2),
        }
    )
    return TokenData(
        [str(token) for token in vectorizer.get_vocabulary()],
        splits["train"],
        splits["validation"],
        splits["test"],
        settings,
        report,
    )


def unlabeled_cache_path(config, tokens: TokenData) -> Path:
    return Path(config.cache_dir) / f"unlabeled-{short_hash(tokens.settings)}.npz"


def unlabeled_ids(config, tokens: TokenData) -> list:
    """The unlabeled reviews as ids of `tokens.vocabulary`: n arrays <int32>[tokens]; cached.

    For the word vectors and the language model. Made once (TensorFlow needed: the
    TextVectorization), beside the token cache; later calls load it with NumPy alone.
    """
    path = unlabeled_cache_path(config, tokens)

    def build():
        if names_token_cache(config.data):
            raise UserError(
                f"the unlabeled reviews' token ids are not cached at {path}, beside the token "
                f"cache --data {config.data}: make them where the reviews are "
                "(python -m lstm_reviews.gpu_bundle), or pass --no-pretrain-embeddings "
                "--lm-epochs 0"
            )
        require_tensorflow(
            "the unlabeled reviews' token ids", path, "--no-pretrain-embeddings --lm-epochs 0"
        )
        vectorizer = text.vectorizer_from_vocabulary(tokens.vocabulary)
        return text.encode(vectorizer, imdb.load_unlabeled(config))

    def save(path, ids):
        lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        write_atomically(path, lambda file: np.savez(file, ids=flat(ids), offsets=offsets))

    def load(path):
        try:
            with np.load(path, allow_pickle=False) as npz:
                ids, offsets = npz["ids"].astype(np.int32, copy=False), npz["offsets"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise UserError(f"{path}: not readable unlabeled ids ({error})") from error
        return np.split(ids, offsets[1:-1]) if len(offsets) > 1 else []

    return cached(path, build, save, load)
