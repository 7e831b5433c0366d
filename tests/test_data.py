"""lstm_reviews.data on tiny fixtures made here, plus one test on the real archive when present."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import write_tiny_imdb

from lstm_reviews.backend import runs_on_tensorflow
from lstm_reviews.config import Config
from lstm_reviews.data import imdb, imdb_files, text, tokens
from lstm_reviews.data.batches import (
    NumpyBatches,
    by_length,
    fixed_shapes,
    make_batches,
    make_dataset,
    padding_share,
)
from lstm_reviews.data.buckets import bucket_boundaries
from lstm_reviews.data.imdb import load_imdb, load_unlabeled, validation_rows_by_movie
from lstm_reviews.data.imdb_files import ENV_VAR, IMDB_URL, find_imdb
from lstm_reviews.data.text import (
    build_vectorizer,
    keep_last_tokens,
    standardize_review,
    vectorizer_from_vocabulary,
)
from lstm_reviews.data.tokens import (
    TokenSplit,
    load_token_cache,
    prepare_tokens,
    token_cache_path,
    token_settings,
)
from lstm_reviews.errors import UserError

# The project's checkout sits beside shared/ on the development machines; elsewhere, say where.
REAL_ARCHIVE = Path(
    os.environ.get("LSTM_REVIEWS_TEST_ARCHIVE")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "aclImdb_v1.tar.gz"
)
_REAL_KERAS_HOME = os.environ.get("KERAS_HOME")


@pytest.fixture(autouse=True)
def isolated_lookup(tmp_path, monkeypatch):
    """Keras' cache in a tmp dir and no $LSTM_REVIEWS_DATA: tests never see the user's data."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected download: {args} {kwargs}")

    monkeypatch.setattr(keras.utils, "get_file", refuse)


def _config(root, tmp_path, **overrides) -> Config:
    values = dict(
        data=str(root), cache_dir=str(tmp_path / "token_cache"), vocab_size=200, max_length=40
    )
    values.update(overrides)
    return Config(**values)


def _movie_of_text(root: Path, split: str = "train") -> dict:
    """text -> movie, read straight from the fixture's files, independently of py."""
    movie_of = {}
    for name in ("pos", "neg"):
        urls = (root / split / f"urls_{name}.txt").read_text().splitlines()
        for path in (root / split / name).glob("*.txt"):
            movie_of[path.read_text()] = urls[int(path.name.split("_")[0])].split("/")[4]
    return movie_of


# --------------------------------------------------------------------------- finding


def test_find_imdb_takes_the_directory_its_parent_or_the_tarball_extracted_once(
    tiny_imdb, tiny_imdb_tarball, tmp_path, monkeypatch, no_download
):
    assert find_imdb(str(tiny_imdb)) == tiny_imdb.resolve()
    assert find_imdb(str(tiny_imdb.parent)) == tiny_imdb.resolve()

    extracted = find_imdb(str(tiny_imdb_tarball))
    assert extracted.parent == tmp_path / "keras_home" / "datasets" / "lstm_reviews"
    assert sorted(p.name for p in (extracted / "train" / "pos").iterdir()) == sorted(
        p.name for p in (tiny_imdb / "train" / "pos").iterdir()
    )
    # No temporary directory is left behind.
    assert not [p for p in extracted.parent.iterdir() if p.name.startswith(".")]

    def no_reopen(*args, **kwargs):
        raise AssertionError("the tarball was extracted again")

    monkeypatch.setattr(tarfile, "open", no_reopen)
    assert find_imdb(str(tiny_imdb_tarball)) == extracted


