"""The verdict's ledger: how much of the logit each token's write into the LSTM cell earns.

Given the gates of the forward pass, the model's logit is an exact sum over tokens. Per
direction d (forward, and backward when bidirectional), in d's reading order (the backward
direction reads the review's real tokens last to first from a zero state; padding is never
read), with units u, review length L and every array below <[units]> at one step:

    w_t = i_t ⊙ c̃_t                         the write of token t
    c_τ = Σ_{t≤τ} (Π_{k=t+1..τ} f_k) ⊙ w_t   the cell is a sum of decayed writes
    h_τ = a_τ ⊙ c_τ,   a_τ = o_τ ⊙ tanh(c_τ) / c_τ   (a_τ = o_τ where c_τ = 0)

The variants of lstm_reviews.model.variants fit it as they are. The peephole cell's gates read the
cell, but the sums above take the gates' recorded values, so they hold unchanged; the coupled
cell writes w_t = (1 - f_t) ⊙ c̃_t; the GRU's update gate is f (c = h, w_t = (1 - z_t) ⊙ h̃_t)
and its h is its cell read out whole: a_τ = 1. In every case a_τ = h_τ / c_τ, which is how
it is computed.

The head, dropout off, is linear in the pooled h: logit = v · pooled + bias, pooled =
max over real steps of h ("max"), or [max, mean] ("max_mean"). Once the gates and the step
each unit's max picks (argmax, the first on ties) are fixed, the max is a selection and the
mean a sum, so with v_max, v_mean <[units]> d's rows of the logit kernel (v_mean = 0 in
"max" mode):

    κ_τ = a_τ ⊙ (v_max ⊙ 1[τ = argmax] + v_mean / L)   how the verdict reads the cell at τ
    K_t = κ_t + f_{t+1} ⊙ K_{t+1},  K_L = 0          what it reads of a write made at t
    A_t = ⟨K_t, w_t⟩                                 token t's share of the logit

    Σ_d Σ_t A_t(d) = Σ_d Σ_τ ⟨κ_τ, c_τ⟩ = logit − bias,   exactly (up to float rounding).

A_t is not the effect of deleting token t (that would change later gates and a_τ): it is
the part of the logit carried by what t wrote, given how the network read it.

Per token and direction, also:
    read_t       Σ_j |K_tj · w_tj|                 how much of the write the verdict ever reads
    retention_t  Σ_j |w_tj| Π_{k>t} f_kj / Σ_j |w_tj|   the write still in the cell at the
                 review's end (in d's reading order), weighted over units by |w_t|
    half_life_t  the least n ≥ 1 with Σ_j |w_tj| Π_{k=t+1..t+n} f_kj / Σ_j |w_tj| ≤ 0.5: the
                 later tokens it takes to forget half of the write. NaN and `censored` when
                 the review (in that direction) ends first, which is always the case for its
                 last token; NaN, not censored, for a write of exactly zero.

Every per-token array is aligned to the review's token positions, the backward direction's
too: its entry t is the step that reads token t. Padding positions hold 0 (NaN for
retention and half-life).

For one review, review_ledger also splits each A_t over the steps that read it:
reading[t, τ] = Σ_d ⟨κ_τ ⊙ Π_{k=t+1..τ} f_k, w_t⟩ (d's reading order), Σ_τ reading[t, τ] = A_t;
lstm_reviews.inspection.ledger_figure draws it.

The gates come from inspection.gate_model (compiled Keras models, TensorFlow, JAX or PyTorch); the
algebra here is float64 NumPy. Over many reviews: inspection.ledger_words; cross-checks of A:
inspection.crosscheck.
"""

from __future__ import annotations

import keras
import numpy as np

from lstm_reviews.inspection.gate_model import (
    DIRECTION_NAMES,
    as_batch,
    build_gate_model,
    gates,
    logit_head,
    model_logits,
    reverse_index,
    take_along_time,
)

# A float64 log of a forget gate that underflowed to 0: e^-690 ≈ 1e-300, gone either way.
_LOG_FLOOR = 1e-300


def _tanh_ratio(c):
    """tanh(c) / c, with its limit 1 - c²/3 near 0 (exactly 1 at c = 0)."""
    small = np.abs(c) < 1e-8
    return np.where(small, 1.0 - c * c / 3.0, np.tanh(c) / np.where(small, 1.0, c))


