"""The ledger of one review as a PNG (matplotlib): inspection.ledger.review_ledger's dict
drawn as a page of coloured tokens, tracks over token position, when the verdict reads the
top tokens' writes, and a waterfall from the bias to the logit.
"""

from __future__ import annotations

import numpy as np

from lstm_reviews.inspection.ledger_panels import (
    MONO,
    draw_page,
    draw_waterfall,
    label_tops,
    wrap,
)
from lstm_reviews.inspection.ledger_view import (
    LEDGER_CMAP,
    ledger_scale,
    ledger_waterfall,
    sigmoid,
    sign_colours,
    top_tokens,
)

_KEY = (
    "How to read this\n\n"
    "A_t: what token t's write into the LSTM cell adds to the logit,\n"
    "given how the network read it (both directions): Σ_t A_t = logit − bias.\n"
    "It is not the effect of deleting the token (later gates would change).\n\n"
    "write ‖w_t‖ = ‖i_t ⊙ c̃_t‖: how much the token put into the cell.\n"
    "retention: the share of that write still in the cell when its\n"
    "direction stops reading (1: nothing forgotten).\n\n"
    "reading rows: the verdict reads a write where a unit's max pooling\n"
    "peaks (steps in the line) and, for mean pooling, a little at every\n"
    "step (slopes)."
)
_KEY_BACKWARD = "\nThe backward direction reads token t at positions ≤ t."


def plot_ledger(tokens: list, led: dict, path, title: str = "", top: int = 12) -> None:
    """Writes one PNG of a review's ledger (led: inspection.ledger.review_ledger's dict).

    tokens: <str>[time], the tokens as the model read them. Panels, top to bottom: (a) the
    review as a page, each token on its share A_t of the logit (diverging colours, a signed
    square-root scale centred at 0; the `top` tokens by |A| framed); (b) tracks over token
    position: A, the write ‖w_t‖ and its retention; (d) when the verdict reads the writes of
    the top 8 tokens; (c) a waterfall from the bias to the logit over the `top` tokens and
    all the others, and a key. The figure grows in height with the review (the page wraps
    at 80 characters, 110 past 40 tokens); its width stays 15 inches.
    """
    import matplotlib

    # Tokens are text, never TeX: "$5" must not start mathtext.
    with matplotlib.rc_context({"text.parse_math": False}):
        _ledger_figure(tokens, led, title, top).savefig(path, dpi=100)


class _Layout:
    """plot_ledger's figure, planned in inches before drawing so that it is as tall as its
    panels, and what every panel reads: the ledger, its colour scale, the chosen tokens."""

    width, left, right = 15.0, 2.0, 0.6
    row_h = 0.8  # one row of the reading panel

    def __init__(self, tokens, led, top):
        import matplotlib
        from matplotlib import colors

        self.tokens, self.led = tokens, led
        self.A = np.asarray(led["A"], dtype=np.float64)
        self.time = len(self.A)
        if len(tokens) != self.time or self.time == 0:
            raise ValueError(
                f"{len(tokens)} tokens for a ledger of {self.time}: need the same, >= 1"
            )
        self.steps = ledger_waterfall(tokens, led, top)
        self.chosen = top_tokens(led, top)
        self.rows = top_tokens(led, min(8, top))  # the reading panel's tokens
        self.cmap = matplotlib.colormaps[LEDGER_CMAP]
        self.scale = ledger_scale(self.A)
        # ledger_level's signed square root, as a Normalize for the page and its colour bar.
        self.norm = colors.FuncNorm(
            (lambda a: np.sign(a) * np.sqrt(np.abs(a)), lambda b: np.sign(b) * b * b),
            -self.scale,
            self.scale,
        )
        self.words = self.time <= 40  # few enough tokens to write them under the tracks
        self.x = np.arange(self.time)
        self.bar_width = 0.8 if self.time <= 60 else 1.0
        self._plan()

    def _plan(self) -> None:
        from matplotlib.figure import Figure  # not pyplot: the caller's backend stays as it was
        from matplotlib.font_manager import FontProperties
        from matplotlib.textpath import TextPath

        self.inner = self.width - self.left - self.right
        self.chars = 110 if self.time > 40 else 80
        mono = TextPath((0, 0), "0" * 40, size=1, prop=FontProperties(family=MONO))
        self.font = min(15.0, self.inner * 72 / self.chars / (mono.get_extents().width / 40))
        lines = wrap(self.tokens, self.chars)[-1][0] + 1
        words = self.words
        self.plan = {  # name: (gap above, height)
            "head": (0.15, 0.75),
            "page": (0.1, lines * 1.75 * self.font / 72),
            "colourbar": (0.35, 0.16),
            "A": (0.9, 1.6),
            "write": (0.12, 1.1),
            "retention": (0.12, 1.1),
            "reading": (1.2 if words else 0.85, self.row_h * len(self.rows)),
            "waterfall": (1.35 if words else 1.1, 0.3 * len(self.steps) + 0.3),
        }
        self.total_h = sum(gap + height for gap, height in self.plan.values()) + 0.65
        self.figure = Figure(figsize=(self.width, self.total_h))
        self.tops, cursor = {}, self.total_h
        for name, (gap, height) in self.plan.items():
            self.tops[name] = cursor - gap
            cursor -= gap + height

    def axes(self, name, x0=None, w=None, offset=0.0, height=None):
        """New axes in the panel `name`: x0, w in inches (default: the tracks' column)."""
        x0 = self.left if x0 is None else x0
        w = self.inner if w is None else w
        height = self.plan[name][1] if height is None else height
        bottom = self.tops[name] - offset - height
        return self.figure.add_axes(
            (x0 / self.width, bottom / self.total_h, w / self.width, height / self.total_h)
        )