def test_a_copy_of_the_tarball_elsewhere_is_the_same_data(
    tiny_imdb_tarball, tmp_path, monkeypatch, no_download
):
    # Downloaded again or copied (a new path, a new mtime): the extraction and the caches keyed
    # by the tarball's identity are found again; a changed byte is other data.
    extracted = find_imdb(str(tiny_imdb_tarball))
    copy = tmp_path / "elsewhere" / "aclImdb_v1.tar.gz"
    copy.parent.mkdir()
    copy.write_bytes(tiny_imdb_tarball.read_bytes())
    os.utime(copy, (1, 1))
    assert imdb_files.file_identity(copy) == imdb_files.file_identity(tiny_imdb_tarball)
    assert tokens.token_settings(Config(data=str(copy))) == tokens.token_settings(
        Config(data=str(tiny_imdb_tarball))
    )
    monkeypatch.setattr(tarfile, "open", lambda *args, **kwargs: pytest.fail("extracted again"))
    assert find_imdb(str(copy)) == extracted
    changed = bytearray(copy.read_bytes())
    changed[len(changed) // 2] ^= 1
    copy.write_bytes(bytes(changed))
    assert imdb_files.file_identity(copy) != imdb_files.file_identity(tiny_imdb_tarball)


def test_lookup_order_data_then_env_var_then_keras_cache(tmp_path, monkeypatch, no_download):
    given = write_tiny_imdb(tmp_path / "given")
    from_env = write_tiny_imdb(tmp_path / "env")
    cached = write_tiny_imdb(tmp_path / "keras_home" / "datasets")
    assert find_imdb(None) == cached.resolve()
    monkeypatch.setenv(ENV_VAR, str(from_env))
    assert find_imdb(None) == from_env.resolve()
    assert find_imdb(str(given)) == given.resolve()


def test_keras_cache_under_home_and_its_tarball(tmp_path, monkeypatch, no_download):
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    datasets = tmp_path / "home" / ".keras" / "datasets"
    datasets.mkdir(parents=True)
    source = write_tiny_imdb(tmp_path / "src")
    with tarfile.open(datasets / "aclImdb_v1.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="aclImdb")
    found = find_imdb(None)
    assert found.parent == datasets / "lstm_reviews" and (found / "test" / "neg").is_dir()

    cached_dir = write_tiny_imdb(datasets)  # an extracted aclImdb/ beats the tarball
    assert find_imdb(None) == cached_dir.resolve()


def test_download_is_the_last_resort_and_uses_the_dataset_url(tmp_path, monkeypatch):
    calls = []

    def fake_get_file(fname, origin, cache_dir, cache_subdir, **kwargs):
        calls.append(origin)
        target = Path(cache_dir) / cache_subdir / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(target, "w:gz") as tar:
            tar.add(write_tiny_imdb(tmp_path / "served"), arcname="aclImdb")
        return str(target)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    found = find_imdb(None)
    assert calls == [IMDB_URL]
    assert IMDB_URL == "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
    assert (found / "train" / "unsup").is_dir()
    assert find_imdb(None) == found and len(calls) == 1  # now found in Keras' cache


def test_a_failed_download_is_a_data_error(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(UserError, match="could not download .*aclImdb_v1.tar.gz.*no network"):
        find_imdb(None)


# --------------------------------------------------------------------------- bad input


def _empty_pos(tmp_path):
    root = write_tiny_imdb(tmp_path / "d")
    for path in (root / "train" / "pos").iterdir():
        path.unlink()
    return root, str(root / "train" / "pos"), "holds no reviews; expected <id>_<rating>.txt"


def _no_test_dir(tmp_path):
    root = tmp_path / "not_imdb"
    (root / "train").mkdir(parents=True)
    return root, str(root), "has no test/; expected train/ and test/"


def _missing(tmp_path):
    return (
        tmp_path / "nowhere" / "aclImdb",
        str(tmp_path / "nowhere" / "aclImdb"),
        "does not exist; expected an aclImdb directory or aclImdb_v1.tar.gz",
    )


def _truncated_tarball(tmp_path):
    whole = tmp_path / "whole.tar.gz"
    with tarfile.open(whole, "w:gz") as tar:
        tar.add(write_tiny_imdb(tmp_path / "src"), arcname="aclImdb")
    cut = tmp_path / "aclImdb_v1.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut, str(cut), "cannot read the archive"


def _corrupt_tarball(tmp_path):
    bad = tmp_path / "aclImdb_v1.tar.gz"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    return bad, str(bad), "cannot read the archive"


def _tarball_without_imdb(tmp_path):
    other = tmp_path / "other.tar.gz"
    (tmp_path / "notes.txt").write_text("not reviews")
    with tarfile.open(other, "w:gz") as tar:
        tar.add(tmp_path / "notes.txt", arcname="notes.txt")
    return other, str(other), "has no aclImdb/train/ and aclImdb/test/"


def _short_urls(tmp_path):
    root = write_tiny_imdb(tmp_path / "d")
    urls = root / "train" / "urls_neg.txt"
    urls.write_text("\n".join(urls.read_text().splitlines()[:5]) + "\n")
    return root, str(urls), "has 5 lines, but review id 39 needs line 40"


@pytest.mark.parametrize(
    "make_bad",
    [
        _missing,
        _no_test_dir,
        _empty_pos,
        _truncated_tarball,
        _corrupt_tarball,
        _tarball_without_imdb,
        _short_urls,
    ],
)
def test_bad_data_raises_a_data_error_naming_the_path(make_bad, tmp_path, no_download):
    path, named, expected = make_bad(tmp_path)
    with pytest.raises(UserError) as error:
        load_imdb(_config(path, tmp_path))
    assert named in str(error.value) and expected in str(error.value)
    if path.suffix == ".gz":  # nothing half-extracted is left to be mistaken for data
        assert not list((tmp_path / "keras_home" / "datasets" / "lstm_reviews").iterdir())


def test_env_var_pointing_nowhere_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(UserError, match=r"\$LSTM_REVIEWS_DATA .*missing: does not exist"):
        find_imdb(None)


def test_invalid_utf8_replaced_and_counted_empty_reviews_dropped_and_counted(tiny_imdb, tmp_path):
    def review(folder, review_id):  # the fixture's file of that id, whatever its rating
        return next((tiny_imdb / folder).glob(f"{review_id}_*.txt"))

    invalid, empty = review("train/pos", 3), review("train/neg", 5)
    invalid.write_bytes(b"Great \xff\xfe movie, loved it")
    review("test/neg", 0).write_bytes(b"Awful \xc3( acting")
    empty.write_text("")
    review("test/pos", 7).write_text(" <br /><br />\n ")
    imdb = load_imdb(_config(tiny_imdb, tmp_path))
    report = imdb.report
    assert report["invalid_utf8_replaced"] == 2
    assert report["empty_dropped"] == 2
    assert str(empty) in report["empty_examples"]
    assert str(invalid) in report["invalid_utf8_examples"]
    texts = imdb.train.texts + imdb.validation.texts + imdb.test.texts
    assert "Great \ufffd\ufffd movie, loved it" in texts and "Awful \ufffd( acting" in texts
    assert len(imdb.train) + len(imdb.validation) == 79 and len(imdb.test) == 39
    assert report["reviews"] == {
        "train": len(imdb.train),
        "validation": len(imdb.validation),
        "test": 39,
    }


# --------------------------------------------------------------------------- splits


def _movies_across_classes(tmp_path, per_class=200, reviews_per_movie=4) -> Path:
    """A fixture whose movies have both positive and negative reviews, as real ones do."""
    root = write_tiny_imdb(
        tmp_path / "d", per_class_train=per_class, reviews_per_movie=reviews_per_movie
    )
    pos_urls = (root / "train" / "urls_pos.txt").read_text()
    (root / "train" / "urls_neg.txt").write_text(pos_urls)
    return root


def test_validation_is_grouped_by_movie_seeded_and_near_the_share(tmp_path):
    root = _movies_across_classes(tmp_path)
    movie_of = _movie_of_text(root)
    config = _config(root, tmp_path, validation_split=0.2, seed=7)
    imdb = load_imdb(config)
    train_movies = {movie_of[text] for text in imdb.train.texts}
    validation_movies = {movie_of[text] for text in imdb.validation.texts}
    assert not train_movies & validation_movies
    assert len(imdb.train) + len(imdb.validation) == 400
    assert abs(len(imdb.validation) - 80) <= 4  # movies have 8 reviews: within half a movie
    assert set(imdb.validation.labels) == {0, 1}  # a movie brings both its classes along

    again = load_imdb(config)
    assert again.validation.texts == imdb.validation.texts
    other_seed = load_imdb(dataclasses.replace(config, seed=8))
    assert {movie_of[t] for t in other_seed.validation.texts} != validation_movies


def test_validation_rows_by_movie_picks_whole_movies_closest_to_the_share():
    rng = np.random.default_rng(0)
    movies = [f"tt{m}" for m in rng.integers(0, 300, size=5000)]
    for share in (0.05, 0.1, 0.3):
        rows = validation_rows_by_movie(movies, share, seed=1)
        chosen = {movies[i] for i in rows}
        assert len(rows) == sum(movie in chosen for movie in movies)  # whole movies only
        assert abs(len(rows) / len(movies) - share) < 0.01


def test_test_split_and_unlabeled_reviews_stay_apart(tiny_imdb, tmp_path):
    config = _config(tiny_imdb, tmp_path)
    imdb = load_imdb(config)
    unlabeled = load_unlabeled(config)
    assert len(unlabeled) == 10 and len(imdb.test) == 40
    test_texts = {p.read_text() for p in (tiny_imdb / "test").glob("*/*.txt")}
    assert set(imdb.test.texts) == test_texts
    labeled = set(imdb.train.texts) | set(imdb.validation.texts) | set(imdb.test.texts)
    assert not labeled & set(unlabeled)
    assert imdb.train.labels.dtype == np.int32 and set(imdb.train.labels) == {0, 1}
    positives = {p.read_text() for p in (tiny_imdb / "train" / "pos").glob("*.txt")}
    assert all(
        (label == 1) == (text in positives)
        for text, label in zip(imdb.train.texts, imdb.train.labels)
    )


def test_tfds_source_with_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    config = Config(source="tfds", validation_split=0.25, seed=3, cache_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=40):
        imdb = load_imdb(config)
        again = load_imdb(config)
        unlabeled = load_unlabeled(config)
    assert (len(imdb.train), len(imdb.validation), len(imdb.test)) == (30, 10, 40)
    assert imdb.report["validation_grouped_by"].startswith("random")
    assert again.validation.texts == imdb.validation.texts
    assert len(unlabeled) == 40 and all(isinstance(text, str) for text in unlabeled)


# --------------------------------------------------------------------------- text


def _tokens(text: str) -> list:
    import tensorflow as tf

    return standardize_review(tf.constant(text)).numpy().decode().split()


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("A GREAT<br /><br />Movie", ["a", "great", "movie"]),
        (
            "I don't like it. It isn't good!",
            ["i", "don't", "like", "it", "it", "isn't", "good", "!"],
        ),
        ("Really?! Wow...", ["really", "?", "!", "wow"]),
        (
            "'Quoted' words, the actors' lines -- 10/10",
            ["quoted", "words", "the", "actors", "lines", "10", "10"],
        ),
        ("It’s <i>naïve</i>: (sigh)", ["it's", "naïve", "sigh"]),
    ],
)
def test_standardize_review(text, tokens):
    assert _tokens(text) == tokens


def test_vectorizer_adapts_on_the_given_texts_only_and_round_trips_its_vocabulary():
    train = ["good good film", "bad film !", "good plot"]
    vectorizer = build_vectorizer(train, vocab_size=10)
    vocabulary = vectorizer.get_vocabulary()
    assert vocabulary[:3] == ["", "[UNK]", "good"] and "zebra" not in vocabulary
    ids = vectorizer(["Good zebra FILM!"]).numpy().tolist()
    assert ids == [[vocabulary.index("good"), 1, vocabulary.index("film"), vocabulary.index("!")]]
    assert build_vectorizer(train * 3 + ["a b c d e f g h i"], 5).vocabulary_size() == 5
    rebuilt = vectorizer_from_vocabulary(vocabulary)
    assert rebuilt.get_vocabulary() == vocabulary
    assert rebuilt(["Good zebra FILM!"]).numpy().tolist() == ids
    # Keras' adapt breaks ties by the later token; the Vectorizer keeps its order.
    assert build_vectorizer(["b a", "a c"], 4).get_vocabulary() == ["", "[UNK]", "a", "c"]


# Ties in count at the vocabulary's cut, accents, apostrophes, HTML, empty and unknown text.
TRICKY_TEXTS = [
    "Naïve naive NAÏVE café cafe Café é e ë",
    "Don't <br />stop!! It's 'quoted' — really?",
    "",
    "   ",
    "zz yy xx ww vv uu tt ss rr qq",
    "qq rr ss tt uu vv ww xx yy zz ÿ ÿ",
    "[UNK] <i>unk</i>",
]


@pytest.mark.parametrize("vocab_size", [12, 25, 1000])
def test_vectorizer_gives_text_vectorizations_vocabulary_and_ids(tiny_imdb, tmp_path, vocab_size):
    # Today's token ids, as keras.layers.TextVectorization gave them, must not move.
    if not runs_on_tensorflow():
        pytest.skip("the reference, TextVectorization(ragged=True), needs the TensorFlow backend")
    import tensorflow as tf

    texts = load_imdb(_config(tiny_imdb, tmp_path)).train.texts + TRICKY_TEXTS
    reference = keras.layers.TextVectorization(
        max_tokens=vocab_size,
        standardize=standardize_review,
        split="whitespace",
        output_mode="int",
        ragged=True,
    )
    reference.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(7))
    ours = build_vectorizer(texts, vocab_size)
    vocabulary = [str(token) for token in reference.get_vocabulary()]
    assert ours.get_vocabulary() == vocabulary
    assert len(vocabulary) == min(vocab_size, len(vocabulary)) and len(vocabulary) > 10
    unseen = ["Brand-new wörds, never adapted on", "naïve CAFÉ!"]
    for vectorizer in (ours, vectorizer_from_vocabulary(vocabulary)):
        got = vectorizer(texts + unseen)
        assert got.dtype == tf.int64
        assert got.to_list() == reference(texts + unseen).to_list()
    assert text.encode(ours, texts) and [ids.tolist() for ids in text.encode(ours, texts)] == [
        ids for ids in reference(texts).to_list()
    ]


