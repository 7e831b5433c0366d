"""Pictures and tables of an inspection, for people: text, PNG (matplotlib) and HTML.

Inputs are what lstm_reviews.inspection returns; nothing here computes a model.
"""

from __future__ import annotations

import html

import numpy as np

from lstm_reviews.inspection import GATES


def format_trace(tokens: list, trace: dict) -> str:
    """The per-token table as text."""
    width = max(8, min(18, max(len(token) for token in tokens)))
    header = (
        f"{'t':>4}  {'token':<{width}}  {'input':>5} {'>0.5':>5}  {'forget':>6} {'>0.5':>5}  "
        f"{'output':>6} {'>0.5':>5}  {'|dc|':>6} {'|i*g|':>6}  {'P(pos)':>6}"
    )
    lines = [header]
    for t, token in enumerate(tokens):
        lines.append(
            f"{t + 1:>4}  {token[:width]:<{width}}  "
            f"{trace['input_gate_mean'][t]:5.2f} {trace['input_gate_open'][t]:5.0%}  "
            f"{trace['forget_gate_mean'][t]:6.2f} {trace['forget_gate_open'][t]:5.0%}  "
            f"{trace['output_gate_mean'][t]:6.2f} {trace['output_gate_open'][t]:5.0%}  "
            f"{trace['cell_change'][t]:6.3f} {trace['write'][t]:6.3f}  "
            f"{trace['probability'][t]:6.3f}"
        )
    return "\n".join(lines)


