"""Hypothesis strategies for testing tensor code against tinytt (needs ``hypothesis``).

Importable by other projects: ``from tinytt.testing.strategies import float_arrays``.
All arrays are NumPy arrays on the host; move them to a device yourself.

- ``shapes``: array shapes with bounded sides;
- ``broadcastable_shapes``: a tuple of mutually broadcastable shapes;
- ``float_arrays``: finite float arrays with |value| <= bound;
- ``tt_shapes`` / ``tt_ranks``: mode sizes and a valid TT rank chain (boundary ranks 1);
- ``tt_matrix_shapes``: (row_shape, col_shape) pairs of equal length;
- ``tt_matrix_cores``: the cores of a random TT-matrix (shapes, ranks and values drawn);
- ``embedding_ids``: an id array of any shape for a lookup, repeats and padding included;
- ``lstm_problems``: an LSTM configuration with weights, inputs, lengths and initial state.
"""

from __future__ import annotations


import numpy
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .._validate import as_int, int_arg

__all__ = ["shapes", "broadcastable_shapes", "float_arrays", "tt_shapes", "tt_ranks", "tt_matrix_shapes",
           "tt_matrix_cores", "embedding_ids", "lstm_problems"]


def _shape_bounds(where: str, min_dims, max_dims, min_side, max_side) -> tuple:
    """The four bounds as ints, checked at the call (hypothesis would only complain when drawing)."""
    min_dims, min_side = int_arg(where, "min_dims", min_dims, low=0), int_arg(where, "min_side", min_side, low=0)
    max_dims, max_side = int_arg(where, "max_dims", max_dims, low=0), int_arg(where, "max_side", max_side, low=0)
    _ordered(where, "min_dims", min_dims, "max_dims", max_dims)
    _ordered(where, "min_side", min_side, "max_side", max_side)
    if max_dims > 32:
        raise ValueError(f"{where}: max_dims must be at most 32 (NumPy's limit), got {max_dims}")
    return min_dims, max_dims, min_side, max_side


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 1, max_side: int = 5):
    """Strategy for shape tuples with ``min_dims..max_dims`` axes of size ``min_side..max_side``
    (ints >= 0, checked at the call)."""
    min_dims, max_dims, min_side, max_side = _shape_bounds("shapes", min_dims, max_dims, min_side, max_side)
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = 4,
                         min_side: int = 1, max_side: int = 5):
    """Strategy for a tuple of ``num_shapes`` shapes that broadcast together (size-1 dims
    included); arguments as for ``shapes``, ``num_shapes`` >= 1, checked at the call."""
    num_shapes = int_arg("broadcastable_shapes", "num_shapes", num_shapes)
    min_dims, max_dims, min_side, max_side = _shape_bounds("broadcastable_shapes", min_dims, max_dims,
                                                           min_side, max_side)
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).map(lambda r: r.input_shapes)


def float_arrays(shape, dtype=numpy.float64, bound: float = 5.0):
    """Strategy for arrays of ``shape`` (a tuple or a strategy) with finite values in [-bound, bound].

    ``dtype``: float16, float32 or float64. Below float64 the bound is first rounded down to
    a value of the dtype (hypothesis needs bounds that the element width represents exactly;
    float16's largest finite value is 65504).
    """
    try:
        valid = not isinstance(bound, (bool, numpy.bool_)) and bool(bound > 0) and bool(numpy.isfinite(bound))
    except (TypeError, ValueError):   # a str, None, an array ...
        valid = False
    if not valid:
        raise ValueError(f"float_arrays: bound must be a positive finite number, got {bound!r}")
    dtype = numpy.dtype(dtype)
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise ValueError(f"float_arrays: dtype must be float16, float32 or float64, got {dtype}")
    width = 8 * dtype.itemsize
    if width < 64:
        kind = dtype.type
        rounded = kind(min(bound, float(numpy.finfo(dtype).max)))
        if float(rounded) > bound:      # (compared in float64: NumPy would compare in the dtype)
            rounded = numpy.nextafter(rounded, kind(0))
        if rounded == 0:
            raise ValueError(f"float_arrays: bound {bound!r} rounds to 0 in {dtype}")
        bound = float(rounded)
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=width)
    return hnp.arrays(dtype=dtype, shape=shape, elements=elements)


def _ordered(where: str, low_name: str, low: int, high_name: str, high: int) -> None:
    if low > high:
        raise ValueError(f"{where}: {low_name} = {low} is greater than {high_name} = {high}")


