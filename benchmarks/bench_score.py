"""Throughput of `lstm_reviews.score` (Beam) against `lstm_reviews.predict` on one file of reviews.

    python benchmarks/bench_score.py                       # 100,000 reviews, untrained model
    python benchmarks/bench_score.py --model saved_models/imdb_lstm --reviews 20000

Writes --reviews synthetic reviews (vocabulary words, IMDB-like lengths: bench_serving's
synthetic_reviews) to one file, one per line, then runs each command on it as a separate
process, as a user would, and times it from start to exit (TensorFlow's import and the
model's loading included, once per process):

    predict:      python -m lstm_reviews.predict --model M --file F > /dev/null
    score:        python -m lstm_reviews.score --model M --input F --output D
    score x2:     the same with --direct_num_workers=2 --direct_running_mode=multi_processing

Both score runs must write one prediction per review; the probabilities of the first 1,000
lines are compared with predict's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import build_untrained_export, synthetic_reviews  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # the export needs it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RUNS = {
    "predict": None,
    "score": [],
    "score x2": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
}


def timed(command: list[str], stdout) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=stdout, check=True)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", help="SavedModel; default: a fresh untrained default-size one")
    parser.add_argument("--reviews", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", default=",".join(RUNS), help="which commands, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = args.model or str(build_untrained_export(scratch))
        reviews = scratch / "reviews.txt"
        texts = synthetic_reviews(args.reviews, np.random.default_rng(args.seed))
        reviews.write_text("\n".join(texts) + "\n", encoding="utf-8")
        words = np.array([len(text.split()) for text in texts])
        results = {
            "reviews": args.reviews,
            "words_mean": float(words.mean()),
            "model": model if args.model else "untrained, default size",
            "cpu_count": os.cpu_count(),
            "load_average_before": os.getloadavg(),
            "seconds": {},
        }
        batch = ["--batch-size", str(args.batch_size)]
        first_probabilities = {}
        for name in args.runs.split(","):
            extra = RUNS[name]
            if extra is None:
                out_path = scratch / "predict.jsonl"
                with open(out_path, "w") as out:
                    command = [sys.executable, "-m", "lstm_reviews.predict", "--model", model]
                    seconds = timed([*command, "--file", str(reviews), *batch], out)
                lines = out_path.read_text(encoding="utf-8").splitlines()
                records = {n: json.loads(line) for n, line in enumerate(lines, start=1)}
            else:
                out_dir = scratch / name.replace(" ", "_")
                command = [sys.executable, "-m", "lstm_reviews.score", "--model", model]
                command += ["--input", str(reviews), "--output", str(out_dir), *batch, *extra]
                seconds = timed(command, None)
                records = {
                    record["line"]: record
                    for shard in out_dir.glob("predictions-*.jsonl")
                    for record in map(json.loads, shard.read_text(encoding="utf-8").splitlines())
                }
            assert len(records) == args.reviews, (name, len(records))
            first_probabilities[name] = [
                records[n]["probability"] for n in range(1, min(args.reviews, 1000) + 1)
            ]
            results["seconds"][name] = round(seconds, 1)
            print(
                f"{name:>9}: {seconds:7.1f} s, {args.reviews / seconds:7.1f} reviews/s",
                flush=True,
            )
        names = list(first_probabilities)
        results["max_probability_difference"] = max(
            float(np.max(np.abs(np.subtract(first_probabilities[a], first_probabilities[b]))))
            for a in names
            for b in names
        )
        results["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
