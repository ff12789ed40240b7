"""Test a PyTorch TT embedding against tinytt: reference cases and a hypothesis property.

    python examples/check_torch_layer.py [cases.npz]

The PyTorch layer below is written from scratch (it is the thing under test): cores are
``nn.Parameter``s of shape (r_{k-1}, v_k, d_k, r_k), a row id is split into C-order digits
(first digit most significant) and each token's row is the left-to-right product of its
core slices. Two checks, both in float64:

1. the reference cases of ``tinytt.testing.reference_cases`` (written to a temporary file
   unless a path is given): copy the stored cores into the torch layer, compare its rows
   and core gradients with the stored ones (computed from the dense matrix);
2. a hypothesis property: for random shapes, ranks, cores and ids, the torch layer and
   ``tinytt.tt.lookup.tt_matrix_rows`` give the same rows and core gradients.

Prints one PASS line per check. Exits 0 with a message when torch (or, for the second
check, hypothesis) is not installed.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

import numpy

try:
    import torch
except ImportError:
    torch = None


def make_torch_tt_embedding():
    """Define the layer under test (only possible when torch is importable)."""

    class TorchTTEmbedding(torch.nn.Module):
        """rows[b] = G_1[:, i_1(b)] x ... x G_N[:, i_N(b)] for C-order digits of ids[b]."""

        def __init__(self, row_shape, col_shape, ranks, padding_idx=None, dtype=torch.float64):
            super().__init__()
            self.row_shape, self.col_shape = tuple(row_shape), tuple(col_shape)
            self.padding_idx = padding_idx
            self.cores = torch.nn.ParameterList(
                torch.nn.Parameter(torch.randn(ranks[k], v, d, ranks[k + 1], dtype=dtype))
                for k, (v, d) in enumerate(zip(row_shape, col_shape)))

        def digits(self, ids):
            out, rest = [], ids
            for k in range(len(self.row_shape)):
                stride = math.prod(self.row_shape[k + 1:])
                out.append(rest // stride)       # first digit most significant (C order)
                rest = rest % stride
            return out

        def forward(self, ids):
            flat = ids.reshape(-1)
            res = None
            for core, digit in zip(self.cores, self.digits(flat)):
                sl = core.permute(1, 0, 2, 3)[digit]            # (B, r_{k-1}, d_k, r_k)
                if res is None:
                    res = sl[:, 0]                              # (B, d_1, r_1)
                else:                                           # (B, D_<k, r) x (B, r, d_k r_k)
                    b, r0, d, r1 = sl.shape
                    res = torch.bmm(res, sl.reshape(b, r0, d * r1)).reshape(b, -1, r1)
            rows = res.reshape(flat.shape[0], -1)
            if self.padding_idx is not None:
                rows = rows * (flat != self.padding_idx).unsqueeze(1).to(rows.dtype)
            return rows.reshape(*ids.shape, rows.shape[-1])

    return TorchTTEmbedding


def check_reference_cases(layer_cls, path):
    from tinytt.testing.reference import load_reference_cases

    cases = load_reference_cases(path)
    for n, c in enumerate(cases["tt_rows"]):
        ranks = [1] + [g.shape[3] for g in c["cores"]]
        pad = None if int(c["padding_idx"]) < 0 else int(c["padding_idx"])
        layer = layer_cls(c["row_shape"].tolist(), c["col_shape"].tolist(), ranks, padding_idx=pad)
        with torch.no_grad():
            for p, g in zip(layer.cores, c["cores"]):
                p.copy_(torch.from_numpy(g))
        rows = layer(torch.from_numpy(c["ids"]))
        numpy.testing.assert_allclose(rows.detach().numpy(), c["rows"], rtol=1e-10, atol=1e-12)
        (rows * torch.from_numpy(c["grad_rows"])).sum().backward()
        for k, (p, g) in enumerate(zip(layer.cores, c["grad_cores"])):
            numpy.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-10, atol=1e-12,
                                          err_msg=f"case {n}, core {k}")
        print(f"PASS reference case tt_rows/{n}: ids {tuple(c['ids'].shape)}, rows and "
              f"{len(c['cores'])} core gradients match (float64, rtol 1e-10)")


def check_property(layer_cls):
    try:
        from hypothesis import given, settings
        from hypothesis import strategies as st
    except ImportError:
        print("SKIP hypothesis property: hypothesis is not installed (pip install hypothesis)")
        return
    from tinytt import Tensor
    from tinytt.testing.strategies import tt_matrix_shapes, tt_ranks
    from tinytt.tt.lookup import tt_matrix_rows

    @st.composite
    def problems(draw):
        row_shape, col_shape = draw(tt_matrix_shapes(min_order=1, max_order=3, max_mode=4))
        ranks = draw(tt_ranks(len(row_shape), max_rank=3))
        n_rows = math.prod(row_shape)
        ids = draw(st.lists(st.integers(0, n_rows - 1), min_size=1, max_size=12))
        pad = draw(st.one_of(st.none(), st.sampled_from(ids)))
        seed = draw(st.integers(0, 2**32 - 1))
        return row_shape, col_shape, ranks, numpy.array(ids, dtype=numpy.int64), pad, seed

    runs = []

    @settings(max_examples=25, deadline=None, database=None)
    @given(problems())
    def torch_matches_tinytt(problem):
        row_shape, col_shape, ranks, ids, pad, seed = problem
        rng = numpy.random.default_rng(seed)
        cores = [rng.standard_normal((ranks[k], v, d, ranks[k + 1]))
                 for k, (v, d) in enumerate(zip(row_shape, col_shape))]
        upstream = rng.standard_normal((ids.shape[0], math.prod(col_shape)))
        # tinytt
        tt_cores = [Tensor(g.copy(), requires_grad=True) for g in cores]
        rows = tt_matrix_rows(tt_cores, ids, row_shape, col_shape, padding_idx=pad)
        rows.backward(upstream)
        # torch
        layer = layer_cls(row_shape, col_shape, ranks, padding_idx=pad)
        with torch.no_grad():
            for p, g in zip(layer.cores, cores):
                p.copy_(torch.from_numpy(g))
        out = layer(torch.from_numpy(ids))
        (out * torch.from_numpy(upstream)).sum().backward()
        numpy.testing.assert_allclose(out.detach().numpy(), rows.data, rtol=1e-10, atol=1e-12)
        for p, t in zip(layer.cores, tt_cores):
            numpy.testing.assert_allclose(p.grad.numpy(), t.grad, rtol=1e-10, atol=1e-12)
        runs.append(1)

    torch_matches_tinytt()  # hypothesis runs the examples here and raises on a counterexample
    print(f"PASS hypothesis property: torch layer == tinytt lookup on {len(runs)} random "
          "shapes/ranks/ids (rows and core gradients, float64)")


def main(argv) -> int:
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="?", default=None,
                        help="a reference-cases .npz (default: write seed 0's cases to a temporary file)")
    args = parser.parse_args(argv[1:])
    if torch is None:
        print("SKIP: torch is not installed; nothing to check (pip install torch)")
        return 0
    layer_cls = make_torch_tt_embedding()
    if args.cases is not None:
        check_reference_cases(layer_cls, args.cases)
    else:
        from tinytt.testing import reference_cases

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cases.npz")
            reference_cases(path, seed=0)
            check_reference_cases(layer_cls, path)
    check_property(layer_cls)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
