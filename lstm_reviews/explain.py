"""`python -m lstm_reviews.explain`: a review's gates and ledger token by token, or a word report.

    python -m lstm_reviews.explain --model runs/imdb_lstm "An amazing film, give it a try."
    python -m lstm_reviews.explain --model runs/imdb_lstm "..." --plot ledger.png --html ledger.html
    python -m lstm_reviews.explain --model runs/imdb_lstm --words --limit 2000 --json words.json

From Python: explain_review(run, text) returns an Explanation (lstm_reviews.api: run.explain),
whose .table(), .plot() and .html() are what this command prints and writes. The maths is in
inspection.gates and inspection.ledger (each token's share of the logit), the
pictures and tables in inspection.render. --plot, --html and --json are checked before the
work: a folder, a missing or unwritable folder, or a name without .png/.html/.json is refused;
a write that fails still, after the work, is one line naming the file and its option. Exit
codes: 0 done, 1 a write failed for the machine (disk full, read-only file system), 2 a usage
error, an unusable run directory or a write refused (no permission), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import os
import sys
from pathlib import Path

import numpy as np

from lstm_reviews.config import DEFAULT_WORDS
from lstm_reviews.data.cache import write_text_atomically
from lstm_reviews.errors import UserError, run_command
from lstm_reviews.rundir import Run, load_run
from lstm_reviews.startup import deferred_import

# Imported on first use: --help and option errors answer without Keras or TensorFlow.
inspection = deferred_import("lstm_reviews.inspection.gates")
ledger = deferred_import("lstm_reviews.inspection.ledger")
render = deferred_import("lstm_reviews.inspection.render")


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


def _json_list(values) -> list:
    """An array as a JSON list, NaN (a censored half-life, a zero write) as null."""
    return [None if np.isnan(value) else float(value) for value in np.asarray(values, float)]


@dataclasses.dataclass
class Explanation:
    """One review as the model read it: its tokens, each token's share of the logit (the memory
    ledger, inspection.ledger) and the forward direction's gates (inspection.gates).

    tokens: the tokens read, in order (at most the last config.eval_max_length).
    shares: <float64>[tokens] each token's share A_t of the logit, both directions; they add
        up to logit - bias.
    gates: {"input_gate", "forget_gate", "output_gate"} -> <float32>[tokens], the gate's mean
        over units at each token (the forward direction).
    probability: P(positive) of the whole review; logit, bias: the verdict's.
    trace: inspection.gate_trace's dict; ledger: ledger.review_ledger's dict (every array).
    """

    run_path: Path
    tokens: list
    review_tokens: int  # the review's tokens before eval_max_length cut it
    units: int
    bidirectional: bool
    note: str  # which direction the gates are of
    trace: dict
    ledger: dict

    @property
    def shares(self) -> np.ndarray:
        return self.ledger["A"]

    @property
    def gates(self) -> dict:
        return {gate: self.trace[f"{gate}_mean"] for gate in inspection.GATES}

    @property
    def logit(self) -> float:
        return float(self.ledger["logit"])

    @property
    def bias(self) -> float:
        return float(self.ledger["bias"])

    @property
    def probability(self) -> float:
        return float(self.trace["probability"][-1])

    @property
    def truncated(self) -> bool:
        return len(self.tokens) < self.review_tokens

    def title(self) -> str:
        title = f"The verdict's ledger: {self.run_path.name}"
        if self.truncated:
            title += (
                f" (the last {len(self.tokens)} of the review's {self.review_tokens} tokens, "
                f"as in evaluation)"
            )
        return title

    def table(self) -> str:
        """The text `python -m lstm_reviews.explain --model RUN_DIR TEXT` prints."""
        lines = [f"model: {self.run_path} ({self.units} units)", self.note]
        if self.truncated:
            lines.append(
                f"the review has {self.review_tokens} tokens: kept the last {len(self.tokens)} "
                f"(eval_max_length), as in evaluation"
            )
        lines.append(
            "per token: input, forget, output = gate mean over units; |dc| = ||c_t - c_(t-1)||; "
            "P(pos) = the model's prediction if the review ended at this token; "
            "A = the token's share of the logit (A fwd, A bwd: per direction; the A add up to "
            "logit - bias); write = ||i_t * candidate_t|| over both directions; ret = the share "
            "of the write kept to the end of reading"
        )
        lines.append(render.format_trace(self.tokens, self.trace, self.ledger))
        lines.append(
            f"logit {self.logit:+.4f} = bias {self.bias:+.4f} + sum of A {self.shares.sum():+.4f}"
        )
        return "\n".join(lines)

    def plot(self, path) -> Path:
        """Writes the ledger's picture as a PNG at `path` (render.plot_ledger); returns it."""
        render.plot_ledger(self.tokens, self.ledger, path, title=self.title())
        return Path(path)

    def html(self, path) -> Path:
        """Writes the ledger as an HTML page at `path`, the gate view after it; returns it."""
        direction = "forward direction" if self.bidirectional else "the LSTM"
        gates = (
            f"<h2>Gate view ({html.escape(direction)})</h2>\n<p>{html.escape(self.note)}</p>\n"
            + render.gate_sections(self.tokens, self.trace, level=3)
        )
        page = render.render_ledger_html(
            self.tokens,
            self.ledger,
            title=f"The verdict's ledger: {self.run_path}",
            note=self.note,
            extra=gates,
        )
        write_text_atomically(Path(path), page)
        return Path(path)

    def to_json(self) -> dict:
        """What `explain --json` writes under "trace": lists and numbers only."""
        keys = [f"{gate}_{kind}" for gate in inspection.GATES for kind in ("mean", "open")]
        keys += ["cell_change", "write", "logit", "probability"]
        led = self.ledger
        shares = ["A", "read", "write", "retention"] + [
            f"{key}_{name}" for name in led["directions"] for key in ("A", "retention", "half_life")
        ]
        return {
            "tokens": self.tokens,
            **{key: self.trace[key].tolist() for key in keys},
            "ledger": {
                "logit": led["logit"],
                "bias": led["bias"],
                **{key: _json_list(led[key]) for key in shares},
            },
        }


