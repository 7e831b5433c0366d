"""--distribute data on 1 against 2 devices: training steps per second of the default model.

    python benchmarks/bench_distribute.py [--steps 20] [--repeats 3] [--length 256]

Each measurement is a fresh interpreter (JAX fixes its device count at start): on a CPU,
XLA_FLAGS=--xla_force_host_platform_device_count=2 splits it into two virtual devices,
which share the same cores. Two cases: the same global batch over 1 and 2 devices, and the
global batch doubled with the devices (the same rows per device). The runs alternate so a
change in the machine's load falls on both sides; the figure is the median of the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STEPS = """
import json, sys, time
import numpy as np
from lstm_reviews.backend import set_up_backend
from lstm_reviews.config import Config
from lstm_reviews.model.classifier import build_model, compile_model
from lstm_reviews.training.distribute import set_up_distribution

batch, length, steps, devices = (int(value) for value in sys.argv[1:5])
config = Config(distribute="data" if devices > 1 else "off", batch_size=batch)
set_up_backend(config)
set_up_distribution(config)
model = compile_model(build_model(config, config.vocab_size), config)
rng = np.random.default_rng(0)
ids = rng.integers(1, config.vocab_size, size=(batch, length), dtype=np.int32)
labels = rng.integers(0, 2, size=(batch, 1)).astype("float32")
for _ in range(3):  # compilation and warm-up
    model.train_on_batch(ids, labels)
started = time.perf_counter()
for _ in range(steps):
    model.train_on_batch(ids, labels)
seconds = time.perf_counter() - started
print(json.dumps({"reviews_per_second": steps * batch / seconds}))
"""


def measure(devices: int, batch: int, length: int, steps: int) -> dict:
    flags = f"--xla_force_host_platform_device_count={devices}"
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": flags, "PYTHONPATH": str(REPO)}
    args = [str(batch), str(length), str(steps), str(devices)]
    done = subprocess.run(
        [sys.executable, "-c", STEPS, *args], env=env, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--length", type=int, default=256, help="tokens per review")
    parser.add_argument("--batch-size", type=int, default=64, help="the one-device batch")
    args = parser.parse_args()
    cases = {
        "same global batch": [(1, args.batch_size), (2, args.batch_size)],
        "batch grows with devices": [(1, args.batch_size), (2, 2 * args.batch_size)],
    }
    for case, settings in cases.items():
        rates = {setting: [] for setting in settings}
        for _ in range(args.repeats):
            for devices, batch in settings:
                result = measure(devices, batch, args.length, args.steps)
                rates[(devices, batch)].append(result["reviews_per_second"])
        medians = {setting: statistics.median(values) for setting, values in rates.items()}
        one, two = medians[settings[0]], medians[settings[1]]
        print(
            f"{case}: 1 device, batch {settings[0][1]}: {one:.1f} reviews/s; "
            f"2 devices, batch {settings[1][1]}: {two:.1f} reviews/s; ratio {two / one:.2f}"
        )


if __name__ == "__main__":
    main()