def _readout(h, c, o):
    """a with h = a ⊙ c, from the recorded states: o ⊙ tanh(c) / c for the LSTM family, 1
    for the GRU (its h is its cell). Where c is ~0, its limit o ⊙ (1 - c²/3)."""
    small = np.abs(c) < 1e-8
    return np.where(small, o * _tanh_ratio(c), h / np.where(small, 1.0, c))


def _half_life(abs_w, forget, lengths, retention):
    """<float64>[batch, time] half-lives, NaN where censored or the write is 0 (reading order).

    The retention after n later tokens falls with n (forget gates < 1, weights >= 0), so a
    binary search over n finds the first n where it is <= 0.5, with the products
    Π_{k=t+1..t+n} f_k read off cumulative sums of log f.
    """
    batch, time, _ = forget.shape
    log_f = np.log(np.maximum(forget, _LOG_FLOOR))
    cumulative = np.cumsum(log_f, axis=1)  # S_t = Σ_{k≤t} log f_k (padding f is never reached)
    total = abs_w.sum(axis=-1)
    position = np.arange(time)[None, :]
    remaining = lengths[:, None] - 1 - position  # later tokens in the review
    # Halved by the end (exact products) and at least one later token: the search can end.
    found = (remaining >= 1) & (total > 0) & (retention <= 0.5)
    low = np.ones((batch, time), dtype=np.int64)
    high = np.maximum(remaining, 1)
    safe_total = np.where(total > 0, total, 1.0)
    while True:
        active = found & (low < high)
        if not active.any():
            break
        middle = (low + high) // 2
        later = take_along_time(cumulative, np.minimum(position + middle, time - 1))
        kept = (abs_w * np.exp(later - cumulative)).sum(axis=-1) / safe_total
        halved = kept <= 0.5
        high = np.where(active & halved, middle, high)
        low = np.where(active & ~halved, middle + 1, low)
    return np.where(found, low.astype(np.float64), np.nan)


def _read_back(kappa, f, real):
    """The recursion K_t = κ_t + f_{t+1} ⊙ K_{t+1} from the last step back, and kept_t =
    Π_{k>t} f_k up to the review's last real token; kappa, f <float64>[batch, time, units]
    and real <bool>[batch, time, 1] in reading order. Returns (K, kept), K 0 at padding."""
    time = kappa.shape[1]
    K = np.zeros_like(kappa)
    kept = np.ones_like(kappa)
    for t in range(time - 1, -1, -1):
        if t + 1 < time:
            # f of the next real step; after the last real step nothing is read or forgotten.
            next_f = np.where(real[:, t + 1], f[:, t + 1], 0.0)
            K[:, t] = kappa[:, t] + next_f * K[:, t + 1]
            kept[:, t] = np.where(real[:, t + 1], next_f * kept[:, t + 1], 1.0)
        else:
            K[:, t] = kappa[:, t]
    return np.where(real, K, 0.0), kept


def _direction_ledger(parts, v_max, v_mean, lengths, mask, argmax, backward):
    """One direction's ledger from its position-aligned gates (see the module docstring).

    argmax: <int64>[batch, units], the token position each unit's max pooling picks.
    Returns w, K <float64>[batch, time, units]; A, read, retention, half_life <float64>
    [batch, time] and censored <bool>[batch, time], all position-aligned.
    """
    time = parts["c"].shape[1]
    index = reverse_index(lengths, time)
    # The recursions run in reading order: reverse the backward direction's rows.
    to_reading = (lambda x: take_along_time(x, index)) if backward else (lambda x: x)
    i, f, o, candidate, c = (
        to_reading(parts[name])
        for name in ("input_gate", "forget_gate", "output_gate", "candidate", "c")
    )
    reading_mask = mask  # a right-padded row stays right-padded when its real tokens reverse
    step = (lengths[:, None] - 1 - argmax) if backward else argmax  # <[batch, units]>
    picked = np.arange(time)[None, :, None] == step[:, None, :]
    h = to_reading(parts["h"])
    w = i * candidate
    a = _readout(h, c, o)
    coefficient = v_max * picked + v_mean / np.maximum(lengths, 1)[:, None, None]
    kappa = np.where(reading_mask[..., None], a * coefficient, 0.0)

    real = reading_mask[..., None]
    K, kept = _read_back(kappa, f, real)
    A = (K * w).sum(axis=-1)
    read = np.abs(K * w).sum(axis=-1)
    abs_w = np.abs(w)
    total = abs_w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        retention = np.where(
            reading_mask & (total > 0),
            (abs_w * kept).sum(axis=-1) / np.where(total > 0, total, 1.0),
            np.nan,
        )
    half_life = _half_life(abs_w, np.where(real, f, 0.0), lengths, retention)
    censored = reading_mask & (total > 0) & np.isnan(half_life)

    to_position = to_reading  # the row reversal is its own inverse
    return {
        "w": to_position(w),
        "K": to_position(K),
        "kappa": to_position(kappa),
        "A": to_position(A),
        "read": to_position(read),
        "retention": to_position(retention),
        "half_life": to_position(half_life),
        "censored": to_position(censored),
    }


