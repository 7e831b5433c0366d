"""What the ledger's figure (inspection.ledger_figure) and page (inspection.ledger_page) share:
the colour scale of a share A_t, the top tokens by |A|, and the waterfall's steps from the
bias to the logit. Inputs are inspection.ledger.review_ledger's dicts.
"""

from __future__ import annotations

import numpy as np

# Diverging and symmetric about 0: red pushes the verdict towards negative, blue towards
# positive, white is no share. The same scale in the PNG and the HTML page.
LEDGER_CMAP = "RdBu"


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


def ledger_scale(A) -> float:
    """The colour scale's half-width: the largest |A| (so no colour is clipped), or 1e-12."""
    return max(float(np.max(np.abs(A))), 1e-12)


def ledger_level(A, scale: float):
    """A -> 0..1 on the colour map, 0.5 at A = 0, on a signed square-root scale.

    A few tokens carry most of a long review's logit: on a linear scale the rest, a
    hundredth of the largest share, would all look white and hide their sign. The square
    root keeps the order and the sign, and tints a token with 1% of the largest share 10%.
    """
    ratio = np.clip(np.asarray(A, dtype=np.float64) / scale, -1.0, 1.0)
    return 0.5 + 0.5 * np.sign(ratio) * np.sqrt(np.abs(ratio))


def sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def sign_colours(values, cmap) -> list:
    """Solid bar colours by sign: the scale's blue for >= 0, its red for < 0."""
    from matplotlib import colors

    positive, negative = colors.to_hex(cmap(0.88)), colors.to_hex(cmap(0.12))
    return [positive if value >= 0 else negative for value in np.asarray(values)]