def plot_trace(tokens: list, trace: dict, path, title: str = "") -> None:
    """Writes a PNG heatmap: one row per token; columns: the three gates (mean over units,
    0..1), the cell-state change ‖c_t − c_{t−1}‖ and the running P(positive)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    rows = len(tokens)
    height = max(2.5, 0.22 * rows + 1.5)
    figure, axes = plt.subplots(
        1, 3, figsize=(7.5, height), sharey=True, gridspec_kw={"width_ratios": [3, 1, 1]}
    )
    gates = np.stack([trace[f"{gate}_mean"] for gate in GATES], axis=1)
    columns = [
        (gates, ["input", "forget", "output"], "viridis", 0.0, 1.0, "gate (mean over units)"),
        (
            trace["cell_change"][:, None],
            ["|c_t - c_t-1|"],
            "magma",
            0.0,
            float(trace["cell_change"].max()) or 1.0,
            "cell-state change",
        ),
        (trace["probability"][:, None], ["P(pos)"], "RdYlGn", 0.0, 1.0, "running prediction"),
    ]
    for axis, (values, labels, cmap, low, high, label) in zip(axes, columns):
        image = axis.imshow(
            values, aspect="auto", cmap=cmap, vmin=low, vmax=high, interpolation="nearest"
        )
        axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        figure.colorbar(image, ax=axis, label=label, shrink=min(1.0, 8.0 / height) if rows else 1.0)
    axes[0].set_yticks(range(rows), tokens, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _colour(value: float, low=(255, 255, 255), high=(255, 140, 0)) -> str:
    """value in [0, 1] -> an rgb() between low and high."""
    value = float(np.clip(value, 0.0, 1.0))
    return "rgb({},{},{})".format(*(round(a + (b - a) * value) for a, b in zip(low, high)))


def render_html(tokens: list, trace: dict, title: str = "", note: str = "") -> str:
    """A self-contained HTML page: the review three times, each token coloured by its input
    gate, its cell-state change and the running prediction; hover a token for all numbers."""
    peak = float(trace["cell_change"].max()) or 1.0
    views = [
        (
            "Input gate (mean over units): how much the cell lets in",
            lambda t: _colour(trace["input_gate_mean"][t]),
        ),
        (
            f"Cell-state change |c_t - c_t-1|, scaled to the review's largest ({peak:.3f})",
            lambda t: _colour(trace["cell_change"][t] / peak, high=(200, 60, 255)),
        ),
        (
            "Running prediction P(positive): red negative, green positive",
            lambda t: (
                _colour(2 * (0.5 - trace["probability"][t]), high=(240, 80, 80))
                if trace["probability"][t] < 0.5
                else _colour(2 * (trace["probability"][t] - 0.5), high=(80, 200, 80))
            ),
        ),
    ]
    sections = []
    for heading, colour in views:
        spans = []
        for t, token in enumerate(tokens):
            tip = (
                f"#{t + 1} {token}: input {trace['input_gate_mean'][t]:.3f}, "
                f"forget {trace['forget_gate_mean'][t]:.3f}, "
                f"output {trace['output_gate_mean'][t]:.3f}, "
                f"|dc| {trace['cell_change'][t]:.3f}, P(pos) {trace['probability'][t]:.3f}"
            )
            spans.append(
                f'<span style="background:{colour(t)}" title="{html.escape(tip)}">'
                f"{html.escape(token)}</span>"
            )
        sections.append(f'<h2>{html.escape(heading)}</h2>\n<p class="text">{" ".join(spans)}</p>')
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        ".text{line-height:2}.text span{padding:2px 1px;border-radius:3px}"
        "h2{font-size:1em}</style></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(note)}</p>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def format_word_report(report: dict) -> str:
    """The word table as text; the last row is every token (the baseline)."""
    lines = [
        f"{'word':<14} {'id':>6} {'count':>8} {'reviews':>8}  {'input':>6} {'>0.5':>5}  "
        f"{'forget':>6}  {'output':>6}  {'|dc|':>6} {'|i*g|':>6}"
    ]
    rows = [(row["word"], row) for row in report["words"]] + [(None, report["all_tokens"])]
    for word, row in rows:
        name = word if word is not None else "(all tokens)"
        if row["count"] == 0:
            reason = "not in vocabulary" if row["id"] is None else "never read"
            lines.append(f"{name:<14} {str(row['id']):>6} {0:>8} {0:>8}  ({reason})")
            continue
        lines.append(
            f"{name:<14} {'' if row['id'] is None else row['id']:>6} {row['count']:>8} "
            f"{row['reviews']:>8}  {row['input_gate_mean']:6.3f} {row['input_gate_open']:5.0%}  "
            f"{row['forget_gate_mean']:6.3f}  {row['output_gate_mean']:6.3f}  "
            f"{row['cell_change']:6.3f} {row['write']:6.3f}"
        )
    return "\n".join(lines)


def format_ledger_report(report: dict) -> str:
    """The ledger's word table as text, then the top words each way.

    report: inspection.ledger_word_report's dict.
    """

    def interval(row, key):
        low, high = row[f"{key}_ci"]
        return f"{row[key]:+8.4f} [{low:+.4f}, {high:+.4f}]"

    lines = [
        f"{'word':<14} {'count':>8}  {'mean A [95% CI]':<31} {'mean |A| [95% CI]':<31} "
        f"{'read':>7} {'retain':>7} {'half-life':>9} {'censored':>8}"
    ]
    rows = [(row["word"], row) for row in report["words"]] + [(None, report["all_tokens"])]
    for word, row in rows:
        name = word if word is not None else "(all tokens)"
        if not row["count"]:
            lines.append(f"{name:<14} {0:>8}  (not in the vocabulary or never read)")
            continue
        half_life = row["half_life_median"]
        lines.append(
            f"{name:<14} {row['count']:>8}  {interval(row, 'mean_A'):<31} "
            f"{interval(row, 'mean_abs_A'):<31} {row['mean_read']:7.4f} "
            f"{row['mean_retention']:7.3f} {'-' if half_life is None else f'{half_life:.0f}':>9} "
            f"{row['half_life_censored']:8.0%}"
        )
    for way in ("positive", "negative"):
        listed = report[f"top_{way}"]
        lines.append(
            f"\n{len(listed)} most {way} words by mean A (seen >= {report['min_count']} times):"
        )
        lines.append(", ".join(f"{row['word']} {row['mean_A']:+.3f}" for row in listed))
    return "\n".join(lines)
