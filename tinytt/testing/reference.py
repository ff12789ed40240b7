"""Reference cases: a portable ``.npz`` of float64 inputs and expected outputs for TT-SVD,
TT-matrix row lookup and the LSTM, for testing tinytt and other implementations against it.

Every expected output is computed here with plain NumPy code that does not call tinytt's
algorithms: TT-SVD with a textbook sweep of full SVDs, TT-matrix rows as ``full()[ids]`` of
the dense matrix (core gradients as dense contractions), and the LSTM with a step-by-step
NumPy forward and a hand-written NumPy backpropagation through time. The tests rebuild each
case with tinytt and compare to 1e-10 (``tests/test_reference_cases.py``); the example
``examples/check_torch_layer.py`` checks a PyTorch TT layer against the ``tt_rows`` cases.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy

__all__ = ["reference_cases", "load_reference_cases", "SCHEMA_VERSION"]

#: version of the key layout written by ``reference_cases`` (stored under ``"schema"``).
SCHEMA_VERSION = 1
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


# --- TT-SVD: a textbook sweep, independent of tinytt.tt.decompositions ----------------------
def _dense_tt_svd(a, eps, max_rank):
    """Left-to-right full SVDs with per-bond threshold eps ||a|| / sqrt(N-1).

    Also checks that every truncation is well defined (a clear gap between the last kept and
    the first dropped singular value, and a tail sum not within 1e-6 of the threshold), so any
    correct TT-SVD must reproduce the same ranks and, up to rounding, the same reconstruction.
    """
    shape = a.shape
    nd = len(shape)
    delta = eps * numpy.linalg.norm(a) / math.sqrt(max(nd - 1, 1))
    cores, rest, r_prev = [], a, 1
    for k in range(nd - 1):
        u, s, vt = numpy.linalg.svd(rest.reshape(r_prev * shape[k], -1), full_matrices=False)
        tails = numpy.concatenate([numpy.cumsum((s * s)[::-1])[::-1], [0.0]])  # tails[r] = sum_{i>=r}
        r = max(int(numpy.flatnonzero(tails <= delta * delta)[0]), 1)
        if max_rank is not None:
            r = min(r, max_rank)
        if r < s.shape[0]:
            if not s[r - 1] > 1.01 * s[r]:
                raise AssertionError(f"reference TT-SVD: no clear singular-value gap at bond {k + 1}")
            if max_rank is None or r < max_rank:
                near = abs(tails[r] - delta * delta) <= 1e-6 * delta * delta
                if near or abs(tails[r - 1] - delta * delta) <= 1e-6 * delta * delta:
                    raise AssertionError(f"reference TT-SVD: tail sum too close to the threshold at bond {k + 1}")
        cores.append(u[:, :r].reshape(r_prev, shape[k], r))
        rest = s[:r, None] * vt[:r]
        r_prev = r
    cores.append(rest.reshape(r_prev, shape[-1], 1))
    return cores


def _tt_full(cores):
    res = cores[0].reshape(cores[0].shape[1], -1)
    for c in cores[1:]:
        res = (res @ c.reshape(c.shape[0], -1)).reshape(-1, c.shape[2])
    return res.reshape([c.shape[1] for c in cores])


def _tt_svd_case(a, eps, max_rank):
    cores = _dense_tt_svd(a, eps, max_rank)
    full = _tt_full(cores)
    ranks = numpy.array([1] + [c.shape[2] for c in cores], dtype=numpy.int64)
    return {"input": a, "eps": numpy.float64(eps),
            "max_rank": numpy.int64(-1 if max_rank is None else max_rank),
            "ranks": ranks, "full": full}


def _random_tt_dense(rng, shape, ranks):
    cores = [rng.standard_normal((ranks[k], n, ranks[k + 1])) for k, n in enumerate(shape)]
    return _tt_full(cores)


# --- TT-matrix rows: dense ground truth --------------------------------------------------------
def _tt_matrix_subscripts(n):
    """einsum subscripts of the cores and of W as (i_1..i_N, j_1..j_N)."""
    rank = _LETTERS[: n + 1]
    rows = _LETTERS[n + 1: 2 * n + 1]
    cols = _LETTERS[2 * n + 1: 3 * n + 1]
    subs = [rank[k] + rows[k] + cols[k] + rank[k + 1] for k in range(n)]
    return subs, rows + cols


def _tt_matrix_dense(cores):
    n = len(cores)
    subs, out = _tt_matrix_subscripts(n)
    w = numpy.einsum(",".join(subs) + "->" + out, *cores)
    v = math.prod(c.shape[1] for c in cores)
    return w.reshape(v, -1)


def _tt_matrix_core_grads(cores, d_w):
    """Gradient of sum(W * d_w) with respect to each core, by dense contraction."""
    n = len(cores)
    subs, out = _tt_matrix_subscripts(n)
    d_w = d_w.reshape([c.shape[1] for c in cores] + [c.shape[2] for c in cores])
    grads = []
    for k in range(n):
        others = [s for j, s in enumerate(subs) if j != k]
        ops = [c for j, c in enumerate(cores) if j != k]
        # the boundary ranks r_0 = r_N = 1 occur in one core only: leave them out, reshape back
        kept = "".join(ch for ch in subs[k] if ch in out or any(ch in s for s in others))
        g = numpy.einsum(",".join([out] + others) + "->" + kept, d_w, *ops)
        grads.append(g.reshape(cores[k].shape))
    return grads


def _tt_rows_case(rng, row_shape, col_shape, ranks, ids, padding_idx):
    cores = [rng.standard_normal((ranks[k], v, d, ranks[k + 1]))
             for k, (v, d) in enumerate(zip(row_shape, col_shape))]
    w = _tt_matrix_dense(cores)
    ids = numpy.asarray(ids, dtype=numpy.int64)
    rows = w[ids]
    keep = numpy.ones(ids.shape, dtype=bool) if padding_idx is None else ids != padding_idx
    rows[~keep] = 0.0
    grad_rows = rng.standard_normal(rows.shape)
    d_w = numpy.zeros_like(w)
    numpy.add.at(d_w, ids[keep], grad_rows[keep])
    case = {"row_shape": numpy.array(row_shape, dtype=numpy.int64),
            "col_shape": numpy.array(col_shape, dtype=numpy.int64),
            "ids": ids, "padding_idx": numpy.int64(-1 if padding_idx is None else padding_idx),
            "rows": rows, "grad_rows": grad_rows}
    for k, (c, g) in enumerate(zip(cores, _tt_matrix_core_grads(cores, d_w))):
        case[f"cores/{k}"] = c
        case[f"grad_cores/{k}"] = g
    return case


# --- LSTM: NumPy forward and hand-written BPTT ----------------------------------------------
def _sigmoid(z):
    return 0.5 * (1.0 + numpy.tanh(0.5 * z))


def _order(lengths, t_max, reverse):
    """perm (B, T): processing step k of row b reads position perm[b, k] (an involution)."""
    steps = numpy.arange(t_max)[None, :]
    if not reverse:
        return numpy.broadcast_to(steps, (lengths.shape[0], t_max))
    ln = lengths[:, None]
    return numpy.where(steps < ln, ln - 1 - steps, steps)


def _lstm_direction(x, w_ih, w_hh, b, h0, c0, lengths, reverse):
    bsz, t_max, _ = x.shape
    hid = w_hh.shape[0]
    rows = numpy.arange(bsz)[:, None]
    perm = _order(lengths, t_max, reverse)
    xs = x[rows, perm]
    h, c = h0.copy(), c0.copy()
    ys = numpy.zeros((bsz, t_max, hid))
    cache = []
    for k in range(t_max):
        m = (k < lengths)[:, None].astype(numpy.float64)
        z = xs[:, k] @ w_ih + h @ w_hh + b
        i, f = _sigmoid(z[:, :hid]), _sigmoid(z[:, hid:2 * hid])
        g, o = numpy.tanh(z[:, 2 * hid:3 * hid]), _sigmoid(z[:, 3 * hid:])
        c_new = f * c + i * g
        tc = numpy.tanh(c_new)
        h_new = o * tc
        cache.append((m, i, f, g, o, tc, h, c))
        ys[:, k] = m * h_new
        h = m * h_new + (1 - m) * h
        c = m * c_new + (1 - m) * c
    out = ys[rows, perm]
    return out, h, c, (xs, perm, cache)


def _lstm_direction_backward(d_out, d_h, d_c, w_ih, w_hh, saved):
    xs, perm, cache = saved
    bsz, t_max, _ = xs.shape
    hid = w_hh.shape[0]
    rows = numpy.arange(bsz)[:, None]
    d_ys = d_out[rows, perm]
    d_xs = numpy.zeros_like(xs)
    d_wih, d_whh = numpy.zeros_like(w_ih), numpy.zeros_like(w_hh)
    d_b = numpy.zeros(4 * hid)
    d_h, d_c = d_h.copy(), d_c.copy()
    for k in range(t_max - 1, -1, -1):
        m, i, f, g, o, tc, h_prev, c_prev = cache[k]
        d_hn = m * (d_h + d_ys[:, k])
        d_cn = m * d_c
        d_h_prev = (1 - m) * d_h
        d_c_prev = (1 - m) * d_c
        d_o = d_hn * tc
        d_cn = d_cn + d_hn * o * (1 - tc * tc)
        d_z = numpy.concatenate([d_cn * g * i * (1 - i), d_cn * c_prev * f * (1 - f),
                                 d_cn * i * (1 - g * g), d_o * o * (1 - o)], axis=1)
        d_c_prev = d_c_prev + d_cn * f
        d_wih += xs[:, k].T @ d_z
        d_whh += h_prev.T @ d_z
        d_b += d_z.sum(axis=0)
        d_xs[:, k] = d_z @ w_ih.T
        d_h = d_h_prev + d_z @ w_hh.T
        d_c = d_c_prev
    d_x = numpy.zeros_like(d_xs)
    d_x[rows, perm] = d_xs
    return d_x, d_wih, d_whh, d_b, d_h, d_c


def _lstm_case(rng, input_size, hidden, num_layers, bidirectional, batch, t_max, lengths):
    n_dir = 2 if bidirectional else 1
    names = [f"l{layer}" + ("_reverse" if d else "") for layer in range(num_layers) for d in range(n_dir)]
    weights = {}
    for k, sfx in enumerate(names):
        n_in = input_size if k < n_dir else hidden * n_dir
        weights[f"weight_ih_{sfx}"] = rng.uniform(-0.6, 0.6, (n_in, 4 * hidden))
        weights[f"weight_hh_{sfx}"] = rng.uniform(-0.6, 0.6, (hidden, 4 * hidden))
        weights[f"bias_{sfx}"] = rng.uniform(-0.6, 0.6, 4 * hidden)
    lengths = numpy.asarray(lengths, dtype=numpy.int64)
    x = rng.standard_normal((batch, t_max, input_size))
    h0 = 0.5 * rng.standard_normal((num_layers * n_dir, batch, hidden))
    c0 = 0.5 * rng.standard_normal((num_layers * n_dir, batch, hidden))

    def w(k):
        sfx = names[k]
        return weights[f"weight_ih_{sfx}"], weights[f"weight_hh_{sfx}"], weights[f"bias_{sfx}"]

    inp, h_n, c_n, saved, layer_inputs = x, [], [], [], []
    for layer in range(num_layers):
        outs = []
        layer_inputs.append(inp)
        for d in range(n_dir):
            k = layer * n_dir + d
            y, h, c, s = _lstm_direction(inp, *w(k), h0[k], c0[k], lengths, bool(d))
            outs.append(y)
            h_n.append(h)
            c_n.append(c)
            saved.append(s)
        inp = numpy.concatenate(outs, axis=-1)
    outputs, h_n, c_n = inp, numpy.stack(h_n), numpy.stack(c_n)

    grad_outputs = rng.standard_normal(outputs.shape)
    grad_h_n = rng.standard_normal(h_n.shape)
    grad_c_n = rng.standard_normal(c_n.shape)
    grads = {}
    grad_h0, grad_c0 = numpy.zeros_like(h0), numpy.zeros_like(c0)
    d_inp = grad_outputs
    for layer in range(num_layers - 1, -1, -1):
        d_below = numpy.zeros_like(layer_inputs[layer])
        for d in range(n_dir):
            k = layer * n_dir + d
            w_ih, w_hh, _ = w(k)
            d_out = d_inp[..., d * hidden:(d + 1) * hidden]
            d_x, d_wih, d_whh, d_b, d_h, d_c = _lstm_direction_backward(
                d_out, grad_h_n[k], grad_c_n[k], w_ih, w_hh, saved[k])
            d_below += d_x
            grads[f"weight_ih_{names[k]}"], grads[f"weight_hh_{names[k]}"] = d_wih, d_whh
            grads[f"bias_{names[k]}"] = d_b
            grad_h0[k], grad_c0[k] = d_h, d_c
        d_inp = d_below
    case = {"input_size": numpy.int64(input_size), "hidden_size": numpy.int64(hidden),
            "num_layers": numpy.int64(num_layers), "bidirectional": numpy.int64(bidirectional),
            "x": x, "lengths": lengths, "h0": h0, "c0": c0,
            "outputs": outputs, "h_n": h_n, "c_n": c_n,
            "grad_outputs": grad_outputs, "grad_h_n": grad_h_n, "grad_c_n": grad_c_n,
            "grad_x": d_inp, "grad_h0": grad_h0, "grad_c0": grad_c0}
    for name in weights:
        case[f"weights/{name}"] = weights[name]
        case[f"grad_weights/{name}"] = grads[name]
    return case


# --- the file --------------------------------------------------------------------------------
def _build(seed):
    rng = numpy.random.default_rng(seed)
    cases = {"tt_svd": [], "tt_rows": [], "lstm": []}
    # TT-SVD: exact TT ranks recovered; a rank cap on a generic tensor; eps-driven truncation of
    # a noisy low-rank tensor; a matrix with known singular values; an order-1 tensor.
    cases["tt_svd"].append(_tt_svd_case(_random_tt_dense(rng, (3, 4, 5, 6), (1, 2, 3, 2, 1)), 1e-10, None))
    for _ in range(100):  # a generic tensor whose rank-2 cap falls at a clear gap (most draws)
        try:
            capped = _tt_svd_case(rng.standard_normal((4, 5, 6)), 1e-12, 2)
            break
        except AssertionError:
            continue
    cases["tt_svd"].append(capped)
    low = _random_tt_dense(rng, (5, 4, 3, 4), (1, 2, 2, 2, 1))
    noise = rng.standard_normal(low.shape)
    noisy = low + 1e-5 * numpy.linalg.norm(low) * noise / numpy.linalg.norm(noise)
    cases["tt_svd"].append(_tt_svd_case(noisy, 1e-3, None))
    q1, _ = numpy.linalg.qr(rng.standard_normal((8, 8)))
    q2, _ = numpy.linalg.qr(rng.standard_normal((12, 8)))
    sv = 2.0 ** -numpy.arange(8)
    # tail beyond rank 3 is sum_{i>=3} 4^-i ~ 0.0208 of the energy 1.333: eps 0.2 keeps rank 3
    cases["tt_svd"].append(_tt_svd_case((q1 * sv) @ q2.T, 0.2, None))
    cases["tt_svd"].append(_tt_svd_case(rng.standard_normal(7), 1e-12, None))
    # TT-matrix rows: repeated ids, a padding id, ids of several shapes, 2 to 4 cores
    cases["tt_rows"].append(_tt_rows_case(rng, (2, 3, 4), (2, 2, 3), (1, 3, 2, 1),
                                          rng.integers(0, 24, (3, 5)).tolist() + [[5, 5, 23, 0, 5]], 5))
    cases["tt_rows"].append(_tt_rows_case(rng, (4, 5), (3, 2), (1, 4, 1), [7, 3, 7, 19, 0, 7, 3, 12, 12], None))
    ids = rng.integers(0, 24, (2, 3, 4))
    if not (ids == 0).any():  # the case's padding id must occur
        ids[0, 0, 0] = 0
    cases["tt_rows"].append(_tt_rows_case(rng, (2, 2, 3, 2), (2, 1, 2, 2), (1, 2, 3, 2, 1), ids, 0))
    # LSTM: one layer with padding; two bidirectional layers with padding
    cases["lstm"].append(_lstm_case(rng, 3, 4, 1, False, 3, 5, [5, 3, 1]))
    cases["lstm"].append(_lstm_case(rng, 2, 3, 2, True, 3, 4, [4, 2, 3]))
    return cases


def reference_cases(path, seed: int = 0) -> dict:
    """Write the reference cases to the ``.npz`` file ``path`` (used as given) and return them.

    Content is a pure function of ``seed`` (same seed, byte-identical file on one machine).
    All floating arrays are float64; integers are int64; nothing is pickled
    (``numpy.load(path)`` reads it with the default ``allow_pickle=False``).

    Schema (version 1), one flat key per array, ``<family>/<case>/<field>``:

    - ``schema`` (int64): 1; ``seed`` (int64): the seed.
    - ``tt_svd/<c>/``: ``input`` (n_1..n_N), ``eps`` (0-d), ``max_rank`` (0-d, -1 = no cap),
      ``ranks`` (N+1,) and ``full`` (n_1..n_N), the reconstruction of
      ``tt_svd(input, eps, max_rank)``: the left-to-right sweep of docs/tensor-trains.md
      (unfoldings ``(r_{k-1} n_k, n_{k+1}...n_N)`` for k = 1..N-1, each truncated SVD
      dropping singular values whose tail norm is at most ``eps ||input||_F / sqrt(N-1)``,
      then capped at ``max_rank``). Every truncation has a clear singular-value gap, so that
      sweep reproduces ``ranks`` exactly and ``full`` to rounding; a sweep in another
      direction may keep the same ranks but truncate other subspaces (a different ``full``
      within the same error bound).
    - ``tt_rows/<c>/``: ``cores/<k>`` (r_{k-1}, v_k, d_k, r_k), ``row_shape`` (N,),
      ``col_shape`` (N,), ``ids`` (integer, any shape S, with repeats), ``padding_idx``
      (0-d, -1 = none), ``rows`` (S + (D,)) = ``full()[ids]`` with the padding rows zero
      (``W[i, j] = G_1[0, i_1, j_1, :] G_2[:, i_2, j_2, :] ... G_N[:, i_N, j_N, 0]`` with
      ``(i_1..i_N)`` the C-order digits of ``i`` over ``row_shape``, ``i_1`` most
      significant, and ``(j_1..j_N)`` those of ``j`` over ``col_shape``),
      ``grad_rows`` (S + (D,)) an upstream gradient, and ``grad_cores/<k>``: the gradient
      of ``sum(rows * grad_rows)`` with respect to core k (padding positions send none).
    - ``lstm/<c>/``: ``input_size``, ``hidden_size``, ``num_layers``, ``bidirectional``
      (0-d); ``weights/<name>`` in ``tinytt.nn.LSTM`` names and layout
      (``weight_ih_l{k}`` (in, 4H), ``weight_hh_l{k}`` (H, 4H), ``bias_l{k}`` (4H,), suffix
      ``_reverse``; gates i, f, g, o; torch: ``weight_ih = W.T``, ``bias_ih + bias_hh = b``);
      ``x`` (B, T, in), ``lengths`` (B,), ``h0``, ``c0`` (layers*dirs, B, H); results
      ``outputs`` (B, T, dirs*H), ``h_n``, ``c_n``; upstream ``grad_outputs``,
      ``grad_h_n``, ``grad_c_n``; and the gradients of
      ``<grad_outputs, outputs> + <grad_h_n, h_n> + <grad_c_n, c_n>``: ``grad_x``,
      ``grad_h0``, ``grad_c0`` and ``grad_weights/<name>``.

    Returns the cases as ``load_reference_cases`` does.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"reference_cases: seed must be an int >= 0, got {seed!r}")
    seed = int(seed)
    arrays = {"schema": numpy.int64(SCHEMA_VERSION), "seed": numpy.int64(seed)}
    for family, items in _build(seed).items():
        for c, case in enumerate(items):
            for field, value in case.items():
                value = numpy.asarray(value)
                if value.dtype.kind == "f":
                    value = value.astype(numpy.float64)
                elif value.dtype.kind in "iub":
                    value = value.astype(numpy.int64)
                arrays[f"{family}/{c}/{field}"] = numpy.array(value, order="C")  # 0-d stays 0-d
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as fh:
        numpy.savez(fh, **arrays)
    return load_reference_cases(path)


