"""The functions of ``kren/generated/pool.py``: the pooling maps of the pooled readout
(THEORY §3b), printed from :func:`derivations.pooled.pooling_program` by
:mod:`derivations.codegen` (``python -m derivations.codegen``; ``--check`` fails on drift).

The pooled CNN's action and predictor are the FC ones (THEORY §5.8), so the only new generated
code is the pooling of the local kernel tensors into the FC shapes the functions of
``kren.generated.fc`` take: K_pool (P, P) from the stored i ≤ j train blocks, the pooled means
(1, P), the pooled test×train kernel (P1, P2) and the pooled test diagonal (P0,).
"""
from __future__ import annotations

from .pooled import pooling_program

_N_CHECK = ["if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:",
            "    raise ValueError(f'n (number of patches) must be a positive integer, got {n!r}')",
            "n = int(n)"]


def pool_fns() -> list:
    """The Fn specifications of kren/generated/pool.py (derivations.codegen prints them)."""
    from .codegen import Fn
    prog = pooling_program()
    defs = prog.defs
    pre_t = _N_CHECK + ["blocks, pairs, P = tensor(blocks, pairs, n)",
                        "if np.any(pairs[:, 0] > pairs[:, 1]) or "
                        "np.unique(pairs, axis=0).shape[0] != pairs.shape[0]:",
                        "    raise ValueError('pairs must be distinct patch pairs (i, j) with "
                        "i <= j (the stored blocks of a kernel tensor)')"]
    complete = ["if pairs.shape[0] != n*(n + 1)//2:",
                "    raise ValueError(f'K_pool needs every patch pair i <= j < n = {n}: "
                "{n*(n + 1)//2} blocks (a CNN kernel tensor, kren.kernels.train_kernels), got "
                "{pairs.shape[0]}; use pooled_kernel_partial for a partial sum')"]
    pre_x = ["Kx = np.asarray(Kx)",
             "if Kx.ndim != 4 or Kx.shape[0] != Kx.shape[1]:",
             "    raise ValueError(f'Kx must hold every block K_ij(x1, x2), shape (n, n, P1, P2) "
             "(kren.kernels.cross_kernels), got {Kx.shape}')",
             "n = Kx.shape[0]", "P1, P2 = Kx.shape[2:]"]
    pre_d = ["Kd = np.asarray(Kd)",
             "if Kd.ndim != 3 or Kd.shape[0] != Kd.shape[1]:",
             "    raise ValueError(f'Kd must hold every K_ij(x0, x0), shape (n, n, P0) "
             "(kren.kernels.test_diagonal), got {Kd.shape}')",
             "n = Kd.shape[0]", "P0 = Kd.shape[2]"]
    pre_mu = ["mu = np.asarray(mu, dtype=float)",
              "if mu.ndim != 2:",
              "    raise ValueError(f'mu must hold the unit means mu_i(x), shape (n, P), got "
              "{mu.shape}')",
              "n, P = mu.shape"]
    full = {"Kx": ("full", "Kx"), "Kd": ("full", "Kd")}
    return [
        Fn("pooled_kernel", ["blocks", "pairs", "n"],
           """Pooled train kernel (THEORY §3b), shape (P, P), from the stored i ≤ j blocks:

           K_pool = (1/n²) Σ_ij K_ij = (1/n²) [Σ_i K_ii + Σ_{i<j} (K_ij + K_ijᵀ)]

           blocks (n(n+1)/2, P, P) and pairs (n(n+1)/2, 2) of a CNN KernelTensor (every pair
           i ≤ j once); n the number of patches. The pooled CNN's action is the FC action on
           this block (kren.generated.fc with blocks = K_pool[None], mu = pooled_means(mu)).
           """, pre_t + complete, defs, ["K_pool"]),
        Fn("pooled_kernel_partial", ["blocks", "pairs", "n"],
           """The contribution of the given blocks to K_pool (THEORY §3b), shape (P, P):

           (1/n²) [Σ_{(i,i) given} K_ii + Σ_{(i,j) given, i<j} (K_ij + K_ijᵀ)]

           Summed over disjoint groups of pairs that together hold every i ≤ j once, it is
           pooled_kernel (used to accumulate K_pool without holding all n(n+1)/2 blocks).
           """, pre_t, defs, ["K_pool"]),
        Fn("pooled_means", ["mu"],
           """Pooled unit means (THEORY §3b), shape (1, P): μ̄(x) = (1/n) Σ_i μ_i(x).

           mu (n, P): the unit means μ_i(x^μ) of every patch (zero for zero-mean activations).
           """, pre_mu, defs, ["mu_pool"]),
        Fn("pooled_cross_kernel", ["Kx"],
           """Pooled kernel between two input sets (THEORY §3b, §4), shape (P1, P2):

           Kx_pool(x1, x2) = (1/n²) Σ_ij K_ij(x1, x2)   (all n² ordered blocks; K_ij(x1, x2) ≠
           K_ji(x1, x2)ᵀ in general)

           Kx: full tensor (n, n, P1, P2) of kren.kernels.cross_kernels. The pooled predictor is
           kren.generated.fc.renormalized_cross_kernel on this block and the pooled means.
           """, pre_x, defs, ["Kx_pool"], tensors=full),
        Fn("pooled_test_diagonal", ["Kd"],
           """Pooled kernel of every test input with itself (THEORY §3b, §4), shape (P0,):

           Kd_pool(x0) = (1/n²) Σ_ij K_ij(x0, x0)

           Kd: (n, n, P0) of kren.kernels.test_diagonal. The pooled predictor variance uses
           kren.generated.fc.renormalized_test_diagonal on it.
           """, pre_d, defs, ["Kd_pool"], tensors=full),
    ]
