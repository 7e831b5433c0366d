"""The device check: everything a GPU session should measure, in one call that stops in time.

    python benchmarks/gpu_check.py BUNDLE OUT [--budget-s 540] [--scale full|tiny]

BUNDLE is a folder made by `python -m lstm_reviews.gpu_bundle BUNDLE --preset gpu` where
TensorFlow and the reviews are (`train.sh` and the token ids); OUT receives every figure in
OUT/gpu_check.json and each step's log. Three steps, each given what is left of the budget:

  cell_jax    benchmarks/bench_cell.py under JAX: our cell against keras.layers.LSTM, masked,
              both directions, the preset's shapes; train and inference tokens/s
  cell_torch  the same under the torch backend, where torch is installed (keras.layers.LSTM
              runs on cuDNN there when a GPU is present)
  recipe      BUNDLE/train.sh under JAX into OUT/run: word vectors, language model, sentiment
              training, evaluation. It is sent SIGINT when the budget runs out: the run stops
              after its current batch and stays resumable (`sh BUNDLE/train.sh --output-dir
              OUT/run --resume`).

--scale tiny shrinks the shapes and the recipe so the same script runs on a CPU in seconds
(tests/test_gpu_check.py); --scale full is the preset as it stands.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# bench_cell.py's shapes: the gpu preset's batch, training length, units and embedding width.
CELL_SHAPES = {
    "full": ["--batch-size", "64", "--seq-len", "600", "--units", "512", "--embedding-dim", "256"],
    "tiny": ["--batch-size", "4", "--seq-len", "12", "--units", "4", "--embedding-dim", "8"],
}
CELL_STEPS = {
    "full": ["--steps", "10", "--repeats", "3"],
    "tiny": ["--steps", "1", "--repeats", "1"],
}
# Options after train.sh's own at --scale tiny: a few seconds of every stage of the recipe.
TINY_RECIPE = ["--units", "4", "--embedding-dim", "8", "--lm-epochs", "1", "--epochs", "1"]
# Seconds kept back from each step for Python's start and the final write.
MARGIN_S = 20


def run_step(name: str, command: list[str], out: Path, seconds: float, env: dict) -> dict:
    """Runs `command` with its output in OUT/<name>.log; SIGINT when `seconds` run out, then
    SIGKILL after MARGIN_S more. Returns its exit status, wall time and whether it was cut."""
    started = time.perf_counter()
    with (out / f"{name}.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            process.wait(timeout=max(seconds, 1))
            cut = False
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)  # training stops after its batch, resumable
            cut = True
            try:
                process.wait(timeout=MARGIN_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return {
        "exit_status": process.returncode,
        "wall_s": round(time.perf_counter() - started, 1),
        "stopped_by_budget": cut,
    }


def cell_step(backend: str, scale: str, out: Path, seconds: float) -> dict:
    result_file = out / f"cell_{backend}.json"
    command = [sys.executable, str(REPO / "benchmarks" / "bench_cell.py"), "--bidirectional"]
    command += [*CELL_SHAPES[scale], *CELL_STEPS[scale], "--json", str(result_file)]
    env = {**os.environ, "KERAS_BACKEND": backend}
    step = run_step(f"cell_{backend}", command, out, seconds, env)
    if result_file.exists():
        figures = json.loads(result_file.read_text())
        step["tokens_per_second"] = figures["tokens_per_second"]
        step["ratio_ours_over_keras"] = figures["ratio_ours_over_keras"]
        step["max_abs_prediction_difference"] = figures["max_abs_prediction_difference"]
    return step


def recipe_step(bundle: Path, scale: str, out: Path, seconds: float) -> dict:
    run_dir = out / "run"
    command = ["sh", str(bundle / "train.sh"), "--output-dir", str(run_dir), "--no-export"]
    if (run_dir / "state.json").exists():
        command.append("--resume")  # a check run again goes on where the last one stopped
    if scale == "tiny":
        command += TINY_RECIPE
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHON": sys.executable}
    step = run_step("recipe", command, out, seconds, env)
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        step["metrics"] = json.loads(metrics.read_text())
    state = run_dir / "state.json"
    if state.exists():
        committed = json.loads(state.read_text())
        step["epochs_done"] = committed.get("epochs_done")
        step["resumable"] = not committed.get("evaluated", False)
    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="a folder made by lstm_reviews.gpu_bundle")
    parser.add_argument("out", type=Path, help="where the figures and logs go")
    parser.add_argument("--budget-s", type=float, default=540, help="seconds for all steps")
    parser.add_argument("--scale", choices=("full", "tiny"), default="full")
    args = parser.parse_args(argv)
    if not (args.bundle / "train.sh").is_file():
        print(f"error: {args.bundle} has no train.sh: make it with lstm_reviews.gpu_bundle")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + args.budget_s
    figures = {"budget_s": args.budget_s, "scale": args.scale, "steps": {}}

    def left(share: float) -> float:
        return share * (deadline - time.perf_counter()) - MARGIN_S

    def save(step: str, result: dict) -> None:
        # After each step, atomically: a check cut short still leaves what it measured.
        figures["steps"][step] = result
        figures["wall_s"] = round(args.budget_s - (deadline - time.perf_counter()), 1)
        partial = args.out / "gpu_check.json.partial"
        partial.write_text(json.dumps(figures, indent=2))
        os.replace(partial, args.out / "gpu_check.json")

    # The recipe is the point of the session: the cell comparisons get a bounded share.
    save("cell_jax", cell_step("jax", args.scale, args.out, left(0.15)))
    if importlib.util.find_spec("torch"):
        save("cell_torch", cell_step("torch", args.scale, args.out, left(0.15)))
    else:
        save("cell_torch", {"skipped": "torch is not installed"})
    save("recipe", recipe_step(args.bundle, args.scale, args.out, left(1.0)))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
