"""The language model's batches (training.pretrain), from NumPy alone (any backend).

ids of the training and unlabeled reviews
  -> pieces of config.lm_chunk_length tokens, each within one review    chunk_reviews()
  -> batches of pieces of similar length (bands of 16 tokens), each with
     its next and previous words and wrong words sampled by frequency    LanguageModelBatches
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from lstm_reviews.data.text import pad

FIRST_WORD_ID = 2  # 0 is padding, 1 is [UNK]: neither is a word to predict
# Pieces are batched with pieces of their 16-token band of lengths, padded to its top: a
# review's last piece no longer costs a full piece of padding, and there are few shapes to
# compile (docs/results.md: the padding read before and after).
BUCKET_WIDTH = 16


def chunk_reviews(ids: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Cuts each review into pieces of `length` tokens; <int32>[pieces, length], right-padded.

    No piece spans two reviews. Worked example, length 3: the reviews [5, 6, 7, 8] and
    [9] give the pieces [5, 6, 7], [8, 0, 0] and [9, 0, 0]. Empty reviews give none.
    """
    if length <= 0:
        raise ValueError(f"chunk length must be positive, got {length}")
    pieces = [
        np.asarray(review, np.int32)[start : start + length]
        for review in ids
        for start in range(0, len(review), length)
    ]
    return pad(pieces, length=length)


def sampling_probabilities(pieces: np.ndarray, vocab_size: int, power: float) -> np.ndarray:
    """<float64>[vocab_size]: each word's count ** power, normalized; 0 for padding,
    [UNK] and unseen words (a word never read cannot be a useful wrong answer)."""
    counts = np.bincount(pieces.ravel(), minlength=vocab_size).astype(np.float64)
    counts[:FIRST_WORD_ID] = 0.0
    weights = counts**power
    if weights.sum() == 0:
        raise ValueError("the reviews to pretrain on hold no words")
    return weights / weights.sum()


def shift_targets(pieces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(next, previous) <int32>[pieces, length]: the word after and before each position, 0 where
    the piece has none. Worked example: [5, 6, 7] -> next [6, 7, 0], previous [0, 5, 6]."""
    following = np.zeros_like(pieces)
    following[:, :-1] = pieces[:, 1:]
    preceding = np.zeros_like(pieces)
    preceding[:, 1:] = pieces[:, :-1]
    return following, preceding


class LanguageModelBatches(keras.utils.PyDataset):
    """Batches of pieces for the language model, from numpy alone (any backend).

    Pieces are grouped in bands of length (1-16 tokens, 17-32, ..., up to the chunk length,
    bucket_width wide); a batch holds pieces of one band, cut to the band's top. Item i:
    ({"token_ids", "next_ids", "previous_ids"} each <int32>[batch_size, band top],
    "negative_ids" <int32>[batch_size, negatives]), zeros <float32>[batch_size] (Keras wants
    targets; the model's output is its loss), weights <float32>[batch_size]. A band's last,
    short batch is topped up with empty pieces (all ids 0) of weight 0, which the loss leaves
    out, so every batch of a band has one shape (one compilation per band under JAX).
    fixed=False (dynamic shapes): that batch stays short, and items are (inputs, zeros)
    without weights. Each epoch shuffles the pieces within their bands and then the order of
    all batches; the negatives are drawn per item; all seeded by (seed, epoch[, item]): the
    same seed gives the same batches.

    Worked example, bucket_width 4, batch_size 2: pieces of lengths 8, 3, 7, 2, 8 make the
    bands 5-8 (three pieces: batches of 2 and 1, 8 wide) and 1-4 (two pieces: one batch, 4
    wide), three batches in all, in an order drawn per epoch.
    """

    def __init__(
        self,
        pieces: np.ndarray,
        probabilities: np.ndarray,
        batch_size: int,
        seed: int,
        negatives: int,
        fixed: bool = True,
        bucket_width: int = BUCKET_WIDTH,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._fixed = fixed
        self._pieces, self._probabilities = pieces, probabilities
        self._batch_size, self._seed, self._negatives = batch_size, seed, negatives
        # Ids are never 0 inside a review, so a piece's nonzero ids are its length.
        lengths = np.maximum(np.count_nonzero(pieces, axis=1), 1)
        tops = np.minimum(-(-lengths // bucket_width) * bucket_width, pieces.shape[1])
        self._bands = [(int(top), np.flatnonzero(tops == top)) for top in np.unique(tops)]
        self._epoch = 0
        self._batches = self._planned()

    def _planned(self) -> list:
        """[(band top, piece indices)] of this epoch, in the order they are served."""
        rng = np.random.default_rng([self._seed, self._epoch])
        batches = []
        for top, members in self._bands:
            members = rng.permutation(members)
            batches += [
                (top, members[start : start + self._batch_size])
                for start in range(0, len(members), self._batch_size)
            ]
        return [batches[k] for k in rng.permutation(len(batches))]

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index):
        top, rows = self._batches[index]
        missing = self._batch_size - len(rows) if self._fixed else 0
        pieces = np.pad(self._pieces[rows, :top], [(0, missing), (0, 0)])
        following, preceding = shift_targets(pieces)
        rng = np.random.default_rng([self._seed, self._epoch, index])
        negatives = rng.choice(
            len(self._probabilities), size=(len(rows), self._negatives), p=self._probabilities
        ).astype(np.int32)
        inputs = {
            "token_ids": pieces,
            "next_ids": following,
            "previous_ids": preceding,
            "negative_ids": np.pad(negatives, [(0, missing), (0, 0)]),
        }
        if not self._fixed:
            return inputs, np.zeros(len(rows), np.float32)
        weights = np.pad(np.ones(len(rows), np.float32), (0, missing))
        return inputs, np.zeros(self._batch_size, np.float32), weights

    def on_epoch_end(self) -> None:
        self.set_epoch(self._epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Serves epoch `epoch`'s batches: a pretraining resumed at epoch k reads epoch k's
        order, not epoch 0's again."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = self._planned()
