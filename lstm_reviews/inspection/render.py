"""Pictures and tables of an inspection, for people: text, PNG (matplotlib) and HTML.

Inputs are what inspection.gates (gates) and inspection.ledger.review_ledger (each
token's share of the logit) return; nothing here computes a model.
"""

from __future__ import annotations

import html

import numpy as np

from lstm_reviews.inspection.gates import GATES

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


def plot_trace(tokens: list, trace: dict, path, title: str = "") -> None:
    """Writes a PNG heatmap: one row per token; columns: the three gates (mean over units,
    0..1), the cell-state change ‖c_t − c_{t−1}‖ and the running P(positive)."""
    # A bare Figure draws and saves without pyplot: the caller's backend (a notebook's inline
    # one, say) is left as it was, and no display is needed.
    from matplotlib.figure import Figure

    rows = len(tokens)
    height = max(2.5, 0.22 * rows + 1.5)
    figure = Figure()
    axes = figure.subplots(1, 3, sharey=True, gridspec_kw={"width_ratios": [3, 1, 1]})
    figure.set_size_inches(7.5, height)
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


# --- the ledger of one review (inspection.ledger.review_ledger) ---------------------------

# Diverging and symmetric about 0: red pushes the verdict towards negative, blue towards
# positive, white is no share. The same scale in the PNG and the HTML page.
LEDGER_CMAP = "RdBu"
_MONO = "DejaVu Sans Mono"  # matplotlib ships it: the page's character grid is exact


def top_tokens(led: dict, n: int) -> np.ndarray:
    """<int64>[min(n, time)] token positions by |A|, largest first (stable on ties)."""
    A = np.asarray(led["A"])
    return np.argsort(-np.abs(A), kind="stable")[: max(0, n)]


def ledger_waterfall(tokens: list, led: dict, top: int = 12) -> list:
    """The steps from the bias to the logit: the `top` tokens by |A|, then all the others.

    Returns a list of dicts {"label", "start", "end", "kind"}: kind "bias" (0 -> bias), "token"
    (one per top token, largest |A| first), "others" (the sum of every other token's A; only
    when there are others) and last "logit" (0 -> the sum). Each step starts where the one
    before ended, so the last "end" is bias + Σ_t A_t, the logit when the ledger adds up.
    """
    A = np.asarray(led["A"], dtype=np.float64)
    chosen = top_tokens(led, top)
    steps = [{"label": "bias", "start": 0.0, "end": float(led["bias"]), "kind": "bias"}]
    for t in chosen:
        start = steps[-1]["end"]
        steps.append(
            {"label": f"#{t + 1} {tokens[t]}", "start": start, "end": start + A[t], "kind": "token"}
        )
    rest = np.ones(len(A), dtype=bool)
    rest[chosen] = False
    if rest.any():
        start = steps[-1]["end"]
        steps.append(
            {
                "label": f"all other {int(rest.sum())} tokens",
                "start": start,
                "end": start + float(A[rest].sum()),
                "kind": "others",
            }
        )
    steps.append({"label": "logit", "start": 0.0, "end": steps[-1]["end"], "kind": "logit"})
    return steps


def _ledger_scale(A) -> float:
    """The colour scale's half-width: the largest |A| (so no colour is clipped), or 1e-12."""
    return max(float(np.max(np.abs(A))), 1e-12)


def _ledger_level(A, scale: float):
    """A -> 0..1 on the colour map, 0.5 at A = 0, on a signed square-root scale.

    A few tokens carry most of a long review's logit: on a linear scale the rest, a
    hundredth of the largest share, would all look white and hide their sign. The square
    root keeps the order and the sign, and tints a token with 1% of the largest share 10%.
    """
    ratio = np.clip(np.asarray(A, dtype=np.float64) / scale, -1.0, 1.0)
    return 0.5 + 0.5 * np.sign(ratio) * np.sqrt(np.abs(ratio))


def _wrap(tokens: list, width: int) -> list:
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


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def _spread(centres, widths, low: float, high: float) -> np.ndarray:
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


def _sign_colours(values, cmap) -> list:
    """Solid bar colours by sign: the scale's blue for >= 0, its red for < 0."""
    from matplotlib import colors

    positive, negative = colors.to_hex(cmap(0.88)), colors.to_hex(cmap(0.12))
    return [positive if value >= 0 else negative for value in np.asarray(values)]


def _draw_page(axis, tokens, A, norm, cmap, chars, font, framed) -> None:
    """(a) the review as a page: monospaced, wrapped at `chars`, each token on its A colour."""
    from matplotlib.patches import Rectangle

    places = _wrap(tokens, chars)
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
            family=_MONO,
            fontsize=font,
            color=ink,
            va="center_baseline",
            ha="left",
        )