# --------------------------------------------------------------------------- batches


def _token_split(lengths, seed=0) -> TokenSplit:
    rng = np.random.default_rng(seed)
    ids = [rng.integers(2, 50, size=n).astype(np.int32) for n in lengths]
    return TokenSplit(ids, rng.integers(0, 2, size=len(lengths)).astype(np.int32))


def _hand_padded(reviews, length=0):
    """text.pad and keep_last_tokens as they were before keras.utils.pad_sequences (kept
    here as the reference the replacement must equal, value and dtype)."""
    longest = max((len(review) for review in reviews), default=0)
    ids = np.zeros((len(reviews), max(longest, length)), np.int32)
    for row, review in zip(ids, reviews):
        row[: len(review)] = review
    return ids


RAGGED = [
    [np.arange(2, 9, dtype=np.int32), np.array([], np.int32), np.array([7], np.int32)],
    [np.arange(3, 40, dtype=np.int64), np.array([], np.int64)],  # int64: cache-less ids
    [[5, 6, 7], [8]],
    [np.array([], np.int32)] * 3,
    [],
]


@pytest.mark.parametrize("reviews", RAGGED)
@pytest.mark.parametrize("length", [0, 40, 64])
def test_pad_equals_the_hand_written_padding(reviews, length):
    padded = text.pad(reviews, length=length)
    expected = _hand_padded(reviews, length)
    assert padded.dtype == expected.dtype == np.int32
    assert padded.shape == expected.shape and np.array_equal(padded, expected)


