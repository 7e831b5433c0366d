"""A run of several processes on this machine, as on several hosts: `--distribute data` across
processes joined by jax.distributed, each with its own virtual CPU devices.

    python benchmarks/local_processes.py [--processes 2] [--devices 1] [--port 0] \
        -- <python -m lstm_reviews.train options, with --distribute data>

Process k gets the three variables of Keras' launch interface (docs/gpu.md, "Scale-out"):
KERAS_DISTRIBUTION_JOB_ADDRESSES=localhost:<port> (process 0 is the coordinator),
KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID=k, and
XLA_FLAGS=--xla_force_host_platform_device_count=<devices>. On several hosts the same
command runs on each, with the coordinator's address instead of localhost. Process 0's output
is shown as it comes; the others' is kept in files and shown only if they fail. Exits with the
first non-zero exit status, else 0.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port free on localhost now (the coordinator binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def process_environment(index: int, count: int, devices: int, port: int) -> dict:
    """The environment of process `index` of `count`: Keras' three variables, JAX on the CPU."""
    return {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{port}",
        "KERAS_DISTRIBUTION_NUM_PROCESSES": str(count),
        "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
    }


def launch(train_args: list[str], processes: int, devices: int, port: int) -> int:
    """Runs `python -m lstm_reviews.train train_args` as `processes` processes; the exit
    status of the first that failed, else 0."""
    port = port or free_port()
    command = [sys.executable, "-m", "lstm_reviews.train", *train_args]
    with tempfile.TemporaryDirectory(prefix="local-processes-") as logs:
        started = []
        for index in range(processes):
            output = None if index == 0 else open(Path(logs) / f"process-{index}.log", "w")
            environment = process_environment(index, processes, devices, port)
            process = subprocess.Popen(
                command,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
            )
            started.append((process, output))
        statuses = [process.wait() for process, _ in started]
        for index, ((_, output), status) in enumerate(zip(started, statuses)):
            if output is not None:
                output.close()
                if status:
                    log = (Path(logs) / f"process-{index}.log").read_text()
                    print(f"--- process {index} (exit {status}):\n{log[-5000:]}", file=sys.stderr)
    return next((status for status in statuses if status), 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices", type=int, default=1, help="virtual CPU devices a process")
    parser.add_argument("--port", type=int, default=0, help="the coordinator's (0: a free one)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    return launch(train_args, args.processes, args.devices, args.port)


if __name__ == "__main__":
    sys.exit(main())
