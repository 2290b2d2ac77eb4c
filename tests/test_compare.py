"""kren compare: parsing, the agreement criterion, and a tiny end-to-end run (table, JSON, PNGs)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("torch")

from kren import compare  # noqa: E402


def test_parse_widths():
    archs = ["cnn", "lcn", "fc"]
    assert compare.parse_widths(["10", "50"], archs) == {a: [10, 50] for a in archs}
    assert compare.parse_widths(["50,10"], archs) == {a: [10, 50] for a in archs}
    got = compare.parse_widths(["cnn:10,50", "lcn:10", "fc:10,50,400"], archs)
    assert got == {"cnn": [10, 50], "lcn": [10], "fc": [10, 50, 400]}
    assert compare.parse_widths(["20", "fc:400"], archs) == {"cnn": [20], "lcn": [20],
                                                            "fc": [400]}
    with pytest.raises(ValueError, match="not among"):
        compare.parse_widths(["cnn:10"], ["fc"])
    with pytest.raises(ValueError, match="no width"):
        compare.parse_widths(["fc:10"], ["fc", "cnn"])
    with pytest.raises(ValueError, match="positive integers"):
        compare.parse_widths(["0"], ["fc"])
    with pytest.raises(ValueError, match="positive integers"):
        compare.parse_widths(["ten"], ["fc"])


def test_verdict_criterion():
    """agree iff |Δ| ≤ max(2 SE, 10 % ε_theory) and R̂ < 1.05."""
    assert compare.verdict(0.100, 0.109, 0.001, 1.01) == "agree"        # within 10 %
    assert compare.verdict(0.100, 0.111, 0.001, 1.01) == "DISAGREE"     # 11 % > 2 SE
    assert compare.verdict(0.100, 0.115, 0.008, 1.01) == "agree"        # within 2 SE
    assert compare.verdict(0.100, 0.060, 0.002, 1.01) == "DISAGREE"
    assert compare.verdict(0.100, 0.100, 0.001, 1.05) == "NOT CONVERGED"
    assert compare.verdict(0.100, 0.100, 0.001, math.nan) == "NOT CONVERGED"


def test_kernel_summary_alignment():
    """K = yyᵀ is perfectly aligned (alignment 1); the identity gives |y|²/(√P |y|²) = 1/√P."""
    y = np.array([1.0, -1.0, 1.0, 1.0])
    assert compare.kernel_summary(np.outer(y, y), y)["alignment"] == pytest.approx(1.0)
    assert compare.kernel_summary(np.eye(4), y)["alignment"] == pytest.approx(0.5)


def test_cli_bad_widths_exit_code(capsys):
    assert compare.main(["--arch", "fc", "--N", "cnn:10"]) == 2
    assert "not among" in capsys.readouterr().err


def test_compare_end_to_end_tiny(tmp_path, capsys):
    """A tiny run through the CLI: every output is written and consistent with the table.

    The test checks the plumbing (theory and sampled numbers land in the right rows, the
    verdict follows the criterion, the kernels have the right shapes and the sampled K̂ is
    positive semi-definite); the agreement itself is the benchmark's job (P = 200)."""
    out = tmp_path / "cmp"
    rc = compare.main(["--arch", "cnn", "fc", "--N", "cnn:4", "fc:4,30", "--P", "20",
                       "--n-test", "15", "--steps", "600", "--burn-in", "200", "--thin", "4",
                       "--chains", "2", "--step", "0.02", "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| CNN | 4 |" in text and "| FC | 30 |" in text and "wall time" in text
    for name in ("compare.json", "table.md", "compare.png", "similarity.png"):
        assert (out / name).stat().st_size > 0
    res = json.loads((out / "compare.json").read_text())
    assert [(r["arch"], r["N"]) for r in res["rows"]] == [("CNN", 4), ("FC", 4), ("FC", 30)]
    for r in res["rows"]:
        te, s = r["theory"]["test_error"], r["sampled"]["test_error"]
        assert r["verdict"] == compare.verdict(te, s["total"], s["se"], r["rhat"])
        assert r["rel_diff"] == pytest.approx((s["total"] - te) / te)
        assert s["total"] == pytest.approx(s["bias2"] + s["variance"], rel=1e-12)
        assert r["sampled"]["draws_per_chain"] == (600 - 200) // 4
    assert set(res["kernels"]) == {"CNN", "FC"}
    # the kernel comparison is made at the smallest width of each arch
    assert res["kernels"]["FC"]["N"] == 4


def test_run_compare_kernels_and_theory_limit():
    """run_compare returns the three P×P kernels; the theory at N = ∞ equals GP regression
    with the NNGP kernel (THEORY §5.2), recomputed here independently."""
    res = compare.run_compare(archs=("lcn",), widths=[6], P=16, n_test=10, steps=300,
                              burn_in=100, thin=5, chains=2, threads=1)
    k = res["kernel_matrices"]["LCN"]
    for key in ("nngp", "theory", "sampled"):
        assert k[key].shape == (16, 16)
        np.testing.assert_allclose(k[key], k[key].T, atol=1e-10)
    assert np.linalg.eigvalsh(k["sampled"]).min() > -1e-8       # an average of Gram matrices
    from kren.architecture import Architecture
    from kren.data import load_digits
    d = load_digits(classes=(0, 1), n_train=16, n_test=10, seed=0)
    arch = Architecture("lcn", input_shape=(1, 8, 8), mask=(2, 2), stride=(2, 2))
    K, k0 = arch.nngp_kernel(d.X_train), arch.nngp_kernel(d.X_test, d.X_train)
    k00 = np.diag(arch.nngp_kernel(d.X_test))
    A = K + 0.1 * np.eye(16)
    mean = k0 @ np.linalg.solve(A, d.y_train)
    var = k00 - np.einsum("ij,ji->i", k0, np.linalg.solve(A, k0.T))
    eps = np.mean((d.y_test - mean) ** 2 + var)
    assert res["rows"][0]["theory_nngp_test_error"] == pytest.approx(eps, rel=1e-8)
    np.testing.assert_allclose(k["nngp"], K, rtol=1e-12)


def test_notebook_04_executes_and_matches_its_builder():
    """notebooks/04_theory_vs_sampling.ipynb runs top to bottom without error (tiny
    configuration, < 60 s) and its cells are those its builder script writes."""
    import importlib.util
    import time
    from pathlib import Path

    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    root = Path(__file__).resolve().parents[1] / "notebooks"
    spec = importlib.util.spec_from_file_location("build04",
                                                  root / "build_04_theory_vs_sampling.py")
    build04 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build04)
    nb = nbformat.read(root / "04_theory_vs_sampling.ipynb", as_version=4)
    assert [c.source for c in nb.cells] == [c.source for c in build04.build().cells]
    t0 = time.perf_counter()
    build04.execute(nb, timeout=120)                      # raises CellExecutionError on error
    elapsed = time.perf_counter() - t0
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "| CNN | 10 |" in outputs and "| FC | 100 |" in outputs
    assert "max |torch − numpy| =" in outputs
    assert elapsed < 120, elapsed
