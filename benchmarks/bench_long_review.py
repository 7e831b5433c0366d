"""What one very long review costs: `predict` and `explain` on the default-size model, each
run as its own process, with its wall time and peak memory (the child's own maximum RSS).

    python benchmarks/bench_long_review.py [--words 369187] [--explain-words 5000] [--json OUT]

The drill of issue #27 fed `predict` one 2.1 MB line (369,187 tokens) among 31 IMDB-sized
reviews; before the bound on tokens per review (Config.eval_max_length) the batch was padded
to the long line's length. Here the same input goes through the exported SavedModel of an
untrained default-size model (bench_serving.build_untrained_export; trained weights take the
same time), and `explain` traces a review of --explain-words words (cut to the bound).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_serving import build_untrained_export, synthetic_reviews

REPO = Path(__file__).resolve().parents[1]


def measure(command: list[str], cwd: Path) -> dict:
    """Runs command; its wall time, exit code, peak RSS (MiB) and standard output."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=out, stderr=subprocess.DEVNULL, env=environment
        )
        _, status, usage = os.wait4(process.pid, 0)
        out.seek(0)
        output = out.read().decode("utf-8")
    return {
        "seconds": round(time.monotonic() - start, 2),
        "exit": os.waitstatus_to_exitcode(status),
        "peak_mib": round(usage.ru_maxrss / 1024),  # kilobytes on Linux
        "stdout": output,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=369_187, help="tokens of the long line")
    parser.add_argument("--short", type=int, default=31, help="IMDB-sized reviews beside it")
    parser.add_argument("--explain-words", type=int, default=5000)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model = build_untrained_export(root)
        long_review = " ".join(f"word{index}" for index in rng.integers(0, 29_000, args.words))
        reviews = synthetic_reviews(args.short, rng)
        (root / "short.txt").write_text("\n".join(reviews) + "\n", encoding="utf-8")
        short_only = measure(
            [sys.executable, "-m", "lstm_reviews.predict", "--model", str(model)]
            + ["--file", str(root / "short.txt")],
            root,
        )
        short_only.pop("stdout")
        reviews.insert(len(reviews) // 2, long_review)
        (root / "reviews.txt").write_text("\n".join(reviews) + "\n", encoding="utf-8")
        predict = measure(
            [sys.executable, "-m", "lstm_reviews.predict", "--model", str(model)]
            + ["--file", str(root / "reviews.txt")],
            root,
        )
        records = [json.loads(line) for line in predict.pop("stdout").splitlines()]
        predict.update(
            predicted=sum("probability" in record for record in records),
            long_review_bytes=len(long_review.encode()),
            long_review_tokens_read=max(record.get("tokens", 0) for record in records),
        )
        words = rng.integers(0, 29_000, args.explain_words)
        explained = " ".join(f"word{index}" for index in words)
        explain = measure(
            [sys.executable, "-m", "lstm_reviews.explain", "--model", str(root / "run"), explained],
            root,
        )
        explain.pop("stdout")
        explain["words"] = args.explain_words
    figures = {
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "predict_short_reviews_only": short_only,
        "predict": predict,
        "explain": explain,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
