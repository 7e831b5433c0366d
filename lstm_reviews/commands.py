"""The `lstm-reviews` console script: one command, a subcommand per module's CLI.

    lstm-reviews train ...       = python -m lstm_reviews.train ...
    lstm-reviews export ...      = python -m lstm_reviews.export ...
    lstm-reviews predict ...     = python -m lstm_reviews.predict ...
    lstm-reviews explain ...     = python -m lstm_reviews.explain ...
    lstm-reviews gpu-bundle ...  = python -m lstm_reviews.gpu_bundle ...
    lstm-reviews score ...       = python -m lstm_reviews.score ...  (pip install -e .[beam])

The rest of the command line goes to the module's `main` unchanged. Only the chosen module
is imported, and it loads Keras when it needs it (lstm_reviews.startup): `lstm-reviews
--help` lists the commands at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lstm_reviews.errors import EXIT_USER_ERROR

# name: (module, what it does)
COMMANDS = {
    "train": ("lstm_reviews.train", "train the sentiment LSTM into a run directory"),
    "export": ("lstm_reviews.export", "export a run's model as a SavedModel that takes text"),
    "predict": ("lstm_reviews.predict", "score reviews with an exported SavedModel"),
    "explain": ("lstm_reviews.explain", "show the LSTM's gates and memory ledger on a review"),
    "gpu-bundle": (
        "lstm_reviews.gpu_bundle",
        "make the caches for training under JAX on a machine without TensorFlow",
    ),
    "score": ("lstm_reviews.score", "score files of reviews with Apache Beam (the [beam] extra)"),
}


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<12}{summary}" for name, (_, summary) in COMMANDS.items())
    return argparse.ArgumentParser(
        prog="lstm-reviews",
        usage="lstm-reviews COMMAND [options]  (lstm-reviews COMMAND --help: its options)",
        description="An LSTM written out gate by gate, trained on IMDB review sentiment.",
        epilog=f"commands:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv=None) -> int:
    """Runs the subcommand argv[0] names with the rest of argv; its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        if not argv:
            parser.print_usage(sys.stderr)
            print(f"lstm-reviews: error: name a command: {', '.join(COMMANDS)}", file=sys.stderr)
            return EXIT_USER_ERROR
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(
            f"lstm-reviews: error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