@pytest.mark.parametrize("reviews", RAGGED[:4])
@pytest.mark.parametrize("width", [1, 3, 8, 50])
def test_unlabeled_rows_cut_and_pad_as_by_hand(reviews, width):
    """UnlabeledRows.rows: pad_sequences(truncating="pre") == pad(keep_last_tokens(...))."""
    from lstm_reviews.data.batches import UnlabeledRows

    reviews = [np.asarray(review, np.int32) for review in reviews]
    unlabeled = UnlabeledRows(reviews, max_length=60, seed=3, window=len(reviews))
    rows = unlabeled.rows(5, width, epoch=1, step=2)
    # The same draw, by hand: the reviews sorted by length (stable), the window, then choice.
    ordered = sorted(reviews, key=len)
    lengths = np.array([len(review) for review in ordered])
    below = int(np.searchsorted(lengths, width, side="right"))
    end = min(len(ordered), max(below, len(reviews)))
    start = max(0, end - len(reviews))
    rng = np.random.default_rng([3, 1, 2])
    picked = start + rng.choice(end - start, size=5, replace=end - start < 5)
    expected = _hand_padded([keep_last_tokens(ordered[i], width) for i in picked], width)
    assert rows.dtype == expected.dtype == np.int32
    assert rows.shape == (5, width) and np.array_equal(rows, expected)
    with pytest.raises(ValueError):
        unlabeled.rows(5, 0, epoch=1, step=2)


