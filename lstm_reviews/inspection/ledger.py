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
lstm_reviews.inspection.render draws it.

The network parts (gates, logits) run through compiled Keras models (predict_on_batch), so
this works on the TensorFlow and JAX backends; the algebra is float64 NumPy.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from lstm_reviews.data import batches
from lstm_reviews.data.text import pad
from lstm_reviews.model.cell import GATE_NAMES
from lstm_reviews.model.classifier import MaskedTimePooling
from lstm_reviews.model.variants import CELLS, gates_twin

DIRECTION_NAMES = ("forward", "backward")
# A float64 log of a forget gate that underflowed to 0: e^-690 ≈ 1e-300, gone either way.
_LOG_FLOOR = 1e-300


# --- the network parts ----------------------------------------------------------------------


def check_cell(layer) -> None:
    """One of our cells (lstm_reviews.model.variants.CELLS), or Keras' LSTM with sigmoid gates and
    tanh content: the algebra above holds."""
    cell = getattr(layer, "cell", None)
    if isinstance(cell, tuple(CELLS.values())):
        return
    if not isinstance(cell, keras.layers.LSTMCell):
        raise ValueError(
            f"layer {layer.name!r} has a {type(cell).__name__}; expected one of "
            f"lstm_reviews' cells ({', '.join(CELLS)}) or keras.layers.LSTM"
        )
    activations = (
        keras.activations.serialize(cell.activation),
        keras.activations.serialize(cell.recurrent_activation),
    )
    if activations != ("tanh", "sigmoid"):
        raise ValueError(
            f"layer {layer.name!r} uses activations {activations}; "
            f"only ('tanh', 'sigmoid') fit the LSTM cell's algebra"
        )


def directions(model: keras.Model) -> tuple:
    """The trained recurrent layers: (forward,) or (forward, backward) for Bidirectional.

    Each is keras.layers.RNN(lstm_reviews LSTMCell) or keras.layers.LSTM; the model must hold
    exactly one recurrent layer (alone, or inside a concat-merged Bidirectional) returning
    sequences. ValueError otherwise.
    """
    recurrent = [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Bidirectional, keras.layers.RNN))
    ]
    if len(recurrent) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(recurrent)} recurrent layers "
            f"(RNN, LSTM or Bidirectional); the ledger needs exactly one"
        )
    layer = recurrent[0]
    if isinstance(layer, keras.layers.Bidirectional):
        if layer.merge_mode != "concat":
            raise ValueError(
                f"Bidirectional layer {layer.name!r} merges with "
                f"{layer.merge_mode!r}; the ledger needs 'concat'"
            )
        layers = (layer.forward_layer, layer.backward_layer)
    else:
        layers = (layer,)
    for expected_backwards, direction in zip((False, True), layers):
        check_cell(direction)
        if bool(direction.go_backwards) != expected_backwards:
            raise ValueError(
                f"layer {direction.name!r} has go_backwards="
                f"{direction.go_backwards}; expected {expected_backwards}"
            )
        if not direction.return_sequences:
            raise ValueError(f"layer {direction.name!r} must return sequences (pooling reads them)")
    return layers


def _embedding(model: keras.Model):
    embeddings = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    if len(embeddings) != 1 or not embeddings[0].mask_zero:
        raise ValueError(
            f"model {model.name!r} needs exactly one Embedding with mask_zero=True "
            f"(padding 0 must never be read)"
        )
    return embeddings[0]


def _head(model: keras.Model):
    """(pooling mode, v <float64>[P], bias float) of the pooling -> dropout -> Dense(1) head."""
    pooling = [layer for layer in model.layers if isinstance(layer, MaskedTimePooling)]
    if len(pooling) != 1:
        raise ValueError(f"model {model.name!r} needs exactly one MaskedTimePooling layer")
    try:
        logit = model.get_layer("logit")
    except ValueError:
        raise ValueError(f"model {model.name!r} has no layer named 'logit'") from None
    if (
        not isinstance(logit, keras.layers.Dense)
        or logit.units != 1
        or keras.activations.serialize(logit.activation) != "linear"
    ):
        raise ValueError("the 'logit' layer must be Dense(1) with no activation")
    weights = logit.get_weights()
    kernel = np.asarray(weights[0], dtype=np.float64)[:, 0]
    bias = float(weights[1][0]) if logit.use_bias else 0.0
    return pooling[0].mode, kernel, bias