def tt_shapes(min_order: int = 1, max_order: int = 6, min_mode: int = 1, max_mode: int = 6):
    """Strategy for TT mode sizes ``(n_1, ..., n_N)``: N in min_order..max_order, each mode
    in min_mode..max_mode (all at least 1)."""
    where = "tt_shapes"
    min_order, max_order = int_arg(where, "min_order", min_order), int_arg(where, "max_order", max_order)
    min_mode, max_mode = int_arg(where, "min_mode", min_mode), int_arg(where, "max_mode", max_mode)
    _ordered(where, "min_order", min_order, "max_order", max_order)
    _ordered(where, "min_mode", min_mode, "max_mode", max_mode)
    return st.lists(st.integers(min_mode, max_mode), min_size=min_order, max_size=max_order).map(tuple)


def tt_ranks(order: int, max_rank: int = 5):
    """Strategy for a rank chain ``(1, r_1, ..., r_{N-1}, 1)`` with internal ranks in 1..max_rank
    (``order`` and ``max_rank`` ints >= 1, checked at the call)."""
    return _tt_ranks(int_arg("tt_ranks", "order", order), int_arg("tt_ranks", "max_rank", max_rank))


@st.composite
def _tt_ranks(draw, order: int, max_rank: int):
    inner = draw(st.lists(st.integers(1, max_rank), min_size=order - 1, max_size=order - 1))
    return (1, *inner, 1)


def tt_matrix_shapes(min_order: int = 1, max_order: int = 4, max_mode: int = 5):
    """Strategy for ``(row_shape, col_shape)`` of one length N in min_order..max_order, modes
    in 1..max_mode (ints >= 1, min_order <= max_order; checked at the call)."""
    where = "tt_matrix_shapes"
    min_order, max_order = int_arg(where, "min_order", min_order), int_arg(where, "max_order", max_order)
    _ordered(where, "min_order", min_order, "max_order", max_order)
    return _tt_matrix_shapes(min_order, max_order, int_arg(where, "max_mode", max_mode))


@st.composite
def _tt_matrix_shapes(draw, min_order: int, max_order: int, max_mode: int):
    n = draw(st.integers(min_order, max_order))
    rows = tuple(draw(st.lists(st.integers(1, max_mode), min_size=n, max_size=n)))
    cols = tuple(draw(st.lists(st.integers(1, max_mode), min_size=n, max_size=n)))
    return rows, cols


def _rng(draw):
    """A NumPy generator from a drawn seed: large arrays stay cheap to draw and reproducible."""
    return numpy.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))


def tt_matrix_cores(min_order: int = 1, max_order: int = 4, max_mode: int = 5, max_rank: int = 4,
                    dtype=numpy.float64):
    """Strategy for the cores of a random TT-matrix: a list of N arrays ``(r_{k-1}, v_k, d_k, r_k)``
    with shapes from ``tt_matrix_shapes``, ranks from ``tt_ranks`` and standard normal entries
    (from a drawn seed) in ``dtype`` (a float or complex dtype; complex entries have independent
    real and imaginary parts of variance 1/2 each). ``[c.shape[1] for c in cores]`` is the row
    shape, ``c.shape[2]`` the column shape; for real dtypes ``tinytt.TTMatrix(cores).full()``
    is the dense matrix (tinytt's TT containers take real cores only: compare complex draws
    with a dense einsum of your own). Arguments are checked at the call."""
    shapes_ = tt_matrix_shapes(min_order, max_order, max_mode)
    max_rank = int_arg("tt_matrix_cores", "max_rank", max_rank)
    try:
        resolved = numpy.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.kind not in "fc":
        raise ValueError(f"tt_matrix_cores: dtype must be a float or complex dtype, got {dtype!r}")
    return _tt_matrix_cores(shapes_, max_rank, resolved)


@st.composite
def _tt_matrix_cores(draw, shapes_, max_rank: int, dtype):
    row_shape, col_shape = draw(shapes_)
    ranks = draw(_tt_ranks(len(row_shape), max_rank))
    rng = _rng(draw)

    def normal(shape):
        if dtype.kind == "c":   # a complex dtype: a nonzero imaginary part too
            return ((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / numpy.sqrt(2.0)).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)

    return [normal((ranks[k], v, d, ranks[k + 1])) for k, (v, d) in enumerate(zip(row_shape, col_shape))]


def embedding_ids(num_embeddings: int, max_dims: int = 3, max_side: int = 6, padding_idx=None):
    """Strategy for an int64 id array of 1..max_dims axes (sides 1..max_side) with values in
    ``[0, num_embeddings)``: small id ranges make repeats common (the deduplication paths);
    with ``padding_idx`` the padding id is written at a drawn position in about half the draws.
    Arguments are checked at the call (ints >= 1; ValueError for a padding_idx out of range)."""
    where = "embedding_ids"
    num_embeddings = int_arg(where, "num_embeddings", num_embeddings)
    max_dims, max_side = int_arg(where, "max_dims", max_dims), int_arg(where, "max_side", max_side)
    if padding_idx is not None:
        pad = as_int(padding_idx)
        if pad is None or not 0 <= pad < num_embeddings:
            raise ValueError(f"embedding_ids: padding_idx must be None or an int in [0, {num_embeddings}), "
                             f"got {padding_idx!r}")
        padding_idx = pad
    return _embedding_ids(num_embeddings, max_dims, max_side, padding_idx)


