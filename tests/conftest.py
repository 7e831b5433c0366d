"""Fixtures every test module can use: a tiny aclImdb tree and its tarball, made in a tmp dir."""

from __future__ import annotations

import random
import sys
import tarfile
from pathlib import Path

import pytest

POSITIVE_WORDS = ["amazing", "wonderful", "great", "brilliant", "loved", "superb"]
NEGATIVE_WORDS = ["awful", "terrible", "boring", "worst", "hated", "dull"]
FILLER_WORDS = [
    "this",
    "movie",
    "film",
    "the",
    "a",
    "plot",
    "actors",
    "give",
    "all",
    "should",
    "was",
    "and",
    "it",
    "story",
    "of",
    "scene",
]


@pytest.fixture(autouse=True)
def float32_policy_after_each_test():
    """Training sets Keras' global dtype policy (--mixed-precision): a test that trained in
    bfloat16 must not leave the models of the tests after it in bfloat16."""
    yield
    keras = sys.modules.get("keras")  # not imported here: each test module picks its backend
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")


def _review(rng: random.Random, sentiment_words: list[str]) -> str:
    words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(6, 30))]
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(sentiment_words))
    text = " ".join(words).capitalize() + "."
    # Real reviews carry HTML line breaks; the standardizer must remove them.
    return text.replace(" the ", " the<br /><br />", 1)


def write_tiny_imdb(
    root: Path,
    per_class_train: int = 40,
    per_class_test: int = 20,
    unlabeled: int = 10,
    reviews_per_movie: int = 4,
    seed: int = 0,
) -> Path:
    """Writes root/aclImdb in the archive's layout and returns that directory.

    Review k of a split/class belongs to movie k // reviews_per_movie, as listed in
    urls_<class>.txt (line k = the movie of review id k), like the real archive.
    """
    rng = random.Random(seed)
    top = root / "aclImdb"
    layout = {
        "train": {"pos": per_class_train, "neg": per_class_train, "unsup": unlabeled},
        "test": {"pos": per_class_test, "neg": per_class_test},
    }
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = top / split / name
            folder.mkdir(parents=True)
            urls = []
            for review_id in range(count):
                if name == "pos":
                    rating, text = rng.randint(7, 10), _review(rng, POSITIVE_WORDS)
                elif name == "neg":
                    rating, text = rng.randint(1, 4), _review(rng, NEGATIVE_WORDS)
                else:
                    rating, text = 0, _review(rng, POSITIVE_WORDS + NEGATIVE_WORDS)
                (folder / f"{review_id}_{rating}.txt").write_text(text, encoding="utf-8")
                movie = f"tt{split == 'test'}{name}{review_id // reviews_per_movie:05d}"
                urls.append(f"http://www.imdb.com/title/{movie}/usercomments")
            (top / split / f"urls_{name}.txt").write_text("\n".join(urls) + "\n")
    (top / "README").write_text("Tiny aclImdb fixture for tests.\n")
    (top / "imdb.vocab").write_text(
        "\n".join(POSITIVE_WORDS + NEGATIVE_WORDS + FILLER_WORDS) + "\n"
    )
    return top


@pytest.fixture
def tiny_imdb(tmp_path) -> Path:
    """Path of a tiny aclImdb directory."""
    return write_tiny_imdb(tmp_path / "data")


@pytest.fixture
def tiny_imdb_tarball(tmp_path) -> Path:
    """Path of aclImdb_v1.tar.gz holding the tiny tree under aclImdb/."""
    top = write_tiny_imdb(tmp_path / "src")
    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname="aclImdb")
    return archive
