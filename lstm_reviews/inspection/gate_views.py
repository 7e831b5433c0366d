"""The gate view as HTML: the review three times, each token coloured by its input gate, its
cell-state change and the running prediction (inspection.gates.gate_trace's dict).
"""

from __future__ import annotations

import html

import numpy as np


def _colour(value: float, low=(255, 255, 255), high=(255, 140, 0)) -> str:
    """value in [0, 1] -> an rgb() between low and high."""
    value = float(np.clip(value, 0.0, 1.0))
    return "rgb({},{},{})".format(*(round(a + (b - a) * value) for a, b in zip(low, high)))


def gate_sections(tokens: list, trace: dict, level: int = 2) -> str:
    """HTML sections (no page around them): the review three times, each token coloured by
    its input gate, its cell-state change and the running prediction; hover for all numbers.
    level: the headings' level (<h2> by default)."""
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
        sections.append(
            f'<h{level}>{html.escape(heading)}</h{level}>\n<p class="text">{" ".join(spans)}</p>'
        )
    return "\n".join(sections)


def render_html(tokens: list, trace: dict, title: str = "", note: str = "") -> str:
    """A self-contained HTML page: the review three times, each token coloured by its input
    gate, its cell-state change and the running prediction; hover a token for all numbers."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        ".text{line-height:2}.text span{padding:2px 1px;border-radius:3px}"
        "h2{font-size:1em}</style></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(note)}</p>\n"
        + gate_sections(tokens, trace)
        + "\n</body></html>\n"
    )
