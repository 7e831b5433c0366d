"""The inspection's text tables: one review token by token (inspection.gates.gate_trace, with
inspection.ledger.review_ledger's columns), and the word report's two tables
(inspection.word_report).
"""

from __future__ import annotations

import numpy as np

_SHORT = {"forward": "fwd", "backward": "bwd"}  # the directions in table headers


def format_trace(tokens: list, trace: dict, led: dict | None = None) -> str:
    """The per-token table as text.

    trace: inspection.gate_trace's dict. led: inspection.ledger.review_ledger's dict, or
    None. With it, the ledger's columns follow the running P(pos): A (both directions), A
    fwd and A bwd, write ‖w_t‖ and retention; the table then leaves out the shares of units
    > 0.5 and ‖i*g‖ (the forward write; "write" covers both directions) to stay narrow.
    """
    width = max(8, min(18, max(len(token) for token in tokens)))
    if led is None:
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
    shares = [("A", "A")] + [
        (f"A_{name}", f"A {_SHORT[name]}")
        for name in led["directions"]
        if len(led["directions"]) > 1
    ]
    header = (
        f"{'t':>4}  {'token':<{width}}  {'input':>5} {'forget':>6} {'output':>6} {'|dc|':>6}  "
        f"{'P(pos)':>6}  " + " ".join(f"{label:>7}" for _, label in shares) + f"  {'write':>6} "
        f"{'ret':>4}"
    )
    lines = [header]
    for t, token in enumerate(tokens):
        retention = led["retention"][t]
        lines.append(
            f"{t + 1:>4}  {token[:width]:<{width}}  "
            f"{trace['input_gate_mean'][t]:5.2f} {trace['forget_gate_mean'][t]:6.2f} "
            f"{trace['output_gate_mean'][t]:6.2f} {trace['cell_change'][t]:6.3f}  "
            f"{trace['probability'][t]:6.3f}  "
            + " ".join(f"{led[key][t]:+7.3f}" for key, _ in shares)
            + f"  {led['write'][t]:6.3f} "
            + ("   - " if np.isnan(retention) else f"{retention:4.2f}")
        )
    return "\n".join(lines)


def _named_rows(report: dict) -> list:
    """(name, row) of a word report's words, then "(all tokens)", the baseline row."""
    return [(row["word"], row) for row in report["words"]] + [
        ("(all tokens)", report["all_tokens"])
    ]


def format_word_report(report: dict) -> str:
    """The word table as text; the last row is every token (the baseline)."""
    lines = [
        f"{'word':<14} {'id':>6} {'count':>8} {'reviews':>8}  {'input':>6} {'>0.5':>5}  "
        f"{'forget':>6}  {'output':>6}  {'|dc|':>6} {'|i*g|':>6}"
    ]
    for name, row in _named_rows(report):
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
    for name, row in _named_rows(report):
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
