"""`python -m lstm_reviews.explain`: a review's gates and ledger token by token, or a word report.

    python -m lstm_reviews.explain --model runs/imdb_lstm "An amazing film, give it a try."
    python -m lstm_reviews.explain --model runs/imdb_lstm "..." --plot ledger.png --html ledger.html
    python -m lstm_reviews.explain --model runs/imdb_lstm --words --limit 2000 --json words.json

This module is the command only. From Python: inspection.explanation.explain_review(run, text)
returns an Explanation (lstm_reviews.api: run.explain), whose .table(), .plot() and .html()
are what this command prints and writes; the word report is inspection.word_report's (one pass
over the reviews), its tables inspection.tables'. --plot, --html and --json are checked before
the work: a folder, a missing or unwritable folder, or a name without .png/.html/.json is
refused; a write that fails still, after the work, is one line naming the file and its option. Exit
codes: 0 done, 1 a write failed for the machine (disk full, read-only file system), 2 a usage
error, an unusable run directory or a write refused (no permission), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lstm_reviews.config import DEFAULT_WORDS
from lstm_reviews.data.cache import write_text_atomically
from lstm_reviews.errors import run_command
from lstm_reviews.rundir import Run, load_run
from lstm_reviews.startup import deferred_import

# Imported on first use: --help and option errors answer without Keras or TensorFlow.
explanation = deferred_import("lstm_reviews.inspection.explanation")
inspection = deferred_import("lstm_reviews.inspection.gates")
tables = deferred_import("lstm_reviews.inspection.tables")
word_report = deferred_import("lstm_reviews.inspection.word_report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_reviews.explain",
        description="Show the LSTM's gates, cell-state change, running prediction and each "
        "token's share of the logit for a review, or gate statistics for chosen words over "
        "the test set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("text", nargs="?", help="review text to trace")
    parser.add_argument(
        "--model",
        required=True,
        metavar="RUN_DIR",
        help="training run directory (model.keras, vocabulary.txt, config.json)",
    )
    parser.add_argument(
        "--plot",
        metavar="PNG",
        help="write the review's ledger here: each token's share of the logit, its write and "
        "retention, when the verdict reads it, and a waterfall from the bias to the logit",
    )
    parser.add_argument(
        "--html",
        metavar="HTML",
        help="write the ledger as an HTML page here (tokens coloured by their share of the "
        "logit), followed by the gate view",
    )
    parser.add_argument(
        "--words",
        nargs="*",
        metavar="WORD",
        help="word report over the test set (put a TEXT before this option); "
        "no words: " + " ".join(DEFAULT_WORDS),
    )
    parser.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="word report over N test reviews drawn at random (seeded); default all",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="aclImdb dir or aclImdb_v1.tar.gz for the word report (default: the run's config)",
    )
    parser.add_argument("--json", metavar="OUT", help="also save the results as JSON")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        metavar="N",
        help="reviews per batch in the word report",
    )
    return parser


def _trace_command(run: Run, inspector, args) -> dict:
    explained = explanation.explain_review(run, args.text, inspector)
    print(explained.table())
    if args.plot:
        explained.plot(args.plot)
        print(f"wrote {args.plot}")
    if args.html:
        explained.html(args.html)
        print(f"wrote {args.html}")
    return explained.to_json()


def _words_command(run: Run, inspector, args) -> dict:
    reviews = word_report.load_test_reviews(run, args.data, args.limit)
    words = args.words or DEFAULT_WORDS
    # One pass over the reviews feeds both reports.
    reports = word_report.word_reports(run, inspector, reviews, words, batch_size=args.batch_size)
    ledger, gates = reports["ledger"], reports["gates"]
    print(f"model: {run.path}; word report over {len(reviews)} test reviews")
    print(
        "memory ledger, both directions: A = the token's exact share of the logit (what it "
        "wrote, as the verdict read it); read = sum_j |K_j w_j|; retain = share of the write "
        "still in the cell at the review's end; half-life in tokens (median; censored = not "
        "halved before the end)"
    )
    print(tables.format_ledger_report(ledger))
    print(
        f"\ngates, {inspection.direction_note(inspector)}: means when the word is read; "
        f"|dc| = ||c_t - c_(t-1)||, |i*g| = ||i_t * candidate_t||"
    )
    print(tables.format_word_report(gates))
    return {"reviews": len(reviews), "ledger": ledger, **gates}


def _check_output_paths(parser, args) -> None:
    """Output paths are checked before the work, so a long report is never lost to a typo."""
    for flag, name, suffix in (
        ("--plot", args.plot, ".png"),
        ("--html", args.html, ".html"),
        ("--json", args.json, ".json"),
    ):
        if name is None:
            continue
        path = Path(name)  # drops a trailing slash: look at the name as typed first
        if name.endswith(("/", os.sep)) or path.is_dir():
            parser.error(f"{flag} {name}: is a folder; expected a file name ending in {suffix}")
        # Path(".png").suffix is "": "DIR/.png" is refused here too, as a name without a stem.
        if path.suffix.lower() != suffix:
            parser.error(f"{flag} {name}: expected a file name ending in {suffix}")
        folder = path.parent
        if not folder.is_dir():
            problem = "is not a folder" if folder.exists() else "does not exist"
            parser.error(f"{flag} {name}: the folder {folder} {problem}")
        # --html and --json write a temporary file in the folder and rename it over the file.
        if not os.access(folder, os.W_OK | os.X_OK):
            parser.error(f"{flag} {name}: the folder {folder} is not writable")
        if path.exists() and not os.access(path, os.W_OK):
            parser.error(f"{flag} {name}: the file exists and is not writable")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.text is None and args.words is None:
        parser.error("give a TEXT to trace, or --words for the word report")
    if args.text is None and (args.plot or args.html):
        parser.error("--plot and --html draw a TEXT's trace: give the text too")
    if args.text is not None and not args.text.strip():
        parser.error("the text is empty: give a review to trace")
    if args.limit is not None and args.limit <= 0:
        parser.error(f"--limit must be positive, got {args.limit}")
    if args.batch_size <= 0:
        parser.error(f"--batch-size must be positive, got {args.batch_size}")
    _check_output_paths(parser, args)

    def body():
        run = load_run(args.model)
        inspector = inspection.build_inspector(run.model)
        results = {"model": str(run.path), "note": inspection.direction_note(inspector)}
        if args.text is not None:
            results["trace"] = _trace_command(run, inspector, args)
        if args.words is not None:
            results["word_report"] = _words_command(run, inspector, args)
        if args.json:
            write_text_atomically(Path(args.json), json.dumps(results, indent=2) + "\n")
            print(f"wrote {args.json}")

    return run_command(
        body, outputs={"--plot": args.plot, "--html": args.html, "--json": args.json}
    )


if __name__ == "__main__":
    sys.exit(main())