def explain_review(
    run: Run, review: str, inspector: inspection.Inspector | None = None
) -> Explanation:
    """One review's Explanation, read as the test set is read; UserError if no token is left.

    inspector: inspection.build_inspector(run.model), to reuse over many reviews.
    """
    ids = run.encode([review])[0]
    if ids.size == 0:
        raise UserError(f"the text has no tokens after standardization: {review!r}")
    inspector = inspector or inspection.build_inspector(run.model)
    return Explanation(
        run_path=Path(run.path),
        tokens=[run.vocabulary[k] for k in ids],
        review_tokens=len(run.encode([review], truncate=False)[0]),
        units=inspector.units,
        bidirectional=inspector.bidirectional,
        note=inspection.direction_note(inspector),
        trace=inspection.gate_trace(inspector, ids),
        ledger=ledger.review_ledger(run.model, ids),
    )


def _trace_command(run: Run, inspector: inspection.Inspector, args) -> dict:
    explanation = explain_review(run, args.text, inspector)
    print(explanation.table())
    if args.plot:
        explanation.plot(args.plot)
        print(f"wrote {args.plot}")
    if args.html:
        explanation.html(args.html)
        print(f"wrote {args.html}")
    return explanation.to_json()


def _words_command(run: Run, inspector: inspection.Inspector, args) -> dict:
    reviews = inspection.load_test_reviews(run, args.data, args.limit)
    words = args.words or DEFAULT_WORDS
    ledger = inspection.ledger_word_report(run, reviews, words, batch_size=args.batch_size)
    print(f"model: {run.path}; word report over {len(reviews)} test reviews")
    print(
        "memory ledger, both directions: A = the token's exact share of the logit (what it "
        "wrote, as the verdict read it); read = sum_j |K_j w_j|; retain = share of the write "
        "still in the cell at the review's end; half-life in tokens (median; censored = not "
        "halved before the end)"
    )
    print(render.format_ledger_report(ledger))
    gates = inspection.word_report(run, inspector, reviews, words, batch_size=args.batch_size)
    print(
        f"\ngates, {inspection.direction_note(inspector)}: means when the word is read; "
        f"|dc| = ||c_t - c_(t-1)||, |i*g| = ||i_t * candidate_t||"
    )
    print(render.format_word_report(gates))
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