def test_keep_last_tokens_keeps_the_end():
    ids = np.arange(2, 12, dtype=np.int32)
    assert keep_last_tokens(ids, 4).tolist() == [8, 9, 10, 11]
    assert keep_last_tokens(ids, 50).tolist() == ids.tolist()
    with pytest.raises(ValueError, match="max_length must be positive, got 0"):
        keep_last_tokens(ids, 0)


def _batches(split, bucket, make, **kwargs):
    if make == "tf":
        return [
            tuple(part.numpy() for part in batch)
            for batch in make_dataset(split, 8, 30, bucket=bucket, **kwargs)
        ]
    batches = NumpyBatches(split, 8, 30, bucket=bucket, **kwargs)
    return [batches[i] for i in range(len(batches))]


def test_bucket_boundaries_worked_example():
    assert bucket_boundaries(np.array([3, 5, 9, 40]), 40, num_buckets=2) == [8, 41]
    # Never a bucket padded to 0 steps; the last bound always above max_length.
    assert bucket_boundaries(np.array([0, 0, 0, 1]), 5, num_buckets=4) == [2, 6]
    assert bucket_boundaries(np.array([], int), 5) == [6]


@pytest.mark.parametrize("make", ["tf", "numpy"])
def test_batches_are_right_padded_truncated_at_the_front_and_bucketing_cuts_padding(make):
    lengths = np.random.default_rng(1).integers(1, 60, size=200)
    split = _token_split(lengths)
    by_content = {
        tuple(ids[-30:].tolist()): (ids, label) for ids, label in zip(split.ids, split.labels)
    }
    batches = _batches(split, True, make, shuffle=True, seed=4)
    seen = 0
    for ids, labels, weights in batches:
        assert ids.dtype == np.int32 and labels.dtype == weights.dtype == np.float32
        assert ids.shape[0] == labels.shape[0] == weights.shape[0] == 8 and ids.shape[1] <= 30
        for row, label, weight in zip(ids, labels, weights):
            if weight == 0:  # a padding row: nothing in it
                assert not row.any() and label == 0
                continue
            kept = row[row != 0]
            assert (row[len(kept) :] == 0).all()  # padding only at the right
            original, original_label = by_content[tuple(kept.tolist())]
            assert kept.tolist() == original[-30:].tolist() and label == original_label
            assert weight == 1
            seen += 1
    assert seen == 200
    assert padding_share(batches) < 0.5 * padding_share(_batches(split, False, make))


def test_numpy_batches_equal_the_tf_data_batches():
    split = _token_split(np.random.default_rng(2).integers(0, 45, size=150))
    for bucket in (True, False):
        tf_batches = _batches(split, bucket, "tf")
        np_batches = _batches(split, bucket, "numpy")
        assert len(tf_batches) == len(np_batches)

        def as_set(batches):
            return sorted(
                tuple((part.tobytes(), part.shape) for part in batch) for batch in batches
            )

        assert as_set(tf_batches) == as_set(np_batches)