def build_gate_model(model: keras.Model) -> keras.Model:
    """The trained embedding, then per direction RNN(its cell's twin with return_gates=True,
    variants.gates_twin) holding a copy of that direction's trained weights
    (keras.layers.LSTM's layout is our LSTMCell's).

    Inputs: "token_ids" <int32>[batch, time] right-padded with 0, and for a bidirectional
    model also "reversed_ids" <int32>[batch, time], each row's real tokens reversed (still
    right-padded), which the backward weights then read forwards. Outputs: one
    <float>[batch, time, 6 * units] per direction, [h, c, i, f, o, c̃] in reading order.
    """
    layers = directions(model)
    embedding = _embedding(model)
    names = ("token_ids", "reversed_ids")
    inputs, outputs, copies = [], [], []
    for direction, layer, input_name in zip(DIRECTION_NAMES, layers, names):
        trained = layer.cell
        # The variables' dtype (float32 under mixed_float16): gates for inspection need it.
        dtype = trained.variable_dtype
        cell = gates_twin(trained, dtype=dtype)
        rnn = keras.layers.RNN(cell, return_sequences=True, dtype=dtype, name=f"{direction}_gates")
        ids = keras.Input(shape=(None,), dtype="int32", name=input_name)
        # The trained embedding itself: its mask (ids != 0) keeps padding unread.
        outputs.append(rnn(embedding(ids)))
        inputs.append(ids)
        copies.append((cell, trained))
    for cell, trained in copies:
        cell.set_weights(trained.get_weights())  # the same layout, peepholes included
    return keras.Model(inputs, outputs, name="ledger_gates")


def _as_batch(ids) -> tuple:
    """ids -> (ids <int32>[batch, time], lengths <int64>[batch], mask <bool>[batch, time])."""
    ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"ids must be <int>[batch, time] with time >= 1, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {ids.dtype}")
    ids = ids.astype(np.int32)
    mask = ids != 0
    lengths = mask.sum(axis=1)
    if not np.array_equal(mask, np.arange(ids.shape[1])[None, :] < lengths[:, None]):
        raise ValueError("ids must be right-padded: no 0 before a review's last real token")
    return ids, lengths, mask


def _reverse_index(lengths, time: int) -> np.ndarray:
    """<int64>[batch, time]: position t -> L-1-t inside each row's L real tokens, t after.

    Its own inverse: it turns positions into backward reading steps and back.
    """
    t = np.arange(time)[None, :]
    length = np.asarray(lengths)[:, None]
    return np.where(t < length, length - 1 - t, t)


def _take(array, index):
    """array <[batch, time, ...]> gathered along time by index <[batch, time]>."""
    index = index.reshape(index.shape + (1,) * (array.ndim - 2))
    return np.take_along_axis(array, index, axis=1)


def gates(model: keras.Model, ids, gate_model: keras.Model | None = None) -> list:
    """Per direction, the gates and states at every token position.

    ids: <int32>[batch, time] right-padded with 0 (or one review <int32>[time]).
    gate_model: build_gate_model(model), to reuse over many calls.
    Returns one dict per direction (forward, then backward), keys GATE_NAMES ("h", "c",
    "input_gate", "forget_gate", "output_gate", "candidate"), each <float64>[batch, time,
    units]; entry [b, t] is the step that reads token t (the backward one too), 0 at padding.
    """
    ids, lengths, mask = _as_batch(ids)
    if gate_model is None:
        gate_model = build_gate_model(model)
    index = _reverse_index(lengths, ids.shape[1])
    feeds = {"token_ids": ids}
    if len(gate_model.inputs) == 2:
        feeds["reversed_ids"] = np.take_along_axis(ids, index, axis=1)
    outputs = gate_model.predict_on_batch(feeds)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    result = []
    for k, output in enumerate(outputs):
        output = np.asarray(ops.convert_to_numpy(output), dtype=np.float64)
        if k == 1:
            output = _take(output, index)  # backward reading steps -> token positions
        output = np.where(mask[..., None], output, 0.0)
        result.append(dict(zip(GATE_NAMES, np.split(output, len(GATE_NAMES), axis=-1))))
    return result


# --- the algebra ----------------------------------------------------------------------------


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
        later = _take(cumulative, np.minimum(position + middle, time - 1))
        kept = (abs_w * np.exp(later - cumulative)).sum(axis=-1) / safe_total
        halved = kept <= 0.5
        high = np.where(active & halved, middle, high)
        low = np.where(active & ~halved, middle + 1, low)
    return np.where(found, low.astype(np.float64), np.nan)


