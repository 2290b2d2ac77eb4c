"""Fewer large temporaries in an evaluation: reused scratch buffers (kren.scratch), the in-place
factorization of A (kren.linalg.cho_factor(overwrite=True)), A = T𝟙 + K_R in place
(kren.linalg.shifted) and B = A⁻¹ − zzᵀ in potri's copy (kren.linalg.inverse_minus_outer).
Each gives the numbers of the form it replaces, bit for bit on the CPU; the D-output
evaluation allocates its large temporaries once, and nothing it returns lives in a buffer
that the next evaluation overwrites."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from kren.generated import multi
from kren.linalg import (NotPositiveDefiniteError, cho_factor, cho_inverse, cho_solve,
                         inverse_minus_outer, shifted)
from kren.multi_linalg import multi_pair_combine, multi_pair_contract_inverse
from kren.saddle.multi import MultiMatrixProblem
from kren.scratch import ScratchPool, scratch


def _tensor(n, P, seed):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, P, 3 * P))
    pairs = np.array([(i, j) for i in range(n) for j in range(i, n)])
    return np.stack([F[i] @ F[j].T / (3 * P) for i, j in pairs]), pairs


def _spd(k, seed, shift=0.5):
    X = np.random.default_rng(seed).standard_normal((k, k))
    return X @ X.T / k + shift * np.eye(k)


def test_scratch_without_a_pool_is_a_new_array_each_time():
    a, b = scratch("x", (3, 4), np.float32), scratch("x", (3, 4), np.float32)
    assert a.shape == (3, 4) and a.dtype == np.float32 and not np.shares_memory(a, b)


def test_a_pool_hands_out_one_buffer_per_name_and_replaces_it_when_the_shape_changes():
    pool = ScratchPool()
    with pool.active():
        a = scratch("x", (5, 6), np.float64)
        assert scratch("x", (5, 6), np.float64) is a           # reused
        b = scratch("y", (5, 6), np.float64)
        assert not np.shares_memory(a, b)                         # another name, another buffer
        f = scratch("x", (5, 6), np.float64, order="F")
        assert f.flags.f_contiguous and f is not a                # the order is part of it
        c = scratch("x", (2, 3), np.float32)
        assert c.shape == (2, 3) and c.dtype == np.float32
    assert pool.nbytes == c.nbytes + b.nbytes                      # one buffer per name
    outside = scratch("x", (2, 3), np.float32)                    # the context has ended
    assert outside is not c
    pool.clear()
    assert pool.nbytes == 0


def test_a_pool_is_active_only_in_the_thread_that_entered_it():
    pool, seen = ScratchPool(), []
    with pool.active():
        a = scratch("x", (4,), np.float64)
        t = threading.Thread(target=lambda: seen.append(scratch("x", (4,), np.float64)))
        t.start()
        t.join()
        with pool.active():                                       # re-entrant in its thread
            assert scratch("x", (4,), np.float64) is a
    assert seen[0] is not a


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cho_factor_in_place_is_the_copying_factor_without_the_copy(dtype):
    """For an exactly symmetric A the in-place factor (LAPACK on Aᵀ = A in Fortran order) is
    bit for bit the factor of the copying path, and shares A's memory."""
    A = _spd(40, 1).astype(dtype)
    A = (A + A.T) / 2                                             # exactly symmetric
    want = cho_factor(A.copy(), "A")
    B = A.copy()
    c, lower = cho_factor(B, "A", overwrite=True)
    assert lower and np.shares_memory(c, B) and c.dtype == dtype
    assert np.array_equal(np.tril(c), np.tril(want[0]))
    y = np.arange(40.0)
    np.testing.assert_array_equal(cho_solve((c, lower), y), cho_solve(want, y))


def test_cho_factor_in_place_names_a_matrix_that_is_not_positive_definite():
    A = -np.eye(4)
    with pytest.raises(NotPositiveDefiniteError, match="A = T.1 . K_R is not positive definite"):
        cho_factor(A, "A = T*1 + K_R", overwrite=True)


def test_cho_factor_overwrite_falls_back_to_a_copy_for_a_strided_matrix():
    A = _spd(12, 2)
    big = np.zeros((24, 24))
    big[::2, ::2] = A
    view = big[::2, ::2]                                         # neither C nor F contiguous
    c, _ = cho_factor(view, "A", overwrite=True)
    assert not np.shares_memory(c, big)
    np.testing.assert_array_equal(view, A)                       # untouched
    np.testing.assert_allclose(np.tril(c) @ np.tril(c).T, A, rtol=0, atol=1e-13)