@pytest.mark.parametrize("shapes", ["fixed", "dynamic"])
def test_epoch_batches_are_numpy_and_equal_the_tf_data_ones_in_order(shapes):
    """Training batches come from NumpyBatches under every backend, in the order and with
    the bytes of the tf.data batches train.py took under TensorFlow before (make_dataset
    over the reviews in epoch_order's order), from any first step on."""
    from lstm_reviews.data.batches import epoch_batches, epoch_order, split_boundaries

    split = _token_split(np.random.default_rng(7).integers(1, 45, size=150))
    config = Config(max_length=30, batch_size=8, batch_shapes=shapes, seed=5)
    boundaries = split_boundaries(split, config)
    made = list(epoch_batches(split, config, boundaries, epoch=2))
    assert all(isinstance(part, np.ndarray) for batch in made for part in batch)
    assert [b[0].tobytes() for b in epoch_batches(split, config, boundaries, 2, first_step=3)] == [
        b[0].tobytes() for b in made[3:]
    ]
    if not runs_on_tensorflow():
        return
    order = epoch_order(len(split), config.seed, 2)
    reordered = TokenSplit([split.ids[row] for row in order], split.labels[order])
    fixed = shapes == "fixed"
    reference = make_dataset(
        reordered, 8, 30, seed=5, boundaries=boundaries if fixed else None, fixed=fixed
    )
    reference = [tuple(part.numpy() for part in batch) for batch in reference]
    assert len(made) == len(reference)
    for ours, theirs in zip(made, reference):
        assert len(ours) == len(theirs) == (3 if fixed else 2)
        for a, b in zip(ours, theirs):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _distinct_reviews(lengths, seed=0) -> TokenSplit:
    """Reviews told apart by their last token, 100 + their index (cut keeps the end)."""
    split = _token_split(lengths, seed)
    for k, ids in enumerate(split.ids):
        if len(ids):
            ids[-1] = 100 + k
    return split


def _epoch(batches, make):
    """One epoch of (ids, labels, weights) as numpy; NumpyBatches then moves to the next."""
    if make == "tf":
        return [tuple(part.numpy() for part in batch) for batch in batches]
    items = [batches[i] for i in range(len(batches))]
    batches.on_epoch_end()
    return items


@pytest.mark.parametrize("make", ["tf", "numpy"])
def test_every_review_once_per_epoch_in_one_shape_per_bucket(make):
    rng = np.random.default_rng(5)
    splits = {
        name: _distinct_reviews(rng.integers(1, 90, size=size), seed)
        for seed, (name, size) in enumerate((("train", 300), ("validation", 70), ("test", 130)))
    }
    max_length, batch_size, eval_batch_size = 64, 16, 24
    boundaries = bucket_boundaries(
        np.minimum([len(ids) for ids in splits["train"].ids], max_length), max_length, 6
    )
    assert boundaries[-1] == max_length + 1 and len(boundaries) >= 5
    shapes = set()
    for name, split in splits.items():
        train = name == "train"
        size = batch_size if train else eval_batch_size
        kwargs = dict(shuffle=train, seed=3, boundaries=boundaries)
        if make == "tf":
            batches = make_dataset(split, size, max_length, **kwargs)
        else:
            batches = NumpyBatches(split, size, max_length, **kwargs)
        epochs = [_epoch(batches, make) for _ in range(2 if train else 1)]
        for items in epochs:
            seen = []
            for ids, _, weights in items:
                assert ids.shape[0] == size and ids.shape[1] + 1 in boundaries
                shapes.add((train, ids.shape))
                for row, weight in zip(ids, weights):
                    kept = row[row != 0]
                    if weight == 0:
                        assert not kept.size
                        continue
                    # The shortest bucket that holds the review: its bound - 1 is the length.
                    assert ids.shape[1] + 1 == next(b for b in boundaries if b > len(kept))
                    seen.append(int(kept[-1]) - 100)
            assert sorted(seen) == list(range(len(split))), name  # each review exactly once
        if train:  # reshuffled, yet of the same shapes
            assert [x.tobytes() for x, _, _ in epochs[0]] != [x.tobytes() for x, _, _ in epochs[1]]
            assert sorted(x.shape for x, _, _ in epochs[0]) == sorted(
                x.shape for x, _, _ in epochs[1]
            )
    # One shape per bucket and batch size: at most 2 x buckets for train + evaluation.
    assert len(shapes) <= 2 * len(boundaries)
    assert {shape for train, shape in shapes if train} <= {(batch_size, b - 1) for b in boundaries}


