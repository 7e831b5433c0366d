"""Throughput of our LSTM layer against keras.layers.LSTM in the same small classifier;
with --variants, also of the peephole, coupled and GRU cells (and keras.layers.GRU).

"ours" is what the classifier runs: keras.layers.RNN(LSTMCell), which computes each step's
x_t·W inside the loop; "keras" is keras.layers.LSTM. Timed beside them, the ways to a cheaper
loop that are not in the model (benchmarks/scan_experiments.py): "ours_projected", x·W + b
for all steps as one product before the loop; with --bidirectional "ours_fused", both
directions in one scan; with --unroll "ours_unrolled", RNN(LSTMCell, unroll=True).

Both models are Embedding(mask_zero=True) -> recurrent layer -> Dense(1) with the same
weights, fed the same synthetic right-padded batches in one process. Each is warmed up
(compilation) first; then, for several repetitions with the order alternated, `--steps`
training steps (train_on_batch) and `--steps` inference steps (predict_on_batch) are timed.
Tokens/s counts every position of a batch, padding included: batch_size * seq_len per step.

The backend comes from KERAS_BACKEND (or --backend, which sets it before Keras loads):

    KERAS_BACKEND=tensorflow python benchmarks/bench_cell.py \
        --batch-size 64 --seq-len 200 --units 64
    KERAS_BACKEND=jax python benchmarks/bench_cell.py --json results-jax.json

Only Keras and NumPy are used here, so the JAX run does not need TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--seq-len", type=_positive_int, default=200, help="tokens per review")
    parser.add_argument("--units", type=_positive_int, default=64, help="LSTM units")
    parser.add_argument("--embedding-dim", type=_positive_int, default=64)
    parser.add_argument("--vocab", type=_positive_int, default=10000, help="vocabulary size")
    parser.add_argument("--steps", type=_positive_int, default=5, help="timed steps per repetition")
    parser.add_argument(
        "--repeats",
        type=_positive_int,
        default=3,
        help="repetitions, alternating which model goes first",
    )
    parser.add_argument("--warmup", type=_positive_int, default=2, help="untimed steps first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="Keras backend (default: KERAS_BACKEND, else Keras' config)",
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also time RNN of the peephole, coupled and GRU cells, and keras.layers.GRU",
    )
    parser.add_argument(
        "--bidirectional",
        action="store_true",
        help="both directions, as the classifier reads (keras.layers.Bidirectional)",
    )
    parser.add_argument(
        "--unroll",
        action="store_true",
        help="also time keras.layers.RNN(LSTMCell, unroll=True): the loop written out step by step",
    )
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the results here")
    return parser


# --variants: the extra models, timed in the same rounds; "ours" is our LSTMCell.
VARIANT_KINDS = ("peephole", "coupled", "gru", "keras_gru")


def synthetic_batches(count, batch_size, seq_len, vocab, seed):
    """count batches of (ids <int32>[batch, seq_len] right-padded with 0,
    labels <float32>[batch])."""
    import numpy as np

    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        ids = rng.integers(1, vocab, size=(batch_size, seq_len), dtype=np.int32)
        # Real reviews vary in length; a quarter to all of seq_len, the rest padding.
        lengths = rng.integers(max(1, seq_len // 4), seq_len + 1, size=batch_size)
        ids[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0
        labels = rng.integers(0, 2, size=batch_size).astype(np.float32)
        batches.append((ids, labels))
    return batches


def build_model(kind, args):
    """Embedding -> recurrent layer -> Dense(1). kind: "ours" (RNN(LSTMCell)), "keras"
    (keras.layers.LSTM), the experiments of scan_experiments.py ("ours_projected",
    "ours_fused"), "ours_unrolled" (RNN(LSTMCell, unroll=True)), a variant of
    lstm_reviews.model.variants ("peephole", "coupled", "gru") or "keras_gru"
    (keras.layers.GRU)."""
    import keras
    from scan_experiments import FusedBidirectionalLSTM, ProjectedInputsLSTMCell, ProjectedRNN

    from lstm_reviews.model.variants import CELLS

    ids = keras.Input(shape=(args.seq_len,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(args.vocab, args.embedding_dim, mask_zero=True, name="embedding")(
        ids
    )
    layers = {
        "keras": lambda: keras.layers.LSTM(args.units),
        "keras_gru": lambda: keras.layers.GRU(args.units),
        "ours_projected": lambda: ProjectedRNN(ProjectedInputsLSTMCell(args.units)),
        "ours_unrolled": lambda: keras.layers.RNN(CELLS["lstm"](args.units), unroll=True),
    }
    if kind == "ours_fused":  # both directions already
        recurrent = FusedBidirectionalLSTM(args.units, name="recurrent")
    else:
        make = layers.get(
            kind, lambda: keras.layers.RNN(CELLS[kind.replace("ours", "lstm")](args.units))
        )
        recurrent = make()
        if args.bidirectional:
            recurrent = keras.layers.Bidirectional(recurrent)
        recurrent.name = "recurrent"
    logit = keras.layers.Dense(1, name="logit")(recurrent(x))
    model = keras.Model(ids, logit, name=f"{kind}_lstm")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return model


def _time(fn, batches):
    start = time.perf_counter()
    for ids, labels in batches:
        fn(ids, labels)  # train_on_batch / predict_on_batch return host values: synchronous
    return time.perf_counter() - start


def run(args):
    import keras
    import numpy as np

    # Not keras.utils.set_random_seed: it imports TensorFlow when installed. The initial
    # weights need no seed anyway: "ours" gets a copy of "keras"'s.
    from scan_experiments import copy_weights

    kinds = ["ours", "keras", "ours_projected"]
    kinds += ["ours_fused"] * args.bidirectional + ["ours_unrolled"] * args.unroll
    models = {kind: build_model(kind, args) for kind in kinds}
    models["ours"].set_weights(models["keras"].get_weights())
    for kind in kinds[2:]:
        copy_weights(models["ours"], models[kind])
    for kind in VARIANT_KINDS if args.variants else ():
        models[kind] = build_model(kind, args)
    batches = synthetic_batches(
        args.warmup + args.steps, args.batch_size, args.seq_len, args.vocab, args.seed
    )
    warmup, timed = batches[: args.warmup], batches[args.warmup :]

    # Same weights, same input: our LSTMs must agree with Keras' before anything is timed.
    predictions = {kind: model.predict_on_batch(timed[0][0]) for kind, model in models.items()}
    agreement = max(
        float(np.max(np.abs(predictions[kind] - predictions["keras"])))
        for kind in models
        if kind.startswith("ours")
    )
    if not agreement < 1e-4:  # a faster wrong model is no result
        sys.exit(f"error: our models disagree with keras.layers.LSTM by {agreement:.2e}")

    steps = {
        "train": lambda model: lambda ids, labels: model.train_on_batch(ids, labels),
        "infer": lambda model: lambda ids, labels: model.predict_on_batch(ids),
    }
    for model in models.values():
        for make in steps.values():
            _time(make(model), warmup)  # compiles the train and predict functions

    tokens = args.steps * args.batch_size * args.seq_len
    rates = {kind: {phase: [] for phase in steps} for kind in models}
    for repeat in range(args.repeats):
        order = list(models) if repeat % 2 == 0 else list(models)[::-1]
        for phase, make in steps.items():
            for kind in order:
                rates[kind][phase].append(tokens / _time(make(models[kind]), timed))

    median = {
        kind: {phase: statistics.median(values) for phase, values in by_phase.items()}
        for kind, by_phase in rates.items()
    }
    return {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs visible",
        "tensorflow_imported": sys.modules.get("tensorflow") is not None,
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "max_abs_prediction_difference": agreement,
        "tokens_per_second": median,
        "all_runs_tokens_per_second": rates,
        "ratio_ours_over_keras": {
            phase: median["ours"][phase] / median["keras"][phase] for phase in steps
        },
        # Each model's speed over our LSTM's, measured in the same rounds.
        "ratio_over_ours": {
            kind: {phase: median[kind][phase] / median["ours"][phase] for phase in steps}
            for kind in models
        },
    }


def _write_json_atomically(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(data, tmp, indent=2)
    os.replace(tmp.name, path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.backend:
        if "keras" in sys.modules and sys.modules["keras"].backend.backend() != args.backend:
            sys.exit(
                f"error: Keras is already loaded with another backend; cannot switch to "
                f"{args.backend!r}"
            )
        os.environ["KERAS_BACKEND"] = args.backend
    if args.unroll and args.bidirectional and os.environ.get("KERAS_BACKEND") == "torch":
        # Keras 3.15's unrolled loop fails inside Bidirectional under torch ('tuple' has no shape).
        sys.exit("error: --unroll with --bidirectional does not run under torch; drop one")
    if args.json is not None and args.json.is_dir():
        sys.exit(f"error: --json {args.json} is a directory; give a file name")

    results = run(args)
    speed = results["tokens_per_second"]
    print(
        f"backend {results['backend']} (Keras {results['keras_version']}), "
        f"{results['machine']}; TensorFlow imported: {results['tensorflow_imported']}"
    )
    print(
        f"batch {args.batch_size} x seq_len {args.seq_len}, units {args.units}, "
        f"{args.steps} steps x {args.repeats} repeats; max |ours - keras| prediction "
        f"{results['max_abs_prediction_difference']:.2e}"
    )
    relative = results["ratio_over_ours"]
    print(f"{'':15}{'train tokens/s':>16}{'infer tokens/s':>16}{'train / ours':>14}")
    for kind in speed:
        print(
            f"{kind:15}{speed[kind]['train']:16,.0f}{speed[kind]['infer']:16,.0f}"
            f"{relative[kind]['train']:14.2f}"
        )
    ratio = results["ratio_ours_over_keras"]
    print(f"{'ours/keras':15}{ratio['train']:16.2f}{ratio['infer']:16.2f}")
    if args.json is not None:
        _write_json_atomically(args.json, results)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
