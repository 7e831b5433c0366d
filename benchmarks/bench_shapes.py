"""Batch shapes per epoch, and what each new shape costs under JAX: one XLA compilation.

    python benchmarks/bench_shapes.py --tokens .cache/lstm_reviews/tokens-<hash>.npz
    KERAS_BACKEND=jax python benchmarks/bench_shapes.py --tokens ... --compile-shapes 3

For the default Config (--batch-shapes fixed or dynamic to pick one; "auto" resolves by the
backend, as training does): per split (train, validation, test) the batches of one epoch, their
distinct (batch, time) shapes and lengths, and the share of padding (padding rows count as
padding); the training batches' shapes over all epochs of a run; the same for the language
model's batches over the training split's pieces. "all_splits_distinct_shapes" counts the
compilations one run needs: a train step per training shape, a test step per evaluation shape. With
--compile-shapes N (JAX backend) the default model takes train_on_batch steps on N distinct
shapes of the first training epoch, each shape twice: jax.monitoring counts the XLA
compilations, and the first step minus the second is that shape's compilation time.
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np

from lstm_reviews.config import Config
from lstm_reviews.data import batches
from lstm_reviews.data.tokens import load_token_cache
from lstm_reviews.model.classifier import build_model, compile_model
from lstm_reviews.training import pretrain


def split_batches(tokens, config):
    """{split: the batches of one epoch, as a list of items}, as train.py makes them (the
    NumPy path; tf.data makes the same batches, tests/test_data.py checks it)."""
    boundaries = batches.split_boundaries(tokens.train, config)
    result = {}
    for name, train in (("train", True), ("validation", False), ("test", False)):
        made = batches.NumpyBatches(
            getattr(tokens, name),
            config.batch_size if train else batches.eval_batch_size(config),
            config.max_length,
            shuffle=train,
            seed=config.seed,
            bucket=config.bucket_by_length,
            boundaries=boundaries,
            fixed=batches.fixed_shapes(config),
        )
        result[name] = [made[k] for k in range(len(made))]
    return result


def train_shapes_over_epochs(tokens, config) -> int:
    """Distinct shapes of the training batches over all config.epochs epochs of a run."""
    made = batches.NumpyBatches(
        tokens.train,
        config.batch_size,
        config.max_length,
        shuffle=True,
        seed=config.seed,
        bucket=config.bucket_by_length,
        boundaries=batches.split_boundaries(tokens.train, config),
        fixed=batches.fixed_shapes(config),
    )
    shapes = set()
    for _ in range(config.epochs):
        shapes |= {tuple(made[k][0].shape) for k in range(len(made))}
        made.on_epoch_end()
    return len(shapes)


def shape_report(items) -> dict:
    shapes = [tuple(np.asarray(item[0]).shape) for item in items]
    return {
        "batches": len(items),
        "distinct_shapes": len(set(shapes)),
        "distinct_lengths": len({shape[1] for shape in shapes}),
        "distinct_batch_sizes": len({shape[0] for shape in shapes}),
        "padding_share": round(batches.padding_share(items), 4),
    }


def language_model_report(tokens, config) -> dict:
    pieces = pretrain.chunk_reviews(tokens.train.ids, config.lm_chunk_length)
    probabilities = pretrain.sampling_probabilities(
        pieces, len(tokens.vocabulary), config.lm_sampling_power
    )
    made = pretrain.LanguageModelBatches(
        pieces,
        probabilities,
        config.lm_batch_size,
        config.seed,
        negatives=config.lm_negatives,
        fixed=batches.fixed_shapes(config),
    )
    shapes = {
        tuple(tuple(np.shape(value)) for value in made[k][0].values()) for k in range(len(made))
    }
    return {"pieces": len(pieces), "batches": len(made), "distinct_shapes": len(shapes)}


def compile_times(items, config, vocab_size: int, count: int) -> dict:
    """Two train_on_batch steps on each of `count` distinct shapes; compilations counted."""
    import jax

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kwargs: (
            compiles.append(seconds)
            if event == "/jax/core/compile/backend_compile_duration"
            else None
        )
    )
    keras.utils.set_random_seed(config.seed)
    model = compile_model(build_model(config, vocab_size), config)
    chosen, seen = [], set()
    for item in items:
        if tuple(item[0].shape) not in seen:
            seen.add(tuple(item[0].shape))
            chosen.append(item)
        if len(chosen) == count:
            break
    rows = []
    for item in chosen:
        timings = []
        for _ in range(2):
            before = len(compiles)
            started = time.perf_counter()
            model.train_on_batch(*item)
            timings.append((time.perf_counter() - started, len(compiles) - before))
        rows.append(
            {
                "shape": list(item[0].shape),
                "first_step_s": round(timings[0][0], 2),
                "second_step_s": round(timings[1][0], 2),
                "compilations_first": timings[0][1],
                "compilations_second": timings[1][1],
            }
        )
    return {"device": str(jax.devices()[0]), "shapes": rows}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", required=True, help="a token cache (tokens-<hash>.npz)")
    parser.add_argument(
        "--compile-shapes", type=int, default=0, help="time compilations on this many shapes"
    )
    parser.add_argument(
        "--batch-shapes", default="auto", choices=("auto", "fixed", "dynamic"), help="as training's"
    )
    args = parser.parse_args(argv)
    config = Config(batch_shapes=args.batch_shapes)
    tokens = load_token_cache(args.tokens)
    made = split_batches(tokens, config)
    report = {name: shape_report(items) for name, items in made.items()}
    report["all_splits_distinct_shapes"] = len(
        {(name == "train", tuple(item[0].shape)) for name, items in made.items() for item in items}
    )
    report[f"train_distinct_shapes_over_{config.epochs}_epochs"] = train_shapes_over_epochs(
        tokens, config
    )
    report["language_model_train_pieces"] = language_model_report(tokens, config)
    if args.compile_shapes:
        report["jax_compile"] = compile_times(
            made["train"], config, len(tokens.vocabulary), args.compile_shapes
        )
    report["backend"] = keras.backend.backend()
    report["fixed_shapes"] = batches.fixed_shapes(config)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