def test_contract_inverse_with_a_pool_equals_it_without():
    n, D, P, T = 3, 3, 8, 0.5
    blocks, pairs = _tensor(n, P, 3)
    A = multi_pair_combine(_spd(n * D, 4), blocks, pairs, D) + T * np.eye(D * P)
    cho = cho_factor(A)
    z = cho_solve(cho, np.random.default_rng(5).standard_normal(D * P))
    c0 = cho[0].copy()
    want = multi_pair_contract_inverse(blocks, cho, z, pairs, D)
    pool = ScratchPool()
    with pool.active():
        got1 = multi_pair_contract_inverse(blocks, cho, z, pairs, D)
        got2 = multi_pair_contract_inverse(blocks, cho, z, pairs, D)
    assert np.array_equal(got1, want) and np.array_equal(got2, want)
    assert np.array_equal(cho[0], c0)                            # potri ran on a copy
    assert pool.nbytes == (D * P) ** 2 * 8 * 2                    # potri's copy + the D²P² blocks


def _problem():
    n, D, P = 3, 3, 10
    blocks, pairs = _tensor(n, P, 9)
    Y = np.where(np.random.default_rng(10).random((P, D)) < 0.5, -1.0, 1.0)
    t = SimpleNamespace(blocks=blocks, pairs=pairs, mu=np.zeros((n, P)), n=n)
    return MultiMatrixProblem(t, Y, 0.1, 4.0, 1.0, True, False, float32_stage=False)


def test_evaluations_reuse_their_buffers_and_return_nothing_that_lives_in_them():
    """Two evaluations at different points: the second reuses the pool's buffers (no new
    allocation) and leaves the first evaluation's factor, z and gradient as they were; each
    equals the generated action evaluated with no pool, bit for bit."""
    p = _problem()
    x0 = p.start()
    x1 = p.pack(np.eye(p.size) * 1.3 + 0.05 * _spd(p.size, 11, 0.0))
    e0 = p.evaluate(x0)
    held = {id(a): a for a in p._scratch._buffers.values()}
    assert held                                                  # the evaluation used the pool
    snap = (e0.cho[0].copy(), e0.z.copy(), e0.g.copy(), e0.S)
    e1 = p.evaluate(x1)
    assert {id(a) for a in p._scratch._buffers.values()} == set(held)   # nothing reallocated
    assert np.array_equal(e0.cho[0], snap[0]) and np.array_equal(e0.z, snap[1])
    assert np.array_equal(e0.g, snap[2]) and e0.S == snap[3]
    for x, ev in ((x0, e0), (x1, e1)):
        Q, _ = p.unpack(x)
        S, gQ, cho, z = multi.action_gradient_zero_mean(Q, p.blocks, p.pairs, p.D, p.y, p.T,
                                                        p.N, p.lambda1)
        assert S == ev.S
        assert np.array_equal(np.tril(cho[0]), np.tril(ev.cho[0])) and np.array_equal(z, ev.z)
        assert np.array_equal(p.packed_gradient(p.project(gQ)), ev.g)
    p.release_scratch()
    assert p._scratch.nbytes == 0


def test_inverse_minus_outer_is_the_printed_form_it_replaces():
    """Bit for bit −np.outer(z, z) + cho_inverse(cho) (x + (−y) is x − y in IEEE arithmetic),
    with row blocks that do not divide P."""
    A = _spd(37, 3)
    cho = cho_factor(A)
    z = cho_solve(cho, np.linspace(-1.0, 2.0, 37))
    want = -np.outer(z, z) + cho_inverse(cho)
    got = inverse_minus_outer(cho, z, block=8)
    assert np.array_equal(got, want)
    with pytest.raises(ValueError, match="z must have length 37"):
        inverse_minus_outer(cho, z[:5])


def test_shifted_adds_T_to_the_diagonal_in_place():
    K = _spd(6, 4)
    want = 0.3 * np.eye(6) + K
    got = shifted(K, 0.3)
    assert got is K and np.array_equal(got, want)


def test_shifted_and_inverse_minus_outer_on_a_device_matrix():
    """The device forms (kren.tensors.torch_backend.DeviceMatrix, on torch's CPU) agree with
    NumPy's to round-off (a torch Cholesky inverse: κ(A)·eps ≈ 1e-14 here)."""
    torch = pytest.importorskip("torch")
    from kren.tensors.torch_backend import DeviceMatrix
    K = _spd(20, 5)
    Kd = DeviceMatrix(torch.as_tensor(K.copy()))
    out = shifted(Kd, 0.7)
    assert out is Kd
    np.testing.assert_array_equal(np.asarray(out), K + 0.7 * np.eye(20))
    z = np.linspace(0.0, 1.0, 20)
    Bd = inverse_minus_outer(cho_factor(Kd), z)
    want = np.linalg.inv(K + 0.7 * np.eye(20)) - np.outer(z, z)
    np.testing.assert_allclose(np.asarray(Bd), want, rtol=0, atol=1e-12)
