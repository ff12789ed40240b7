"""Tensor trains: containers, decompositions, algebra, shapes and initialisation.

    from tinytt import tt as ttt    # or the re-exports in tinytt
    A = ttt.tt_svd(dense, eps=1e-10)            # TensorTrain, ||dense - A.full()|| <= eps ||dense||
    B = ttt.round(A + A, 1e-12)                 # ranks of A again
    M = ttt.glorot_tt_matrix((25, 30, 40), (4, 8, 8), 16)
    rows = M.rows(ids)                          # differentiable lookup, never builds M.full()

Array-level algorithms (lists of NumPy/CuPy cores) live in ``cores`` and ``decompositions``;
``TensorTrain`` and ``TTMatrix`` hold ``Tensor`` cores so their dense views and algebra are
differentiable.
"""

from .algebra import add, dot, hadamard, norm, round_tt, scale, sub
from .decompositions import choose_rank, orthogonalize_cores, round_cores, tt_svd_cores
from .init import glorot_std, glorot_tt_matrix, glorot_tt_matrix_cores
from .shapes import auto_shape, suggest_shape, tt_matrix_num_params
from .tensor_train import TensorTrain, random_tt, tt_svd
from .tt_matrix import TTMatrix, tt_matrix_svd

round = round_tt  # noqa: A001 - the TT name; shadows the builtin only inside this namespace

__all__ = [
    "TensorTrain", "TTMatrix", "tt_svd", "tt_matrix_svd", "random_tt",
    "add", "sub", "scale", "hadamard", "dot", "norm", "round", "round_tt",
    "auto_shape", "suggest_shape", "tt_matrix_num_params",
    "glorot_tt_matrix", "glorot_tt_matrix_cores", "glorot_std",
    "tt_svd_cores", "round_cores", "orthogonalize_cores", "choose_rank",
]