def load_reference_cases(path) -> dict:
    """Read a file written by ``reference_cases``.

    Returns ``{"schema": int, "seed": int, "tt_svd": [case, ...], "tt_rows": [...],
    "lstm": [...]}`` where each case is a dict of its fields; ``cores``/``grad_cores`` are
    lists of arrays and ``weights``/``grad_weights`` dicts by parameter name.
    """
    out = {"tt_svd": [], "tt_rows": [], "lstm": []}
    with numpy.load(path, allow_pickle=False) as z:
        out["schema"], out["seed"] = int(z["schema"]), int(z["seed"])
        if out["schema"] != SCHEMA_VERSION:
            raise ValueError(f"reference cases: schema {out['schema']} is not {SCHEMA_VERSION}")
        for key in z.files:
            parts = key.split("/")
            if len(parts) < 3:
                continue
            family, c, field = parts[0], int(parts[1]), parts[2]
            items = out.setdefault(family, [])
            while len(items) <= c:
                items.append({})
            value = z[key]
            if len(parts) == 4:
                if field in ("cores", "grad_cores"):
                    lst = items[c].setdefault(field, {})
                    lst[int(parts[3])] = value
                else:
                    items[c].setdefault(field, {})[parts[3]] = value
            else:
                items[c][field] = value
    for case in out["tt_rows"]:
        for field in ("cores", "grad_cores"):
            case[field] = [case[field][k] for k in sorted(case[field])]
    return out
