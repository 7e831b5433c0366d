"""The drawing steps of the ledger's figure (inspection.ledger_figure) that know nothing of
its layout: the page of coloured tokens, the words above the A track, the waterfall.
"""

from __future__ import annotations

import numpy as np

from lstm_reviews.inspection.ledger_view import sign_colours

MONO = "DejaVu Sans Mono"  # matplotlib ships it: the page's character grid is exact


def wrap(tokens: list, width: int) -> list:
    """(line, column) of each token on a page `width` characters wide, one space apart."""
    places, line, column = [], 0, 0
    for token in tokens:
        size = min(len(token), width)
        if column and column + 1 + size > width:
            line, column = line + 1, 0
        elif column:
            column += 1
        places.append((line, column))
        column += size
    return places


def spread_labels(centres, widths, low: float, high: float) -> np.ndarray:
    """Label centres as near `centres` (sorted) as they can be without overlapping, inside
    [low, high]: packed runs of labels sit at their members' mean wish (least squares)."""
    widths = np.asarray(widths, dtype=np.float64)
    offsets = np.concatenate([[0.0], np.cumsum(widths)[:-1]])  # left edges in one packed run
    wish = np.asarray(centres, dtype=np.float64) - widths / 2 - offsets
    blocks = []  # [first, last, left edge of the run's first label - its offset]
    for k in range(len(widths)):
        blocks.append([k, k, wish[k]])
        # A run starting left of where the previous run ends merges with it.
        while len(blocks) > 1 and blocks[-1][2] < blocks[-2][2]:
            first, last, _ = blocks.pop()
            blocks[-1][1] = last
            blocks[-1][2] = float(wish[blocks[-1][0] : last + 1].mean())
    lefts = np.empty(len(widths))
    for first, last, base in blocks:
        lefts[first : last + 1] = base + offsets[first : last + 1]
    # Inside the axis: shift everything in from the edges, at the cost of some wishes.
    lefts = np.maximum(lefts, low + offsets)
    lefts = np.minimum(lefts, high - (offsets[-1] + widths[-1] - offsets))
    return lefts + widths / 2


def draw_page(axis, tokens, A, norm, cmap, chars, font, framed) -> None:
    """(a) the review as a page: monospaced, wrapped at `chars`, each token on its A colour."""
    from matplotlib.patches import Rectangle

    places = wrap(tokens, chars)
    axis.set_xlim(-0.5, chars + 0.5)
    axis.set_ylim(places[-1][0] + 1, 0)
    axis.axis("off")
    for t, ((line, column), token) in enumerate(zip(places, tokens)):
        shown = token if len(token) <= chars else token[: chars - 1] + "…"
        axis.add_patch(
            Rectangle(
                (column - 0.3, line + 0.08),
                len(shown) + 0.6,
                0.84,
                facecolor=cmap(norm(A[t])),
                edgecolor="black" if t in framed else "none",
                linewidth=1.3,
            )
        )
        # The dark ends of the scale need light text.
        ink = "white" if abs(norm(A[t]) - 0.5) > 0.33 else "black"
        axis.text(
            column,
            line + 0.5,
            shown,
            family=MONO,
            fontsize=font,
            color=ink,
            va="center_baseline",
            ha="left",
        )


def label_tops(axis, tokens, A, chosen, width_pt, height_pt, cmap, font=9) -> None:
    """Words of the top tokens in a band above the A track, spread along x so that none
    overlap (one row, two when they do not fit), each tied to its bar by a thin line and
    coloured by its sign."""
    from matplotlib import transforms

    picked = sorted(int(t) for t in chosen)
    if not picked:
        return
    per_token_pt = width_pt / len(A)
    widths = np.array([0.62 * font * len(tokens[t]) + 8 for t in picked]) / per_token_pt
    span = (-0.6, len(A) - 0.4)
    rows = 1 if widths.sum() <= 0.9 * (span[1] - span[0]) else 2
    band = transforms.blended_transform_factory(axis.transData, axis.transAxes)
    colours = sign_colours(A[picked], cmap)
    for row in range(rows):
        members = list(range(row, len(picked), rows))
        places = spread_labels([picked[k] for k in members], widths[members], *span)
        for k, x in zip(members, places):
            t = picked[k]
            axis.annotate(
                tokens[t],
                (t, max(A[t], 0.0)),
                xytext=(x, 1.0 + (5 + 13 * row) / height_pt),
                textcoords=band,
                ha="center",
                va="bottom",
                fontsize=font,
                color=colours[k],
                annotation_clip=False,
                arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5},
            )


def draw_waterfall(axis, steps, logit, cmap) -> None:
    """(c) horizontal bars from the bias, through the top tokens and the rest, to the logit."""
    colours = sign_colours([step["end"] - step["start"] for step in steps], cmap)
    for row, step in enumerate(steps):
        start, end = step["start"], step["end"]
        total = step["kind"] in ("bias", "logit")
        axis.barh(row, end - start, left=start, height=0.7, color="0.35" if total else colours[row])
        if row < len(steps) - 1:  # a thin line carries the running total to the next bar
            axis.plot([end, end], [row - 0.35, row + 1.35], color="0.55", linewidth=0.6)
        axis.annotate(
            f"{end:+.3f}" if total else f"{end - start:+.3f}",
            (max(start, end), row),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    axis.set_yticks(range(len(steps)), [step["label"] for step in steps], fontsize=9)
    axis.set_ylim(len(steps) - 0.4, -0.6)
    axis.axvline(0, color="black", linewidth=0.6)
    axis.set_xlabel("logit (running total)", fontsize=9)
    axis.spines[["top", "right"]].set_visible(False)
    low = min(min(step["start"], step["end"]) for step in steps)
    high = max(max(step["start"], step["end"]) for step in steps)
    axis.set_xlim(low - 0.05 * (high - low or 1.0), high + 0.2 * (high - low or 1.0))
    final = steps[-1]["end"]
    check = f"bias + Σ A = {final:+.4f};  the model's logit {logit:+.4f}"
    # The bars are the ledger's own numbers: a gap to the model's logit is shown, not hidden.
    if not np.isclose(final, logit, rtol=1e-4, atol=1e-4):
        check += "  (they differ: the ledger does not add up)"
    axis.set_title(f"From the bias to the logit\n{check}", fontsize=10, loc="left")