def batch_ledger(model, ids, gate_model, head, per_direction=None):
    """ledger() without the model's own logit; per_direction: gates(model, ids), if at hand."""
    ids, lengths, mask = as_batch(ids)
    mode, kernel, bias = head
    if per_direction is None:
        per_direction = gates(model, ids, gate_model)
    n_dir = len(per_direction)
    units = per_direction[0]["h"].shape[-1]
    features = n_dir * units
    expected = features * (2 if mode == "max_mean" else 1)
    if kernel.shape[0] != expected:
        raise ValueError(
            f"the logit kernel has {kernel.shape[0]} rows; {mode!r} pooling of "
            f"{n_dir} x {units} units gives {expected}"
        )
    result = {"mask": mask, "lengths": lengths, "bias": bias}
    total_A = np.zeros(ids.shape, dtype=np.float64)
    total_read = np.zeros(ids.shape, dtype=np.float64)
    for d, (name, parts) in enumerate(zip(DIRECTION_NAMES, per_direction)):
        # Columns of the concatenated features: [forward units, backward units], then again
        # for the mean half in max_mean mode.
        v_max = kernel[d * units : (d + 1) * units]
        v_mean = (
            kernel[features + d * units : features + (d + 1) * units]
            if mode == "max_mean"
            else np.zeros(units)
        )
        # The step MaskedTimePooling's max takes per unit (argmax: the first on ties).
        argmax = np.where(mask[..., None], parts["h"], -np.inf).argmax(axis=1)
        entry = _direction_ledger(parts, v_max, v_mean, lengths, mask, argmax, backward=d == 1)
        result[name] = entry
        total_A += entry["A"]
        total_read += entry["read"]
    result["A"] = total_A
    result["read"] = total_read
    return result


def ledger(model: keras.Model, ids, gate_model: keras.Model | None = None) -> dict:
    """Each token's share of the logit, per direction and in total.

    ids: <int32>[batch, time] right-padded with 0 (or one review <int32>[time]).
    gate_model: build_gate_model(model), to reuse over many calls.
    Returns a dict:
        "forward" (and "backward" when bidirectional): a dict with
            w          <float64>[batch, time, units]  the write i ⊙ c̃
            K          <float64>[batch, time, units]  what the verdict reads of a write at t
            kappa      <float64>[batch, time, units]  κ: how the verdict reads the cell at
                                                      the step that reads token t
            A          <float64>[batch, time]  ⟨K_t, w_t⟩, the token's share of the logit
            read       <float64>[batch, time]  Σ_j |K_tj w_tj|
            retention  <float64>[batch, time]  |w|-weighted share kept to the end
                                               (NaN: padding, a zero write)
            half_life  <float64>[batch, time]  later tokens until half is forgotten
                                               (NaN: censored, padding, a zero write)
            censored   <bool>[batch, time]     a real token's write not halved before the end
        "A", "read"  <float64>[batch, time]  summed over directions; Σ_t A[b, t] = logit[b] - bias
        "logit"      <float64>[batch]        the model's own logit (dropout off)
        "bias"       float                   the logit layer's bias
        "mask"       <bool>[batch, time], "lengths" <int64>[batch]
    All per-token arrays are aligned to token positions; padding holds 0 (NaN where noted).
    """
    batch_ids, _, _ = as_batch(ids)
    result = batch_ledger(model, batch_ids, gate_model, logit_head(model))
    result["logit"] = model_logits(model, batch_ids)
    return result


