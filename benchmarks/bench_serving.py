"""Serving speed of the exported SavedModel on this CPU: single-review latency and batch throughput.

    python benchmarks/bench_serving.py                      # a fresh untrained default-size model
    python benchmarks/bench_serving.py --model saved_models/imdb_lstm

It calls the "serving_default" signature (raw strings in: standardization, vocabulary
lookup and the BiLSTM all included), as TF Serving would, after a few warm-up calls.

Without --model it exports an untrained model of the default size (Config(): vocabulary
30,000, embedding 128, BiLSTM of 128 units per direction, max_length 600) into a temp
directory, so it runs without the dataset; trained weights take exactly the same time.

Reviews are synthetic: words of the vocabulary, lengths drawn like IMDB's (median ~175
words, long tail, cut at max_length by the model). Single-review latency uses reviews of
--words words (default 230, IMDB's mean).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault(
    "KERAS_BACKEND", "tensorflow"
)  # the export needs it; only used without --model
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_untrained_export(root: Path) -> Path:
    """Exports an untrained default-size model to root/saved_models/1 and returns that path."""
    import keras

    from lstm_reviews.config import Config
    from lstm_reviews.export import export_saved_model
    from lstm_reviews.model.classifier import build_model
    from lstm_reviews.rundir import RunDir

    config = Config(output_dir=str(root / "run"), export_dir=str(root / "saved_models"))
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True)
    keras.utils.set_random_seed(config.seed)
    # The vocabulary's content does not matter for speed, only its size.
    vocabulary = ["", "[UNK]"] + [f"word{index}" for index in range(config.vocab_size - 2)]
    RunDir(run_dir).write_config(config)
    RunDir(run_dir).write_vocabulary(vocabulary)
    build_model(config, len(vocabulary)).save(run_dir / "model.keras")
    return export_saved_model(run_dir, config.export_dir)


def synthetic_reviews(count: int, rng: np.random.Generator, words: int | None = None) -> list[str]:
    """count reviews of vocabulary words; IMDB-like lengths, or exactly `words` words each."""
    if words is None:
        lengths = np.clip(rng.lognormal(np.log(175), 0.75, size=count), 10, 2500).astype(int)
    else:
        lengths = np.full(count, words)
    return [" ".join(f"word{i}" for i in rng.integers(0, 29998, size=n)) + "." for n in lengths]


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.array(seconds) * 1000.0, q))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--model",
        help="SavedModel: model directory (highest version) or a version "
        "directory; default: export a fresh untrained default-size model",
    )
    parser.add_argument(
        "--words", type=int, default=230, help="words per review for the latency runs"
    )
    parser.add_argument("--single-runs", type=int, default=100, help="timed single-review calls")
    parser.add_argument(
        "--batch-sizes", default="32,128", help="comma-separated batch sizes for throughput"
    )
    parser.add_argument("--batches", type=int, default=8, help="timed batches per batch size")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed calls before each measurement"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]

    import tensorflow as tf

    from lstm_reviews.backend import cpu_model
    from lstm_reviews.errors import UserError
    from lstm_reviews.predict import resolve_model_dir

    with tempfile.TemporaryDirectory() as scratch:
        if args.model:
            try:
                version = resolve_model_dir(args.model)
            except UserError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            note = f"SavedModel {version}"
        else:
            from lstm_reviews.config import Config

            started = time.perf_counter()
            version = build_untrained_export(Path(scratch))
            size = Config()  # the defaults build_untrained_export uses
            note = (
                f"fresh UNTRAINED default-size model (vocabulary {size.vocab_size}, embedding "
                f"{size.embedding_dim}, BiLSTM {size.units}, max_length {size.max_length}), "
                f"exported in {time.perf_counter() - started:.1f} s; "
                "trained weights run at the same speed"
            )
        serve = tf.saved_model.load(str(version)).signatures["serving_default"]
        input_name = next(iter(serve.structured_input_signature[1]))

        def call(texts):
            return serve(**{input_name: tf.constant(texts)})["probability"].numpy()

        rng = np.random.default_rng(args.seed)
        results = {
            "model": note,
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "tensorflow": tf.__version__,
        }

        singles = synthetic_reviews(args.single_runs + args.warmup, rng, words=args.words)
        for text in singles[: args.warmup]:
            call([text])
        latencies = []
        for text in singles[args.warmup :]:
            started = time.perf_counter()
            call([text])
            latencies.append(time.perf_counter() - started)
        results["single"] = {
            "words": args.words,
            "runs": len(latencies),
            "p50_ms": percentile_ms(latencies, 50),
            "p99_ms": percentile_ms(latencies, 99),
        }

        results["throughput"] = []
        for size in batch_sizes:
            batches = [synthetic_reviews(size, rng) for _ in range(args.batches + args.warmup)]
            for batch in batches[: args.warmup]:
                call(batch)
            started = time.perf_counter()
            for batch in batches[args.warmup :]:
                call(batch)
            elapsed = time.perf_counter() - started
            words = np.mean([len(text.split()) for batch in batches for text in batch])
            results["throughput"].append(
                {
                    "batch_size": size,
                    "batches": args.batches,
                    "mean_words": float(words),
                    "reviews_per_s": size * args.batches / elapsed,
                }
            )

    print(f"model: {results['model']}")
    # Other processes' load skews the numbers on a shared machine: show it beside them.
    results["load_average_1min"] = (
        round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None
    )
    print(
        f"machine: {results['cpu']}, {results['cpu_count']} CPUs visible, load average "
        f"{results['load_average_1min']}; TensorFlow {tf.__version__}"
    )
    single = results["single"]
    print(
        f"single review ({single['words']} words, {single['runs']} calls): "
        f"p50 {single['p50_ms']:.1f} ms, p99 {single['p99_ms']:.1f} ms"
    )
    for row in results["throughput"]:
        print(
            f"batch {row['batch_size']:4d} "
            f"(IMDB-like lengths, mean {row['mean_words']:.0f} words): "
            f"{row['reviews_per_s']:.1f} reviews/s"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
