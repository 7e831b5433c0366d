"""Training batches from tf.data (make_dataset) against NumPy's (NumpyBatches), under TensorFlow.

    python benchmarks/bench_batches.py --tokens PATH/tokens-<hash>.npz
    python benchmarks/bench_batches.py --tokens T.npz --train-reviews 2000 --units 16

The training loop calls train_on_batch from Python, batch by batch, so tf.data's
prefetching overlaps with nothing but that call. Measured, for the training split of a token
cache (train.py's own, built by any run with the default settings):

    batches:  one epoch's training batches (epoch_batches, default config) iterated, nothing
              trained; the batches of both are compared array by array (values and dtype)
    training: one epoch of train_on_batch, a small model (--units, --embedding-dim) on the
              first --train-reviews training reviews; both start from the same seed, and
              their weights afterwards are compared byte for byte

Each is run --repeats times (training: the two paths taking turns); the best time is reported.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lstm_reviews.backend import set_up_backend  # noqa: E402
from lstm_reviews.config import Config  # noqa: E402
from lstm_reviews.data import batches  # noqa: E402
from lstm_reviews.data.tf_batches import make_dataset  # noqa: E402
from lstm_reviews.data.tokens import TokenSplit, load_token_cache  # noqa: E402
from lstm_reviews.model.classifier import build_model, compile_model  # noqa: E402

PATHS = {"tf.data": True, "NumpyBatches": False}


def epoch(split, config, tf_data: bool):
    """Epoch 0's training batches: epoch_batches' (NumpyBatches), or tf.data's as train.py
    had them before (make_dataset over the reviews in epoch_order's order)."""
    boundaries = batches.split_boundaries(split, config)
    if not tf_data:
        return batches.epoch_batches(split, config, boundaries, epoch=0)
    order = batches.epoch_order(len(split), config.seed, 0)
    reordered = TokenSplit([split.ids[row] for row in order], np.asarray(split.labels)[order])
    fixed = batches.fixed_shapes(config)
    return make_dataset(
        reordered,
        batch_size=config.batch_size,
        max_length=config.max_length,
        seed=config.seed,
        bucket=config.bucket_by_length,
        boundaries=boundaries if fixed else None,
        fixed=fixed,
    )


def as_numpy(batch):
    return tuple(np.asarray(part) for part in batch)


def time_batches(split, config, repeats: int) -> dict:
    seconds = {}
    for name, tf_data in PATHS.items():
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            count = sum(1 for _ in epoch(split, config, tf_data))
            best = min(best, time.perf_counter() - started)
        seconds[name] = best
        print(f"batches  {name:13s} {count} batches  {best:.2f} s", flush=True)
    made = {
        name: [as_numpy(b) for b in epoch(split, config, tf_data)]
        for name, tf_data in PATHS.items()
    }
    first, second = made.values()
    same = len(first) == len(second) and all(
        len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))
        for a, b in zip(first, second)
    )
    print(f"batches  identical (values and dtypes): {same}", flush=True)
    return seconds


def train_epoch(split, config, vocab_size: int, tf_data: bool):
    set_up_backend(config)
    model = compile_model(build_model(config, vocab_size), config)
    started = time.perf_counter()
    for ids, labels, *weights in epoch(split, config, tf_data):
        model.train_on_batch(ids, labels, sample_weight=weights[0] if weights else None)
    return time.perf_counter() - started, [w.numpy().tobytes() for w in model.weights]


def time_training(split, config, vocab_size: int, repeats: int) -> None:
    """The paths alternate, so that a change in the machine's load hits both alike."""
    best, weights = dict.fromkeys(PATHS, float("inf")), {}
    for repeat in range(repeats):
        for name, tf_data in PATHS.items():
            seconds, weights[name] = train_epoch(split, config, vocab_size, tf_data)
            best[name] = min(best[name], seconds)
            print(f"training {name:13s} run {repeat + 1}  {seconds:.2f} s", flush=True)
    for name, seconds in best.items():
        print(f"training {name:13s} {len(split)} reviews, best {seconds:.2f} s", flush=True)
    first, second = weights.values()
    print(f"training weights identical: {first == second}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", required=True, help="a token cache, tokens-<hash>.npz")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-reviews", type=int, default=2000)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--embedding-dim", type=int, default=16)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-batches", action="store_true")
    args = parser.parse_args()
    data = load_token_cache(args.tokens)
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}", flush=True)
    if not args.skip_batches:
        time_batches(data.train, Config(), args.repeats)
    if args.skip_training:
        return
    small = Config(
        units=args.units,
        embedding_dim=args.embedding_dim,
        pretrain_embeddings=False,
        lm_epochs=0,
        epochs=1,
    )
    subset = TokenSplit(
        data.train.ids[: args.train_reviews], data.train.labels[: args.train_reviews]
    )
    time_training(subset, small, len(data.vocabulary), args.repeats)


if __name__ == "__main__":
    main()
