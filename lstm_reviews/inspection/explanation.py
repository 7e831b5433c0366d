"""One review as the model read it: explain_review(run, text) -> Explanation, whose .table(),
.plot() and .html() are what `python -m lstm_reviews.explain` prints and writes (and
lstm_reviews.api's run.explain returns). The gates come from inspection.gates, each token's
share of the logit from inspection.ledger, the pictures from inspection.tables,
.ledger_figure, .ledger_page and .gate_views.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import numpy as np

from lstm_reviews.data.cache import write_text_atomically
from lstm_reviews.errors import UserError
from lstm_reviews.inspection import gate_views, ledger_figure, ledger_page, tables
from lstm_reviews.inspection.gates import (
    GATES,
    Inspector,
    build_inspector,
    direction_note,
    gate_trace,
)
from lstm_reviews.inspection.ledger import review_ledger
from lstm_reviews.rundir import Run


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
    trace: inspection.gates.gate_trace's dict; ledger: inspection.ledger.review_ledger's dict
        (every array).
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
        return {gate: self.trace[f"{gate}_mean"] for gate in GATES}

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
        lines.append(tables.format_trace(self.tokens, self.trace, self.ledger))
        lines.append(
            f"logit {self.logit:+.4f} = bias {self.bias:+.4f} + sum of A {self.shares.sum():+.4f}"
        )
        return "\n".join(lines)

    def plot(self, path) -> Path:
        """Writes the ledger's picture as a PNG at `path` (ledger_figure.plot_ledger); returns
        it."""
        ledger_figure.plot_ledger(self.tokens, self.ledger, path, title=self.title())
        return Path(path)

    def html(self, path) -> Path:
        """Writes the ledger as an HTML page at `path`, the gate view after it; returns it."""
        direction = "forward direction" if self.bidirectional else "the LSTM"
        gates = (
            f"<h2>Gate view ({html.escape(direction)})</h2>\n<p>{html.escape(self.note)}</p>\n"
            + gate_views.gate_sections(self.tokens, self.trace, level=3)
        )
        page = ledger_page.render_ledger_html(
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
        keys = [f"{gate}_{kind}" for gate in GATES for kind in ("mean", "open")]
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


def explain_review(run: Run, review: str, inspector: Inspector | None = None) -> Explanation:
    """One review's Explanation, read as the test set is read; UserError if no token is left.

    inspector: inspection.gates.build_inspector(run.model), to reuse over many reviews.
    """
    ids = run.encode([review])[0]
    if ids.size == 0:
        raise UserError(f"the text has no tokens after standardization: {review!r}")
    inspector = inspector or build_inspector(run.model)
    return Explanation(
        run_path=Path(run.path),
        tokens=[run.vocabulary[k] for k in ids],
        review_tokens=len(run.encode([review], truncate=False)[0]),
        units=inspector.units,
        bidirectional=inspector.bidirectional,
        note=direction_note(inspector),
        trace=gate_trace(inspector, ids),
        # The inspector's gate model, built once: the ledger reads the same gates.
        ledger=review_ledger(run.model, ids, inspector.gate_model),
    )
