"""The ledger of one review as a self-contained HTML page: the review with each token on its
share A_t of the logit (inspection.ledger.review_ledger's dict), then a waterfall from the
bias to the logit; the gate view (inspection.gate_views) may follow.
"""

from __future__ import annotations

import html

import numpy as np

from lstm_reviews.inspection.ledger_view import (
    LEDGER_CMAP,
    ledger_level,
    ledger_scale,
    ledger_waterfall,
    sigmoid,
    sign_colours,
)


def _rgb(rgba) -> str:
    return "rgb({},{},{})".format(*(round(255 * channel) for channel in rgba[:3]))


def _half_life_text(led: dict, name: str, t: int) -> str:
    value = led[f"half_life_{name}"][t]
    if not np.isnan(value):
        return f"{int(value)} tokens"
    return "not halved before the end" if led[f"censored_{name}"][t] else "no write"


def _waterfall_html(steps: list, cmap) -> str:
    """The waterfall as rows of CSS bars on one shared logit axis."""
    low = min(0.0, *(min(step["start"], step["end"]) for step in steps))
    high = max(0.0, *(max(step["start"], step["end"]) for step in steps))
    span = (high - low) or 1.0
    colours = sign_colours([step["end"] - step["start"] for step in steps], cmap)
    zero = 100 * (0.0 - low) / span
    rows = []
    for step, colour in zip(steps, colours):
        start, end = sorted((step["start"], step["end"]))
        total = step["kind"] in ("bias", "logit")
        value = step["end"] if total else step["end"] - step["start"]
        rows.append(
            '<div class="wf-row">'
            f'<span class="wf-label">{html.escape(step["label"])}</span>'
            f'<span class="wf-track"><span class="wf-zero" style="left:{zero:.2f}%"></span>'
            f'<span class="wf-bar" style="left:{100 * (start - low) / span:.2f}%;'
            f"width:{100 * (end - start) / span:.2f}%;"
            f'background:{"#595959" if total else colour}"></span></span>'
            f'<span class="wf-value">{value:+.3f}</span></div>'
        )
    return "\n".join(rows)


def _token_spans(tokens: list, led: dict, cmap, scale: float) -> list:
    """One <span class="tok"> per token: on its share A_t's colour, underlined by its write
    (thickness) and retention (opacity), its numbers in the tooltip."""
    A = np.asarray(led["A"], dtype=np.float64)
    peak = float(np.max(led["write"])) or 1.0
    names = list(led["directions"])
    spans = []
    for t, token in enumerate(tokens):
        level = float(ledger_level(A[t], scale))
        ink = "#fff" if abs(level - 0.5) > 0.33 else "#000"
        retention = led["retention"][t]
        opacity = 0.0 if np.isnan(retention) else float(retention)
        thickness = 1 + round(4 * float(led["write"][t]) / peak)
        parts = ", ".join(f"{name} {led[f'A_{name}'][t]:+.4f}" for name in names)
        tip = (
            f"#{t + 1} {token}: A {A[t]:+.4f} ({parts}); write {led['write'][t]:.3f}; "
            f"read {led['read'][t]:.3f}; retention "
            + ("-" if np.isnan(retention) else f"{retention:.2f}")
            + "; half-life "
            + ", ".join(f"{name} {_half_life_text(led, name, t)}" for name in names)
        )
        spans.append(
            f'<span class="tok" style="background:{_rgb(cmap(level))};color:{ink};'
            f'border-bottom:{thickness}px solid rgba(0,0,0,{opacity:.2f})" '
            f'title="{html.escape(tip)}">{html.escape(token)}</span>'
        )
    return spans


def render_ledger_html(
    tokens: list, led: dict, title: str = "", note: str = "", extra: str = ""
) -> str:
    """A self-contained HTML page of one review's ledger.

    tokens: <str>[time]; led: inspection.ledger.review_ledger's dict. The review with each
    token (one <span class="tok"> each) on its share A_t of the logit (the PNG's diverging
    scale, with a legend), underlined by its write (thickness: ‖w_t‖ over the review's
    largest; opacity: retention); hover a token for A (forward and backward), write, read,
    retention and half-lives. Then a waterfall from the bias to the logit over the 12 tokens
    with the largest |A| and all the others. extra: HTML appended as it is (trusted, e.g.
    gate_sections); everything else is escaped here.
    """
    import matplotlib  # colours only: no figure, no backend

    cmap = matplotlib.colormaps[LEDGER_CMAP]
    A = np.asarray(led["A"], dtype=np.float64)
    scale = ledger_scale(A)
    spans = _token_spans(tokens, led, cmap, scale)
    gradient = ",".join(_rgb(cmap(k / 10)) for k in range(11))
    steps = ledger_waterfall(tokens, led, 12)
    verdict = (
        f"logit {led['logit']:+.3f} → P(positive) = {sigmoid(led['logit']):.3f}; "
        f"bias {led['bias']:+.3f}; Σ A = {A.sum():+.4f} = logit − bias; {len(tokens)} tokens"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>\n<style>"
        "body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em}"
        ".text{line-height:2.3}.text span{padding:2px 2px;border-radius:3px}"
        ".legend{display:flex;align-items:center;gap:.6em;font-size:.9em}"
        ".scale{width:18em;height:1em;border:1px solid #999;"
        f"background:linear-gradient(to right,{gradient})}}"
        ".wf-row{display:flex;align-items:center;font-size:.9em;margin:2px 0}"
        ".wf-label{width:14em;text-align:right;padding-right:.6em;white-space:nowrap;"
        "overflow:hidden;text-overflow:ellipsis}"
        ".wf-track{position:relative;flex:1;height:1.1em;background:#f4f4f4}"
        ".wf-bar{position:absolute;top:0;bottom:0;min-width:1px}"
        ".wf-zero{position:absolute;top:-2px;bottom:-2px;border-left:1px solid #000}"
        ".wf-value{width:5em;padding-left:.6em;font-family:monospace}"
        "h2{font-size:1.1em;margin-top:2em}h3{font-size:1em}</style></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(note)}</p>\n"
        f"<p><b>{html.escape(verdict)}</b></p>\n"
        "<h2>The review, each token on its share A_t of the logit</h2>\n"
        '<div class="legend"><span>A_t</span><span>'
        f"{-scale:+.3f} (towards negative)</span>"
        f'<span class="scale"></span><span>{scale:+.3f} (towards positive)</span></div>\n'
        "<p>A_t is what the token's write into the LSTM cell adds to the logit, given how "
        "the network read it (both directions); the shares add up to logit − bias. "
        f"Colours are on a square-root scale: halfway to either end is a quarter of the "
        f"largest share ({scale / 4:.3f}), so small shares still show their sign. "
        "Underline: its thickness is the write ‖w_t‖ (relative to this review's largest), "
        "its darkness the retention (the share of the write still in the cell when its "
        "direction stops reading). Hover a token for its numbers.</p>\n"
        f'<p class="text">{" ".join(spans)}</p>\n'
        "<h2>From the bias to the logit: the 12 tokens with the largest |A_t| and the "
        "rest</h2>\n" + _waterfall_html(steps, cmap) + "\n" + extra + "\n</body></html>\n"
    )