def _draw_head(layout, title) -> None:
    led, A = layout.led, layout.A
    head = layout.axes("head", x0=0.3, w=layout.width - 0.6)
    head.axis("off")
    head.text(0, 0.8, title or "The verdict's ledger", fontsize=14, weight="bold", va="center")
    head.text(
        0,
        0.2,
        f"logit {led['logit']:+.3f}  →  P(positive) = {sigmoid(led['logit']):.3f}      "
        f"bias {led['bias']:+.3f}      Σ_t A_t = {A.sum():+.4f} = logit − bias      "
        f"{layout.time} tokens",
        fontsize=11,
        va="center",
    )


def _draw_page_panel(layout) -> None:
    """(a) the page and its colour bar."""
    import matplotlib

    lay = layout
    framed = set(lay.chosen.tolist())
    draw_page(lay.axes("page"), lay.tokens, lay.A, lay.norm, lay.cmap, lay.chars, lay.font, framed)
    bar = lay.figure.colorbar(
        matplotlib.cm.ScalarMappable(norm=lay.norm, cmap=lay.cmap),
        cax=lay.axes("colourbar", x0=lay.left + lay.inner * 0.25, w=lay.inner * 0.5),
        orientation="horizontal",
        ticks=[sign * lay.scale * share for sign in (-1, 1) for share in (1, 1 / 4, 1 / 16)] + [0],
        format=matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:+.2g}" if value else "0"),
    )
    bar.set_label(
        "share of the logit A_t   (square-root scale; red: towards negative, blue: towards "
        f"positive; framed: the top {len(lay.chosen)} by |A|)",
        fontsize=10,
    )


def _draw_tracks(layout) -> tuple:
    """(b) A, the write and its retention over token position; returns their three axes."""
    lay, A, x = layout, layout.A, layout.x
    a_axis = lay.axes("A")
    a_axis.bar(x, A, width=lay.bar_width, color=sign_colours(A, lay.cmap))
    a_axis.axhline(0, color="black", linewidth=0.6)
    a_axis.set_ylabel("A_t\n(share of\nthe logit)", fontsize=9)
    label_tops(a_axis, lay.tokens, A, lay.chosen, lay.inner * 72, lay.plan["A"][1] * 72, lay.cmap)
    high = max(float(np.abs(A).max()), 1e-12)
    a_axis.set_ylim(min(float(A.min()), 0.0) - 0.05 * high, max(float(A.max()), 0.0) + 0.05 * high)
    w_axis = lay.axes("write")
    w_axis.bar(x, lay.led["write"], width=lay.bar_width, color="0.45")
    w_axis.set_ylabel("write ‖w_t‖\n(both\ndirections)", fontsize=9)
    r_axis = lay.axes("retention")
    r_axis.plot(
        x,
        lay.led["retention"],
        color="tab:green",
        linewidth=1.2,
        marker="o" if lay.words else None,
        ms=3,
    )
    r_axis.set_ylim(-0.03, 1.03)
    r_axis.set_ylabel("retention\n(kept to the\nend of reading)", fontsize=9)
    r_axis.grid(axis="y", linewidth=0.4, alpha=0.5)
    return a_axis, w_axis, r_axis