@st.composite
def _embedding_ids(draw, num_embeddings: int, max_dims: int, max_side: int, padding_idx):
    shape = draw(shapes(min_dims=1, max_dims=max_dims, min_side=1, max_side=max_side))
    size = int(numpy.prod(shape))
    ids = numpy.array(draw(st.lists(st.integers(0, num_embeddings - 1), min_size=size, max_size=size)),
                      dtype=numpy.int64).reshape(shape)
    if padding_idx is not None and draw(st.booleans()):
        ids.reshape(-1)[draw(st.integers(0, size - 1))] = padding_idx
    return ids


def lstm_problems(max_batch: int = 4, max_time: int = 6, max_size: int = 4, max_layers: int = 2,
                  weight_scales=(0.3, 1.0, 2.5)):
    """Strategy for an LSTM problem, as a dict (float64 NumPy arrays):

    - ``input_size``, ``hidden_size``, ``num_layers``, ``bidirectional``: the configuration
      (sizes 1..max_size, 1..max_layers layers);
    - ``weights``: ``{name: array}`` in ``tinytt.nn.LSTM``'s names and layout
      (``weight_ih_l{k}`` (in, 4H), ``weight_hh_l{k}`` (H, 4H), ``bias_l{k}`` (4H,), suffix
      ``_reverse``; gates i, f, g, o; PyTorch holds the transposes), uniform in
      ``[-s, s]`` with s drawn from ``weight_scales`` (large s saturates the gates);
    - ``x`` ``(B, T, input_size)``; ``lengths``: None or ``(B,)`` int64 in [1, T];
    - ``h0``, ``c0``: None or ``(num_layers * directions, B, H)``.

    Load the weights with ``LSTM(...).load_state_dict(problem["weights"])`` (dtype float64).
    The sizes are ints >= 1 and ``weight_scales`` a non-empty sequence of finite numbers >= 0
    (checked at the call).
    """
    where = "lstm_problems"
    sizes = [int_arg(where, n, v) for n, v in (("max_batch", max_batch), ("max_time", max_time),
                                                   ("max_size", max_size), ("max_layers", max_layers))]
    try:
        scales = tuple(float(s) for s in weight_scales)
    except (TypeError, ValueError):
        scales = ()
    if not scales or not all(0 <= s < float("inf") for s in scales):
        raise ValueError(f"{where}: weight_scales must be a non-empty sequence of finite numbers >= 0, "
                         f"got {weight_scales!r}")
    return _lstm_problems(*sizes, scales)


@st.composite
def _lstm_problems(draw, max_batch: int, max_time: int, max_size: int, max_layers: int, weight_scales):
    batch, time = draw(st.integers(1, max_batch)), draw(st.integers(1, max_time))
    n_in, hidden = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    num_layers, bidirectional = draw(st.integers(1, max_layers)), draw(st.booleans())
    n_dir = 2 if bidirectional else 1
    scale = draw(st.sampled_from(weight_scales))
    rng = _rng(draw)
    weights = {}
    for layer in range(num_layers):
        for d in range(n_dir):
            sfx = f"l{layer}" + ("_reverse" if d else "")
            layer_in = n_in if layer == 0 else hidden * n_dir
            weights[f"weight_ih_{sfx}"] = rng.uniform(-scale, scale, (layer_in, 4 * hidden))
            weights[f"weight_hh_{sfx}"] = rng.uniform(-scale, scale, (hidden, 4 * hidden))
            weights[f"bias_{sfx}"] = rng.uniform(-scale, scale, 4 * hidden)
    x = draw(float_arrays((batch, time, n_in), bound=3.0))
    lengths = draw(st.none() | st.lists(st.integers(1, time), min_size=batch, max_size=batch))
    state_shape = (num_layers * n_dir, batch, hidden)
    with_state = draw(st.booleans())
    return {"input_size": n_in, "hidden_size": hidden, "num_layers": num_layers, "bidirectional": bidirectional,
            "weights": weights, "x": x,
            "lengths": None if lengths is None else numpy.array(lengths, dtype=numpy.int64),
            "h0": rng.uniform(-1.5, 1.5, state_shape) if with_state else None,
            "c0": rng.uniform(-1.5, 1.5, state_shape) if with_state else None}
