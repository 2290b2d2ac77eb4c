"""Why the Anderson solve of a CNN with D outputs needs ~40 iterations: the spectrum of the
fixed-point map at the saddle point (issues 10 and 13; THEORY §3, §3c).

The printed zero-mean map is Q ↦ F(Q) = (𝟙 + G(Q)/(N λ1 n))⁻¹ (``fixed_point_zero_mean``). This
script solves the CNN on digits to a tight tolerance, then finds the largest eigenvalues w of the
Jacobian J = ∂F/∂Q at the solution with ARPACK (scipy.sparse.linalg.eigs), each Jacobian-vector
product a central difference of two evaluations of the map (step 1e-6 along a unit vector). For
the D-output case it also reports the structure of each eigenvector M (an (nD)×(nD) matrix): how
much of its norm² a single Kronecker product (patch factor a) ⊗ (output factor b) holds, the
overlap of a's leading eigenvector with the leading eigenvector of the output-traced Q
(Σ_d Q_{(i,d),(j,d)}), and whether b is the all-ones output direction.

Anderson mixing behaves like GMRES on 𝟙 − J: with the eigenvalues of 𝟙 − J in [a, b] (all real
here) it gains about one decade every 2.3/log((√κ+1)/(√κ−1)) iterations, κ = b/a; the script
prints that estimate.

    python benchmarks/fixed_point_spectrum.py [--P 150] [--classes all|even-odd] [--mask 2]
                                              [--N 50] [--k 12]

Measured (2026-12-02, see benchmarks/results/fixed_point_spectrum.txt): 10-class digits P = 150,
2×2/2 (n = 16, D = 10): w = −11.3, then nine between −3.1 and −2.5 (κ ≈ 12); even/odd P = 300,
single output: max |w| = 0.94 (κ ≈ 2).
"""
from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigs

import kren
from kren.data import load_digits
from kren.saddle import solve
from kren.saddle.factory import problem_for


def build(a):
    """The CNN's saddle problem on the digits of ``a`` (kernels from a short fit), and Y."""
    if a.classes == "all":
        ds = load_digits(classes="all", n_train=a.P, n_test=10, seed=0, one_hot=True)
        Y, Yfit = ds.y_train, ds.y_train
    else:
        ds = load_digits(classes=a.classes, n_train=a.P, n_test=10, seed=0)
        # a two-column fit keeps the stacked tensor the matrix problem reads; Y is one column
        Y, Yfit = ds.y_train[:, None], np.stack([ds.y_train, -ds.y_train], axis=1)
    cnn = kren.CNN(N=a.N, T=a.T, mask=(a.mask, a.mask), stride=a.mask, input_shape=(1, 8, 8),
                   max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # max_iter = 1: only the kernels are wanted
        cnn.fit(ds.X_train, Yfit)
    arch = cnn.arch_
    return problem_for(arch.structure, cnn.kernels_, Y, a.T, a.N, arch.lambda1,
                       arch.zero_mean), Y.shape[1]


def structure(M, Q, n, D) -> str:
    """Kronecker rank-1 fraction of M, overlap of its patch factor with Q's, output factor."""
    R = M.reshape(n, D, n, D).transpose(0, 2, 1, 3).reshape(n * n, D * D)
    U, s, Vt = np.linalg.svd(R)
    A, B = U[:, 0].reshape(n, n), Vt[0].reshape(D, D)
    wa, va = np.linalg.eigh(0.5 * (A + A.T))
    a_top = va[:, np.argmax(np.abs(wa))]
    q_top = np.linalg.eigh(np.einsum("idjd->ij", Q.reshape(n, D, n, D)))[1][:, -1]
    ones = abs(B.sum()) / (D * np.linalg.norm(B))
    return (f"Kronecker rank-1 share {s[0] ** 2 / np.sum(s ** 2):.2f}, patch factor · top "
            f"eigenvector of Σ_d Q_(i,d),(j,d) = {abs(a_top @ q_top):.3f}, output factor "
            f"{'≈ all-ones' if ones > 0.9 else 'contrast (sums to ~0)' if ones < 0.1 else 'mixed'}"
            f" ({ones:.2f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--P", type=int, default=150)
    ap.add_argument("--classes", default="all", help="'all' (10 classes) or 'even-odd'")
    ap.add_argument("--mask", type=int, default=2)
    ap.add_argument("--N", type=float, default=50.0)
    ap.add_argument("--T", type=float, default=0.1)
    ap.add_argument("--k", type=int, default=12, help="eigenvalues wanted")
    a = ap.parse_args(argv)
    problem, D = build(a)
    t = time.perf_counter()
    sol = solve(problem, tol=1e-11, max_iter=1000, method="anderson")
    if not sol.result.converged:
        raise SystemExit(f"the reference solve did not converge: {sol.result.message}")
    print(f"CNN {a.mask}x{a.mask}/{a.mask} n = {problem.n}, D = {D}, P = {a.P}, N = {a.N}, "
          f"T = {a.T}: Anderson to tol 1e-11 in {sol.result.n_iter} iterations "
          f"({time.perf_counter() - t:.1f} s); {problem.dim} coordinates")
    Q = np.asarray(sol.Q).reshape(problem.size, problem.size) if D > 1 else np.asarray(sol.Q)
    x = problem.pack(Q)
    h = 1e-6

    def jv(v):
        v = np.asarray(v, dtype=float).ravel()
        nv = np.linalg.norm(v)
        e = h * v / nv
        return (problem.evaluate(x + e).image - problem.evaluate(x - e).image) / (2 * h) * nv

    op = LinearOperator((x.size, x.size), matvec=jv, dtype=float)
    k = min(a.k, x.size - 2)
    w, V = eigs(op, k=k, which="LM", tol=1e-5)
    order = np.argsort(-np.abs(w))
    w, V = w[order], V[:, order]
    print(f"largest |w| of J = ∂F/∂Q: {np.array2string(np.round(w, 3), max_line_width=200)}")
    real = np.all(np.abs(w.imag) < 1e-6 * np.abs(w).max())
    if real:
        hi = 1 - w.real.min()
        lo = max(min(1 - w.real.max(), 1.0), 1e-12)
        kappa = hi / lo
        rate = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
        print(f"1 − w for these w lies in [{1 - w.real.max():.2f}, {hi:.2f}]; the rest of the "
              f"spectrum is nearer w = 0, so κ(1 − J) ≈ {kappa:.1f}, GMRES-like rate {rate:.2f}, ≈ "
              f"{math.log(10) / -math.log(rate):.1f} iterations a decade")
    if D > 1:
        for j in range(min(len(w), 6)):
            M = problem.unpack(V[:, j].real)[0]
            print(f"  w = {w[j].real:8.3f}: {structure(M, Q, problem.n, D)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