def _reading(kappa, forget, w):
    """<float64>[time(t), time(τ)]: ⟨κ_τ ⊙ Π_{k=t+1..τ} f_k, w_t⟩ for τ ≥ t, else 0.

    kappa, forget, w: one direction's <float64>[time, units], in its reading order. Row t
    sums to ⟨K_t, w_t⟩ = A_t. One row at a time with a running product: O(time² · units)
    work and O(time · units) scratch; the products only shrink (0 < f < 1), so an underflow
    to 0 is the true value's rounding, never an overflow.
    """
    time = len(w)
    result = np.zeros((time, time))
    for t in range(time):
        result[t, t] = kappa[t] @ w[t]
        if t + 1 < time:
            decay = np.cumprod(forget[t + 1 :], axis=0)  # row τ-t-1: Π_{k=t+1..τ} f_k
            result[t, t + 1 :] = (kappa[t + 1 :] * decay) @ w[t]
    return result


def review_ledger(model: keras.Model, ids, gate_model: keras.Model | None = None) -> dict:
    """One review's ledger as plain arrays, ready to draw (inspection.ledger_figure.plot_ledger).

    ids: one review <int>[time], no padding (time >= 1).
    gate_model: build_gate_model(model), to reuse over many calls.
    Returns a dict, every array aligned to token positions:
        "A"                  <float64>[time]  the token's share of the logit, both directions
        "A_forward", and "A_backward" when bidirectional  <float64>[time]  per direction
        "write"              <float64>[time]  ‖w_t‖₂ over both directions' units together
        "retention"          <float64>[time]  Σ_d ret_d ‖w_d‖₁ / Σ_d ‖w_d‖₁: the share of the
                                              write (both directions) kept to the end of its
                                              reading; NaN for a zero write
        "read"               <float64>[time]  Σ_d Σ_j |K_tj w_tj|
        "half_life_<d>", "censored_<d>", "retention_<d>"  <[time]>  per direction d
        "reading"            <float64>[time(t), time(τ)]  how much of token t's write the
                             verdict reads at the step that reads token τ: Σ_d ⟨κ_τ ⊙
                             Π_{k=t+1..τ} f_k, w_t⟩ (products in d's reading order, so the
                             backward direction reads t at positions τ ≤ t);
                             reading[t].sum() == A[t]
        "logit" float (the model's own), "bias" float, "directions" ("forward"[, "backward"])
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size == 0 or np.any(ids == 0):
        raise ValueError(
            f"review_ledger needs one review <int>[time] with time >= 1 and no padding, "
            f"got shape {ids.shape}"
        )
    batch, _, _ = as_batch(ids[None, :])
    if gate_model is None:
        gate_model = build_gate_model(model)
    per_direction = gates(model, batch, gate_model)
    result = batch_ledger(model, batch, gate_model, logit_head(model), per_direction)
    names = DIRECTION_NAMES[: len(per_direction)]
    out = {
        "A": result["A"][0],
        "read": result["read"][0],
        "logit": float(model_logits(model, batch)[0]),
        "bias": float(result["bias"]),
        "directions": names,
    }
    out.update(_review_sums(result, per_direction, names, batch.shape[1]))
    return out


def _review_sums(result, per_direction, names, time) -> dict:
    """review_ledger's per-direction arrays of one review (batch_ledger's row 0) and their
    sums over directions: write, retention and reading."""
    out = {}
    reading = np.zeros((time, time))
    squares = np.zeros(time)
    kept = np.zeros(time)  # Σ_d ret_d ‖w_d‖₁
    written = np.zeros(time)  # Σ_d ‖w_d‖₁
    for name, parts in zip(names, per_direction):
        entry = {key: value[0] for key, value in result[name].items()}
        w, kappa, forget = entry["w"], entry["kappa"], parts["forget_gate"][0]
        if name == "backward":  # no padding: reading order is position order reversed
            block = _reading(kappa[::-1], forget[::-1], w[::-1])[::-1, ::-1]
        else:
            block = _reading(kappa, forget, w)
        reading += block
        squares += (w * w).sum(axis=-1)
        l1 = np.abs(w).sum(axis=-1)
        kept += np.nan_to_num(entry["retention"]) * l1
        written += l1
        for key in ("A", "retention", "half_life", "censored"):
            out[f"{key}_{name}"] = entry[key]
    out["write"] = np.sqrt(squares)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["retention"] = np.where(written > 0, kept / np.where(written > 0, written, 1.0), np.nan)
    out["reading"] = reading
    return out