def _label_tops(axis, tokens, A, chosen, width_pt, height_pt, cmap, font=9) -> None:
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
    colours = _sign_colours(A[picked], cmap)
    for row in range(rows):
        members = list(range(row, len(picked), rows))
        places = _spread([picked[k] for k in members], widths[members], *span)
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


def _draw_waterfall(axis, steps, logit, cmap) -> None:
    """(c) horizontal bars from the bias, through the top tokens and the rest, to the logit."""
    colours = _sign_colours([step["end"] - step["start"] for step in steps], cmap)
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


def _ledger_figure(tokens, led, title, top):
    """plot_ledger's figure."""
    import matplotlib
    from matplotlib import colors
    from matplotlib.figure import Figure  # not pyplot: the caller's backend stays as it was
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    A = np.asarray(led["A"], dtype=np.float64)
    time = len(A)
    if len(tokens) != time or time == 0:
        raise ValueError(f"{len(tokens)} tokens for a ledger of {time}: need the same, >= 1")
    steps = ledger_waterfall(tokens, led, top)
    chosen = top_tokens(led, top)
    rows = top_tokens(led, min(8, top))  # the reading panel's tokens
    cmap = matplotlib.colormaps[LEDGER_CMAP]
    scale = _ledger_scale(A)
    # _ledger_level's signed square root, as a Normalize for the page and its colour bar.
    norm = colors.FuncNorm(
        (lambda a: np.sign(a) * np.sqrt(np.abs(a)), lambda b: np.sign(b) * b * b), -scale, scale
    )
    words = time <= 40  # few enough tokens to write them under the tracks

    # Layout in inches, planned before drawing so that the figure is as tall as its panels.
    width, left, right = 15.0, 2.0, 0.6
    inner = width - left - right
    chars = 110 if time > 40 else 80
    mono = TextPath((0, 0), "0" * 40, size=1, prop=FontProperties(family=_MONO))
    font = min(15.0, inner * 72 / chars / (mono.get_extents().width / 40))
    lines = _wrap(tokens, chars)[-1][0] + 1
    row_h = 0.8
    plan = {  # name: (gap above, height)
        "head": (0.15, 0.75),
        "page": (0.1, lines * 1.75 * font / 72),
        "colourbar": (0.35, 0.16),
        "A": (0.9, 1.6),
        "write": (0.12, 1.1),
        "retention": (0.12, 1.1),
        "reading": (1.2 if words else 0.85, row_h * len(rows)),
        "waterfall": (1.35 if words else 1.1, 0.3 * len(steps) + 0.3),
    }
    total_h = sum(gap + height for gap, height in plan.values()) + 0.65
    figure = Figure(figsize=(width, total_h))
    tops, cursor = {}, total_h
    for name, (gap, height) in plan.items():
        tops[name] = cursor - gap
        cursor -= gap + height

    def axes(name, x0=left, w=inner, offset=0.0, height=None):
        height = plan[name][1] if height is None else height
        bottom = tops[name] - offset - height
        return figure.add_axes((x0 / width, bottom / total_h, w / width, height / total_h))

    head = axes("head", x0=0.3, w=width - 0.6)
    head.axis("off")
    head.text(0, 0.8, title or "The verdict's ledger", fontsize=14, weight="bold", va="center")
    head.text(
        0,
        0.2,
        f"logit {led['logit']:+.3f}  →  P(positive) = {_sigmoid(led['logit']):.3f}      "
        f"bias {led['bias']:+.3f}      Σ_t A_t = {A.sum():+.4f} = logit − bias      "
        f"{time} tokens",
        fontsize=11,
        va="center",
    )

    _draw_page(axes("page"), tokens, A, norm, cmap, chars, font, set(chosen.tolist()))
    bar = figure.colorbar(
        matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap),
        cax=axes("colourbar", x0=left + inner * 0.25, w=inner * 0.5),
        orientation="horizontal",
        ticks=[sign * scale * share for sign in (-1, 1) for share in (1, 1 / 4, 1 / 16)] + [0],
        format=matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:+.2g}" if value else "0"),
    )
    bar.set_label(
        "share of the logit A_t   (square-root scale; red: towards negative, blue: towards "
        f"positive; framed: the top {len(chosen)} by |A|)",
        fontsize=10,
    )

    x = np.arange(time)
    bar_width = 0.8 if time <= 60 else 1.0
    a_axis = axes("A")
    a_axis.bar(x, A, width=bar_width, color=_sign_colours(A, cmap))
    a_axis.axhline(0, color="black", linewidth=0.6)
    a_axis.set_ylabel("A_t\n(share of\nthe logit)", fontsize=9)
    _label_tops(a_axis, tokens, A, chosen, inner * 72, plan["A"][1] * 72, cmap)
    high = max(float(np.abs(A).max()), 1e-12)
    a_axis.set_ylim(min(float(A.min()), 0.0) - 0.05 * high, max(float(A.max()), 0.0) + 0.05 * high)
    w_axis = axes("write")
    w_axis.bar(x, led["write"], width=bar_width, color="0.45")
    w_axis.set_ylabel("write ‖w_t‖\n(both\ndirections)", fontsize=9)
    r_axis = axes("retention")
    r_axis.plot(
        x, led["retention"], color="tab:green", linewidth=1.2, marker="o" if words else None, ms=3
    )
    r_axis.set_ylim(-0.03, 1.03)
    r_axis.set_ylabel("retention\n(kept to the\nend of reading)", fontsize=9)
    r_axis.grid(axis="y", linewidth=0.4, alpha=0.5)

    # (d) When the verdict reads the top tokens' writes. Running totals rather than a
    # heatmap: max pooling reads a write at the few steps where a unit peaks, one pixel wide
    # in a 600-column heatmap; as a running total those reads are jumps one can see and
    # compare between rows, and every line ends at 1 (all of A_t). Bars: the single steps.
    reading = np.asarray(led["reading"], dtype=np.float64)
    shares = reading[rows] / np.where(A[rows] == 0, 1.0, A[rows])[:, None]
    running = np.cumsum(shares, axis=1)
    low = min(0.0, float(running.min()), float(shares.min()))
    high = max(1.0, float(running.max()), float(shares.max()))
    margin = 0.1 * (high - low)
    reading_axes = []
    for k, t in enumerate(rows):
        axis = axes("reading", offset=k * row_h, height=row_h * 0.84)
        # Bars coloured by the step's sign on the logit, as everywhere in the figure.
        axis.bar(x, shares[k], width=bar_width, color=_sign_colours(reading[t], cmap))
        axis.plot(x, running[k], color="black", linewidth=1.1)
        axis.axvline(t, color="darkorange", linewidth=1.4, linestyle="--")
        axis.axhline(0, color="0.6", linewidth=0.5)
        axis.axhline(1, color="0.6", linewidth=0.5, linestyle=":")
        axis.set_ylim(low - margin, high + margin)
        axis.yaxis.tick_right()
        axis.set_yticks([0, 1])
        axis.tick_params(labelsize=7)
        axis.text(
            -0.01,
            0.5,
            f"#{t + 1} {tokens[t]}\nA = {A[t]:+.3f}",
            transform=axis.transAxes,
            ha="right",
            va="center",
            fontsize=9,
        )
        if not words:
            # 600 positions squeeze the steps into slivers: name the steps that read most.
            strongest = np.argsort(-np.abs(shares[k]), kind="stable")[:3]
            where = ", ".join(f"#{s + 1} {tokens[s]} {shares[k][s]:+.0%}" for s in strongest)
            right = t < time / 2  # the side away from the token's own step
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
        reading_axes.append(axis)
    reading_axes[0].set_title(
        f"When the verdict reads the writes of the top {len(rows)} tokens: share of A_t read "
        "at each step τ (bars) and up to τ (line, ends at 1); dashed: the token's position",
        fontsize=10,
        loc="left",
    )
    tracks = [a_axis, w_axis, r_axis] + reading_axes
    bottoms = (r_axis, reading_axes[-1])
    for axis in tracks:
        axis.set_xlim(-0.6, time - 0.4)
        axis.spines["top"].set_visible(False)
        axis.spines["right"].set_visible(axis in reading_axes)  # their ticks are on the right
        if words:
            axis.set_xticks(
                x, tokens if axis in bottoms else [], rotation=60, ha="right", fontsize=8
            )
        elif axis not in bottoms:
            axis.tick_params(labelbottom=False)
    for axis in bottoms:
        axis.set_xlabel("token position" if not words else "", fontsize=9)

    _draw_waterfall(axes("waterfall", w=inner * 0.55), steps, float(led["logit"]), cmap)
    key = axes("waterfall", x0=left + inner * 0.62, w=inner * 0.38)
    key.axis("off")
    key.text(
        0,
        1,
        _KEY + (_KEY_BACKWARD if "backward" in led["directions"] else ""),
        fontsize=9,
        va="top",
    )
    return figure


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
    colours = _sign_colours([step["end"] - step["start"] for step in steps], cmap)
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
    scale = _ledger_scale(A)
    peak = float(np.max(led["write"])) or 1.0
    names = list(led["directions"])
    spans = []
    for t, token in enumerate(tokens):
        level = float(_ledger_level(A[t], scale))
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
    gradient = ",".join(_rgb(cmap(k / 10)) for k in range(11))
    steps = ledger_waterfall(tokens, led, 12)
    verdict = (
        f"logit {led['logit']:+.3f} → P(positive) = {_sigmoid(led['logit']):.3f}; "
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