def _draw_reading(layout) -> list:
    """(d) When the verdict reads the top tokens' writes; returns one axes per token.

    Running totals rather than a heatmap: max pooling reads a write at the few steps where a
    unit peaks, one pixel wide in a 600-column heatmap; as a running total those reads are
    jumps one can see and compare between rows, and every line ends at 1 (all of A_t).
    Bars: the single steps.
    """
    lay, A, rows = layout, layout.A, layout.rows
    reading = np.asarray(lay.led["reading"], dtype=np.float64)
    shares = reading[rows] / np.where(A[rows] == 0, 1.0, A[rows])[:, None]
    running = np.cumsum(shares, axis=1)
    low = min(0.0, float(running.min()), float(shares.min()))
    high = max(1.0, float(running.max()), float(shares.max()))
    margin = 0.1 * (high - low)
    reading_axes = []
    for k, t in enumerate(rows):
        axis = lay.axes("reading", offset=k * lay.row_h, height=lay.row_h * 0.84)
        # Bars coloured by the step's sign on the logit, as everywhere in the figure.
        axis.bar(lay.x, shares[k], width=lay.bar_width, color=sign_colours(reading[t], lay.cmap))
        axis.plot(lay.x, running[k], color="black", linewidth=1.1)
        axis.axvline(t, color="darkorange", linewidth=1.4, linestyle="--")
        axis.axhline(0, color="0.6", linewidth=0.5)
        axis.axhline(1, color="0.6", linewidth=0.5, linestyle=":")
        axis.set_ylim(low - margin, high + margin)
        _label_reading_row(lay, axis, t, shares[k])
        reading_axes.append(axis)
    reading_axes[0].set_title(
        f"When the verdict reads the writes of the top {len(rows)} tokens: share of A_t read "
        "at each step τ (bars) and up to τ (line, ends at 1); dashed: the token's position",
        fontsize=10,
        loc="left",
    )
    return reading_axes


def _label_reading_row(layout, axis, t, shares) -> None:
    """One reading row's ticks and its token; past 40 tokens, the steps that read most."""
    tokens = layout.tokens
    axis.yaxis.tick_right()
    axis.set_yticks([0, 1])
    axis.tick_params(labelsize=7)
    axis.text(
        -0.01,
        0.5,
        f"#{t + 1} {tokens[t]}\nA = {layout.A[t]:+.3f}",
        transform=axis.transAxes,
        ha="right",
        va="center",
        fontsize=9,
    )
    if not layout.words:
        # 600 positions squeeze the steps into slivers: name the steps that read most.
        strongest = np.argsort(-np.abs(shares), kind="stable")[:3]
        where = ", ".join(f"#{s + 1} {tokens[s]} {shares[s]:+.0%}" for s in strongest)
        right = t < layout.time / 2  # the side away from the token's own step
        axis.text(
            0.99 if right else 0.01,
            0.5,
            f"read most at {where}",
            transform=axis.transAxes,
            ha="right" if right else "left",
            va="center",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )


def _align_tracks(layout, track_axes, reading_axes) -> None:
    """One x axis for the tracks and the reading rows; the words under the bottom ones."""
    words = layout.words
    tracks = list(track_axes) + reading_axes
    bottoms = (track_axes[-1], reading_axes[-1])
    for axis in tracks:
        axis.set_xlim(-0.6, layout.time - 0.4)
        axis.spines["top"].set_visible(False)
        axis.spines["right"].set_visible(axis in reading_axes)  # their ticks are on the right
        if words:
            axis.set_xticks(
                layout.x,
                layout.tokens if axis in bottoms else [],
                rotation=60,
                ha="right",
                fontsize=8,
            )
        elif axis not in bottoms:
            axis.tick_params(labelbottom=False)
    for axis in bottoms:
        axis.set_xlabel("token position" if not words else "", fontsize=9)


def _draw_waterfall_panel(layout) -> None:
    """(c) the waterfall, and the key beside it."""
    lay, led = layout, layout.led
    draw_waterfall(
        lay.axes("waterfall", w=lay.inner * 0.55), lay.steps, float(led["logit"]), lay.cmap
    )
    key = lay.axes("waterfall", x0=lay.left + lay.inner * 0.62, w=lay.inner * 0.38)
    key.axis("off")
    key.text(
        0,
        1,
        _KEY + (_KEY_BACKWARD if "backward" in led["directions"] else ""),
        fontsize=9,
        va="top",
    )


def _ledger_figure(tokens, led, title, top):
    """plot_ledger's figure, its panels drawn top to bottom."""
    layout = _Layout(tokens, led, top)
    _draw_head(layout, title)
    _draw_page_panel(layout)
    track_axes = _draw_tracks(layout)
    _align_tracks(layout, track_axes, _draw_reading(layout))
    _draw_waterfall_panel(layout)
    return layout.figure