@pytest.mark.parametrize("bucket", [True, False])
@pytest.mark.parametrize("make", ["tf", "numpy"])
def test_dynamic_batches_are_padded_to_their_longest_review_with_no_padding_rows(make, bucket):
    # batch_shapes "dynamic" (and "auto" under TensorFlow): the batches made before fixed
    # shapes. Each batch padded to its own longest review, no weights, no padding rows; with
    # bucketing, each bucket (about equally many of this split's reviews) has one short batch.
    lengths = np.random.default_rng(6).integers(1, 45, size=150)
    split = _distinct_reviews(lengths)
    kwargs = dict(shuffle=True, seed=4, bucket=bucket, fixed=False)
    if make == "tf":
        items = [tuple(part.numpy() for part in b) for b in make_dataset(split, 8, 30, **kwargs)]
    else:
        batches = NumpyBatches(split, 8, 30, **kwargs)
        items = [batches[i] for i in range(len(batches))]
    cut = np.minimum(lengths, 30)
    quantiles = np.quantile(cut, np.linspace(0, 1, 17)[1:-1])
    bounds = sorted({int(q) + 1 for q in quantiles}) if bucket else []
    sizes, seen = {}, []
    for item in items:
        assert len(item) == 2  # (ids, labels): no weights
        ids, labels = item
        assert ids.dtype == np.int32 and labels.dtype == np.float32
        row_lengths = (ids != 0).sum(axis=1)
        assert row_lengths.min() > 0 and ids.shape[1] == row_lengths.max()
        (bucket_index,) = set(np.searchsorted(bounds, row_lengths, side="right").tolist())
        sizes.setdefault(bucket_index, []).append(len(ids))
        seen += [int(row[row != 0][-1]) - 100 for row in ids]
    assert sorted(seen) == list(range(150))  # each review once
    counts = np.bincount(np.searchsorted(bounds, cut, side="right"))
    for bucket_index, batch_sizes in sizes.items():
        count = int(counts[bucket_index])
        expected = [8] * (count // 8) + ([count % 8] if count % 8 else [])
        assert sorted(batch_sizes, reverse=True) == expected, bucket_index
    if not bucket:  # in order of the shuffle: only the last batch short
        assert [len(ids) for ids, _ in items] == [8] * 18 + [6]


def test_batch_shapes_auto_is_fixed_except_under_tensorflow(monkeypatch, tmp_path):
    assert fixed_shapes(Config(batch_shapes="fixed"))
    assert not fixed_shapes(Config(batch_shapes="dynamic"))
    for backend, fixed in (("tensorflow", False), ("jax", True), ("torch", True)):
        monkeypatch.setattr(keras.backend, "backend", lambda backend=backend: backend)
        assert fixed_shapes(Config()) == fixed, backend
    monkeypatch.undo()
    # make_batches follows the setting; dynamic evaluation batches are --batch-size rows
    # unless --eval-batch-size says otherwise.
    split = _token_split(np.random.default_rng(7).integers(1, 45, size=40))
    config = Config(max_length=30, eval_max_length=30, batch_size=8, batch_shapes="dynamic")
    made = make_batches(split, config, None)
    items = [made[i] for i in range(len(made))] if isinstance(made, NumpyBatches) else list(made)
    assert {len(item) for item in items} == {2} and max(len(ids) for ids, _ in items) == 8
    config = dataclasses.replace(config, batch_shapes="fixed", eval_batch_size=16)
    boundaries = bucket_boundaries(np.minimum([len(x) for x in split.ids], 30), 30)
    made = make_batches(split, config, boundaries)
    items = [made[i] for i in range(len(made))] if isinstance(made, NumpyBatches) else list(made)
    assert {len(item) for item in items} == {3} and {len(ids) for ids, _, _ in items} == {16}


def test_prediction_batches_by_length_have_a_bounded_number_of_shapes():
    reviews = [np.arange(2, 5), np.arange(2, 22), np.arange(2, 7), np.zeros(0, np.int32)]
    worked = [(ids.shape, rows) for ids, rows in by_length(reviews, 2)]
    assert worked == [((2, 16), [0, 2]), ((1, 32), [1])]  # the docstring's example
    lengths = np.random.default_rng(3).integers(1, 601, size=900)
    reviews = [np.full(n, 7, np.int32) for n in lengths]
    seen, shapes = [], set()
    for ids, rows in by_length(reviews, 64):
        shapes.add(ids.shape)
        assert ids.shape[1] % 16 == 0 and (ids != 0).sum(axis=1).tolist() == lengths[rows].tolist()
        seen += rows
    assert sorted(seen) == list(range(900))
    assert len(shapes) <= 600 // 16 + 1 + 1  # 38 lengths, and the last, short batch


def test_boundaries_must_cover_max_length():
    split = _token_split([3, 5])
    with pytest.raises(ValueError, match="above max_length 10"):
        NumpyBatches(split, 4, 10, boundaries=[4, 10])


def test_numpy_batches_reshuffle_each_epoch_with_a_fixed_length():
    batches = NumpyBatches(_token_split(np.arange(1, 101)), 8, 64, shuffle=True, seed=0)
    first = [batches[i][0].tobytes() for i in range(len(batches))]
    size = len(batches)
    batches.on_epoch_end()
    assert len(batches) == size
    assert [batches[i][0].tobytes() for i in range(size)] != first


# --------------------------------------------------------------------------- token cache


def test_prepare_tokens_builds_then_loads_the_cache(tiny_imdb, tmp_path, monkeypatch):
    config = _config(tiny_imdb, tmp_path)
    built = prepare_tokens(config)
    path = token_cache_path(config)
    assert path.is_file() and built.report["cache"] == {"path": str(path), "hit": False}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    assert built.vocabulary[:2] == ["", "[UNK]"] and len(built.vocabulary) <= 200
    assert len(built.train) + len(built.validation) == 80 and len(built.test) == 40
    assert 0.9 < built.report["test_tokens_in_vocabulary"] <= 1.0

    def no_reading(config):
        raise AssertionError("the reviews were read again")

    monkeypatch.setattr(imdb, "load_imdb", no_reading)
    loaded = prepare_tokens(config)
    assert loaded.report["cache"]["hit"] is True
    assert loaded.vocabulary == built.vocabulary
    for name in ("train", "validation", "test"):
        assert [x.tolist() for x in getattr(loaded, name).ids] == [
            x.tolist() for x in getattr(built, name).ids
        ]
        assert getattr(loaded, name).labels.tolist() == getattr(built, name).labels.tolist()


def test_cache_key_follows_every_setting(tiny_imdb, tmp_path, monkeypatch):
    config = _config(tiny_imdb, tmp_path)
    base = token_cache_path(config)
    other_data = write_tiny_imdb(tmp_path / "other")
    variants = [
        dataclasses.replace(config, vocab_size=300),
        dataclasses.replace(config, validation_split=0.2),
        dataclasses.replace(config, seed=1),
        dataclasses.replace(config, data=str(other_data)),
    ]
    paths = {token_cache_path(variant) for variant in variants}
    assert base not in paths and len(paths) == len(variants)
    assert token_cache_path(dataclasses.replace(config, max_length=99, units=3)) == base
    monkeypatch.setattr(text, "STANDARDIZE_VERSION", "next")
    assert token_cache_path(config) != base
    assert base.name.startswith("tokens-") and len(base.stem) == len("tokens-") + 12


def test_a_corrupt_cache_is_a_data_error_and_prepare_tokens_rebuilds_it(tiny_imdb, tmp_path):
    config = _config(tiny_imdb, tmp_path)
    path = token_cache_path(config)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    with pytest.raises(UserError, match=f"{path}: not a readable token cache"):
        load_token_cache(path)
    assert prepare_tokens(config).report["cache"]["hit"] is False
    assert load_token_cache(path).settings == token_settings(config)


@pytest.mark.slow
def test_the_cache_loads_and_batches_without_tensorflow(tiny_imdb, tmp_path):
    config = _config(tiny_imdb, tmp_path)
    built = prepare_tokens(config)
    script = f"""
import sys
sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
from lstm_reviews.data.batches import NumpyBatches
from lstm_reviews.data.tokens import load_token_cache
tokens = load_token_cache({str(token_cache_path(config))!r})
batches = NumpyBatches(tokens.train, 16, 40, shuffle=True, seed=0)
ids, labels, weights = batches[0]
print(len(tokens.train), len(tokens.test), len(tokens.vocabulary), ids.dtype, labels.dtype,
      "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None)
"""
    env = dict(os.environ, KERAS_BACKEND="numpy")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        str(len(built.train)),
        "40",
        str(len(built.vocabulary)),
        "int32",
        "float32",
        "False",
    ]


# --------------------------------------------------------------------------- the real archive


def test_the_real_archive(monkeypatch):
    if not REAL_ARCHIVE.is_file():
        pytest.skip(
            f"real IMDB archive absent: {REAL_ARCHIVE} "
            f"(set LSTM_REVIEWS_TEST_ARCHIVE to an aclImdb_v1.tar.gz to run this test)"
        )
    # The user's Keras cache, so the one-time extraction (~40 s) is reused across runs.
    if _REAL_KERAS_HOME is None:
        monkeypatch.delenv("KERAS_HOME")
    else:
        monkeypatch.setenv("KERAS_HOME", _REAL_KERAS_HOME)
    config = Config(data=str(REAL_ARCHIVE))
    imdb = load_imdb(config)
    assert len(imdb.train) + len(imdb.validation) == 25_000 and len(imdb.test) == 25_000
    assert 2_300 <= len(imdb.validation) <= 2_700
    assert not set(imdb.train.movies) & set(imdb.validation.movies)
    assert imdb.test.labels.sum() == 12_500
    assert len(load_unlabeled(config)) == 50_000