def _direction_ledger(parts, v_max, v_mean, lengths, mask, argmax, backward):
    """One direction's ledger from its position-aligned gates (see the module docstring).

    argmax: <int64>[batch, units], the token position each unit's max pooling picks.
    Returns w, K <float64>[batch, time, units]; A, read, retention, half_life <float64>
    [batch, time] and censored <bool>[batch, time], all position-aligned.
    """
    time = parts["c"].shape[1]
    index = _reverse_index(lengths, time)
    # The recursions run in reading order: reverse the backward direction's rows.
    to_reading = (lambda x: _take(x, index)) if backward else (lambda x: x)
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

    K = np.zeros_like(w)
    kept = np.ones_like(w)  # Π_{k>t} f_k up to the review's last real token
    real = reading_mask[..., None]
    for t in range(time - 1, -1, -1):
        if t + 1 < time:
            # f of the next real step; after the last real step nothing is read or forgotten.
            next_f = np.where(real[:, t + 1], f[:, t + 1], 0.0)
            K[:, t] = kappa[:, t] + next_f * K[:, t + 1]
            kept[:, t] = np.where(real[:, t + 1], next_f * kept[:, t + 1], 1.0)
        else:
            K[:, t] = kappa[:, t]
    K = np.where(real, K, 0.0)
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


def _ledger(model, ids, gate_model, head, per_direction=None):
    """ledger() without the model's own logit; per_direction: gates(model, ids), if at hand."""
    ids, lengths, mask = _as_batch(ids)
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
    batch_ids, _, _ = _as_batch(ids)
    result = _ledger(model, batch_ids, gate_model, _head(model))
    result["logit"] = _logits(model, batch_ids)
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
    """One review's ledger as plain arrays, ready to draw (inspection.render.plot_ledger).

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
    batch, _, _ = _as_batch(ids[None, :])
    if gate_model is None:
        gate_model = build_gate_model(model)
    per_direction = gates(model, batch, gate_model)
    result = _ledger(model, batch, gate_model, _head(model), per_direction)
    names = DIRECTION_NAMES[: len(per_direction)]
    time = batch.shape[1]
    out = {
        "A": result["A"][0],
        "read": result["read"][0],
        "logit": float(_logits(model, batch)[0]),
        "bias": float(result["bias"]),
        "directions": names,
    }
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
        out[f"A_{name}"] = entry["A"]
        out[f"retention_{name}"] = entry["retention"]
        out[f"half_life_{name}"] = entry["half_life"]
        out[f"censored_{name}"] = entry["censored"]
    out["write"] = np.sqrt(squares)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["retention"] = np.where(written > 0, kept / np.where(written > 0, written, 1.0), np.nan)
    out["reading"] = reading
    return out


def _logits(model, ids):
    """The model's logits <float64>[batch] for ids <int32>[batch, time], dropout off."""
    logits = ops.convert_to_numpy(model.predict_on_batch(ids))
    return np.asarray(logits, dtype=np.float64).reshape(-1)


# --- over many reviews ----------------------------------------------------------------------


def _add_histogram(histogram, values):
    """histogram <int64>[n] plus the counts of the non-negative ints in values, grown as needed."""
    counts = np.bincount(np.asarray(values, dtype=np.int64), minlength=len(histogram))
    counts[: len(histogram)] += histogram
    return counts


def _sum_histograms(first, second):
    total = np.zeros(max(len(first), len(second)), dtype=np.int64)
    total[: len(first)] += first
    total[: len(second)] += second
    return total


