"""IMDB's review lengths in tokens, as the project's standardizer splits them: the reason the
default bound on one review (Config.eval_max_length, 4,096) keeps every IMDB review whole.

    python benchmarks/review_lengths.py aclImdb_v1.tar.gz

A review's token count does not depend on the vocabulary (an unknown word is [UNK], still
one token), so this reads the archive and splits the standardized text, nothing more.
"""

from __future__ import annotations

import sys
import tarfile

import numpy as np

from lstm_reviews.config import Config
from lstm_reviews.data.text import standardize_review


def main() -> None:
    import tensorflow as tf

    texts: dict[str, list[str]] = {"train": [], "test": [], "unsup": []}
    with tarfile.open(sys.argv[1]) as archive:
        for member in archive:
            parts = member.name.split("/")  # aclImdb/<split>/<label>/<id>.txt
            if member.isfile() and len(parts) == 4 and parts[2] in ("pos", "neg", "unsup"):
                split = "unsup" if parts[2] == "unsup" else parts[1]
                texts[split].append(archive.extractfile(member).read().decode("utf-8", "replace"))
    bound = Config().eval_max_length
    for split, reviews in texts.items():
        lengths = np.concatenate(
            [
                tf.strings.split(standardize_review(tf.constant(reviews[start : start + 2048])))
                .row_lengths()
                .numpy()
                for start in range(0, len(reviews), 2048)
            ]
        )
        print(
            f"{split}: {len(lengths)} reviews, longest {lengths.max()} tokens, "
            f"99.9th percentile {np.percentile(lengths, 99.9):.0f}, over {bound}: "
            f"{int((lengths > bound).sum())}"
        )


if __name__ == "__main__":
    main()