def _histogram_median(histogram):
    """The median (np.median's, halves averaged) of the values a histogram counts; None if empty."""
    n = int(histogram.sum())
    if n == 0:
        return None
    cumulative = np.cumsum(histogram)
    lower = int(np.searchsorted(cumulative, (n - 1) // 2, side="right"))
    upper = int(np.searchsorted(cumulative, n // 2, side="right"))
    return (lower + upper) / 2.0


def _interval(values, n, sum1, sum2, n_boot, rng):
    """A 95% interval of a mean: percentile bootstrap over the stored values, or, when they
    were not stored (n above the limit), the normal one mean ± 1.96 s/√n that the bootstrap
    approaches for large n."""
    if values is not None:
        means = np.empty(n_boot)
        chunk = max(1, 2_000_000 // n)  # bounded memory: chunk x n indices at a time
        for start in range(0, n_boot, chunk):
            stop = min(start + chunk, n_boot)
            means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        return float(low), float(high)
    mean = sum1 / n
    variance = max(sum2 - n * mean * mean, 0.0) / (n - 1)
    half = 1.959963984540054 * np.sqrt(variance / n)
    return float(mean - half), float(mean + half)


class _Tracked:
    """Running totals for one requested word (or all tokens)."""

    def __init__(self, n_dir, limit):
        self.count = 0
        self.reviews = 0
        self.sums = {}  # name -> float
        self.values = []  # per-occurrence A, while count <= limit
        self.limit = limit
        self.histograms = [np.zeros(0, dtype=np.int64) for _ in range(n_dir)]
        self.censored = [0] * n_dir

    def add(self, name, value):
        self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def add_values(self, values):
        self.count += len(values)
        if self.count <= self.limit:
            self.values.append(values)
        else:
            self.values = None  # too many to keep: the normal interval


def _summaries(tracked, names, n_boot, rng):
    """The report of one tracked key (see word_ledger)."""
    n = tracked.count
    empty = {
        "count": 0,
        "reviews": tracked.reviews,
        "mean_A": None,
        "mean_A_ci": None,
        "mean_abs_A": None,
        "mean_abs_A_ci": None,
        "ci_method": None,
        "mean_read": None,
        "mean_retention": None,
        "half_life_median": None,
        "half_life_censored": None,
    }
    if n == 0:
        for name in names:
            empty[name] = {
                key: None
                for key in (
                    "mean_abs_A",
                    "mean_read",
                    "mean_retention",
                    "half_life_median",
                    "half_life_censored",
                )
            }
        return empty
    s = tracked.sums
    values = None if tracked.values is None else np.concatenate(tracked.values)
    report = {
        "count": n,
        "reviews": tracked.reviews,
        "mean_A": s["A"] / n,
        "mean_abs_A": s["abs_A"] / n,
        "ci_method": "bootstrap" if values is not None else "normal",
        "mean_read": s["read"] / n,
    }
    # The same resampled occurrences for both means.
    state = rng.bit_generator.state
    report["mean_A_ci"] = _interval(values, n, s["A"], s["A2"], n_boot, rng)
    rng.bit_generator.state = state
    report["mean_abs_A_ci"] = _interval(
        None if values is None else np.abs(values), n, s["abs_A"], s["A2"], n_boot, rng
    )
    retention_sum = retention_count = 0.0
    histogram = np.zeros(0, dtype=np.int64)
    censored = 0
    for d, name in enumerate(names):
        observed = int(tracked.histograms[d].sum())
        timed = observed + tracked.censored[d]
        count = s[f"retention_count_{name}"]
        report[name] = {
            "mean_abs_A": s[f"abs_A_{name}"] / n,
            "mean_read": s[f"read_{name}"] / n,
            "mean_retention": s[f"retention_{name}"] / count if count else None,
            "half_life_median": _histogram_median(tracked.histograms[d]),
            "half_life_censored": tracked.censored[d] / timed if timed else None,
        }
        retention_sum += s[f"retention_{name}"]
        retention_count += count
        histogram = _sum_histograms(histogram, tracked.histograms[d])
        censored += tracked.censored[d]
    timed = int(histogram.sum()) + censored
    report["mean_retention"] = retention_sum / retention_count if retention_count else None
    report["half_life_median"] = _histogram_median(histogram)
    report["half_life_censored"] = censored / timed if timed else None
    return report


def _batches(reviews, batch_size):
    """Padded id batches of similar-length reviews: (ids <int32>[batch, time], row numbers),
    time a multiple of 16 (batches.by_length): a bounded number of shapes to compile."""
    reviews = [np.asarray(review).reshape(-1) for review in reviews]
    for k, review in enumerate(reviews):
        if review.size and not np.issubdtype(review.dtype, np.integer):
            raise ValueError(f"review {k} holds {review.dtype}, expected token ids")
        if np.any(review == 0):
            raise ValueError(f"review {k} holds the padding id 0")
    yield from batches.by_length(reviews, batch_size)


def word_ledger(
    model: keras.Model,
    reviews,
    word_ids=None,
    batch_size: int = 64,
    n_boot: int = 1000,
    seed: int = 0,
    bootstrap_limit: int = 100_000,
    gate_model: keras.Model | None = None,
) -> dict:
    """The ledger summed up by word over many reviews.

    reviews: list of <int32>[len_i] id arrays (no padding; empty ones are skipped).
    word_ids: {label: vocabulary id} of the words to report in full (bootstrap intervals and
        half-life medians need per-occurrence values, kept for these words only).
    n_boot, seed: bootstrap replicates and their seed (each key draws from
        default_rng([seed, id + 1]), all tokens from [seed, 0]: results do not depend on
        which other words are asked for).
    bootstrap_limit: above this many occurrences a key's interval is the normal one,
        mean ± 1.96 s/√n from running sums (the bootstrap's large-n limit), and no values
        are kept: memory stays bounded.
    Returns:
        "words": {label: report}, "all": report over every real token, where a report is
            count, reviews (that contain it), mean_A and mean_A_ci (A summed over directions),
            mean_abs_A and mean_abs_A_ci (|A| of that sum), ci_method ("bootstrap" or
            "normal"), mean_read (summed over directions), mean_retention (over both
            directions' writes), half_life_median (median over the writes whose half-life
            was observed inside the review, both directions) and half_life_censored (share of
            the writes with a nonzero write that were not halved before the review ended),
            and per direction ("forward", "backward") mean_abs_A, mean_read, mean_retention,
            half_life_median, half_life_censored. None where a word never occurs.
        "by_id": every vocabulary id, <[vocab]> arrays: count, reviews (int64), mean_A,
            mean_abs_A, mean_read, mean_retention, mean_abs_A_<direction> (float64, NaN
            where count is 0).
    """
    if batch_size < 1 or n_boot < 1 or bootstrap_limit < 1:
        raise ValueError("batch_size, n_boot and bootstrap_limit must be positive")
    word_ids = dict(word_ids or {})
    vocab = _embedding(model).input_dim
    for label, word_id in word_ids.items():
        if not 0 < int(word_id) < vocab:
            raise ValueError(f"word {label!r} has id {word_id}, outside 1..{vocab - 1}")
    if gate_model is None:
        gate_model = build_gate_model(model)
    head = _head(model)
    names = DIRECTION_NAMES[: len(directions(model))]

    by_id = {
        key: np.zeros(vocab)
        for key in ["A", "abs_A", "read", "retention", "retention_count"]
        + [f"abs_A_{name}" for name in names]
    }
    id_counts = np.zeros(vocab, dtype=np.int64)
    id_reviews = np.zeros(vocab, dtype=np.int64)
    tracked = {label: _Tracked(len(names), bootstrap_limit) for label in word_ids}
    everything = _Tracked(len(names), bootstrap_limit)

    for ids, _ in _batches(reviews, batch_size):
        result = _ledger(model, ids, gate_model, head)
        mask = result["mask"]
        tokens = ids[mask]
        A = result["A"][mask]
        per_token = {"A": A, "abs_A": np.abs(A), "A2": A * A, "read": result["read"][mask]}
        for name in names:
            entry = result[name]
            retention = entry["retention"][mask]
            per_token[f"abs_A_{name}"] = np.abs(entry["A"][mask])
            per_token[f"read_{name}"] = entry["read"][mask]
            per_token[f"retention_{name}"] = np.nan_to_num(retention)
            per_token[f"retention_count_{name}"] = ~np.isnan(retention)
            per_token[f"half_life_{name}"] = entry["half_life"][mask]
            per_token[f"censored_{name}"] = entry["censored"][mask]

        id_counts += np.bincount(tokens, minlength=vocab)
        # Each id once per review: the reviews containing it.
        present = np.concatenate([np.unique(row[row != 0]) for row in ids])
        id_reviews += np.bincount(present, minlength=vocab)
        for key in ("A", "abs_A", "read"):
            by_id[key] += np.bincount(tokens, weights=per_token[key], minlength=vocab)
        for name in names:
            by_id[f"abs_A_{name}"] += np.bincount(
                tokens, weights=per_token[f"abs_A_{name}"], minlength=vocab
            )
            by_id["retention"] += np.bincount(
                tokens, weights=per_token[f"retention_{name}"], minlength=vocab
            )
            by_id["retention_count"] += np.bincount(
                tokens, weights=per_token[f"retention_count_{name}"], minlength=vocab
            )

        targets = [
            (tracked[label], tokens == word_id, ids == word_id)
            for label, word_id in word_ids.items()
        ]
        targets.append((everything, np.ones(tokens.shape, dtype=bool), mask))
        for target, hits, hit_grid in targets:
            if not hits.any():
                continue
            target.reviews += int(hit_grid.any(axis=1).sum())
            target.add_values(A[hits])
            for key, values in per_token.items():
                if not key.startswith(("half_life_", "censored_")):
                    target.add(key, values[hits].sum())
            for d, name in enumerate(names):
                half_life = per_token[f"half_life_{name}"][hits]
                observed = half_life[~np.isnan(half_life)].astype(np.int64)
                target.histograms[d] = _add_histogram(target.histograms[d], observed)
                target.censored[d] += int(per_token[f"censored_{name}"][hits].sum())

    with np.errstate(invalid="ignore", divide="ignore"):
        counts = np.where(id_counts > 0, id_counts, np.nan)
        report_by_id = {
            "count": id_counts,
            "reviews": id_reviews,
            "mean_A": by_id["A"] / counts,
            "mean_abs_A": by_id["abs_A"] / counts,
            "mean_read": by_id["read"] / counts,
            "mean_retention": by_id["retention"]
            / np.where(by_id["retention_count"] > 0, by_id["retention_count"], np.nan),
        }
        for name in names:
            report_by_id[f"mean_abs_A_{name}"] = by_id[f"abs_A_{name}"] / counts
    return {
        "words": {
            label: _summaries(
                tracked[label], names, n_boot, np.random.default_rng([seed, int(word_id) + 1])
            )
            for label, word_id in word_ids.items()
        },
        "all": _summaries(everything, names, n_boot, np.random.default_rng([seed, 0])),
        "by_id": report_by_id,
    }


def top_words(report: dict, n: int = 30, min_count: int = 50, exclude=(0, 1)) -> dict:
    """The word ids whose tokens earn the logit the most, each way.

    report: a word_ledger result (its "by_id" arrays).
    n: ids per list; min_count: occurrences an id needs; exclude: ids never listed (padding
    0 and [UNK] 1 by default).
    Returns {"positive": <int64>[<= n] ids with mean A > 0, highest first; "negative": ids with
    mean A < 0, lowest first}.
    """
    by_id = report["by_id"]
    counts, mean_A = by_id["count"], by_id["mean_A"]
    eligible = counts >= min_count
    eligible[[k for k in exclude if 0 <= k < len(counts)]] = False
    ids = np.flatnonzero(eligible)
    order = ids[np.argsort(-mean_A[ids], kind="stable")]
    positive = order[mean_A[order] > 0][:n]
    negative = order[::-1][mean_A[order[::-1]] < 0][:n]
    return {"positive": positive.astype(np.int64), "negative": negative.astype(np.int64)}


# --- cross-checks ---------------------------------------------------------------------------


def occlusion(model: keras.Model, ids, batch_size: int = 256) -> np.ndarray:
    """The logit change from removing each token, as an effect: <float64>[time].

    ids: one review <int32>[time] (no padding). Entry t is logit(review) − logit(review
    without token t), dropout off: positive when token t pushes towards positive, the sign
    convention of A. The model re-reads every shortened review (later gates change too), so
    this is a cross-check of A, not its equal. A one-token review's occlusion leaves an
    empty review, whose pooled features are 0: its logit is the bias.
    """
    ids = np.asarray(ids).reshape(-1)
    if ids.size == 0 or np.any(ids == 0):
        raise ValueError("occlusion needs one review of at least one token and no padding")
    ids = ids.astype(np.int32)
    length = len(ids)
    full = _logits(model, ids[None, :])[0]
    # Row t: the review without token t, right-padded (all padding for a one-token review).
    shortened = pad([np.delete(ids, t) for t in range(length)], length=max(length - 1, 1))
    logits = [_logits(model, shortened[k : k + batch_size]) for k in range(0, length, batch_size)]
    return full - np.concatenate(logits)


def _ranks(x):
    """Ranks 0..n-1 of x, ties sharing their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts
    return (first + (counts - 1) / 2.0)[inverse.reshape(-1)]


def rank_correlation(a, b) -> float:
    """Spearman's rank correlation of two <[n]> arrays (Pearson's of the tie-averaged ranks).

    NaN when either is constant; ValueError for different lengths, n < 2 or non-finite values.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two arrays of the same length >= 2, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("rank_correlation needs finite values")
    rank_a, rank_b = _ranks(a), _ranks(b)
    rank_a -= rank_a.mean()
    rank_b -= rank_b.mean()
    denominator = np.sqrt((rank_a * rank_a).sum() * (rank_b * rank_b).sum())
    if denominator == 0:
        return float("nan")
    return float((rank_a * rank_b).sum() / denominator)
