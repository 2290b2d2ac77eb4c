"""kren sweep / plot / paper: config schema, plan, kernel reuse, resumption after kill -9,
Dask execution equal to the serial run, failing points, figures."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

import kren
from kren.cli import main
from kren.data import load_digits
from kren.sweeps import SweepConfigError, SweepFolderError, load_config, make_plan
from kren.sweeps.store import SweepStore
from kren.sweeps.table import LIST_COLUMNS, RUN_COLUMNS, read_table

# digits 0 vs 1, tiny P: every fit takes milliseconds; 4×4 masks on the 8×8 images give n = 4
SMALL = {
    "grid": {"arch": ["fc", "lcn", "cnn"], "N": [math.inf, 100.0, 10.0], "P": 16,
             "T": [0.1, 1.0], "mask": "4x4"},
    "data": {"classes": [0, 1], "n_test": 12},
}


def _cfg(**sections):
    cfg = json.loads(json.dumps(SMALL))
    cfg["grid"]["N"] = [math.inf, 100.0, 10.0]
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame, rtol=1e-12):
    """Equal tables, run columns (timings, worker) aside; floats to ``rtol``."""
    assert list(a["point"]) == list(b["point"])
    for col in a.columns:
        if col in RUN_COLUMNS:
            continue
        x, y = a[col].tolist(), b[col].tolist()
        for u, v in zip(x, y):
            if col in LIST_COLUMNS and u is not None and v is not None:
                np.testing.assert_allclose(u, v, rtol=rtol, atol=0, err_msg=col)
            elif isinstance(u, float) and isinstance(v, float):
                if math.isnan(u) or math.isnan(v):
                    assert math.isnan(u) and math.isnan(v), col
                else:
                    assert u == pytest.approx(v, rel=rtol, abs=1e-300), col
            elif u is None or v is None or (np.ndim(u) == 0 and pd.isna(u)):
                assert pd.isna(u) and pd.isna(v), col
            else:
                assert u == v, col


# ============================================================================ config
@pytest.mark.parametrize("mutate, match", [
    (lambda c: c["grid"].update(widht=3), r"grid: unknown key 'widht'"),
    (lambda c: c["grid"].update(P=50.7), r"grid.P: must be an integer, got 50.7"),
    (lambda c: c["grid"].update(P=50.0), r"grid.P: must be an integer"),
    (lambda c: c["grid"].update(T=[0.1, -1.0]), r"grid.T\[1\]: must be finite and > 0"),
    (lambda c: c["grid"].update(N=[10, True]), r"grid.N\[1\]: must be a positive number"),
    (lambda c: c["grid"].update(mask=[2, 2]), r"grid.mask: repeats the value 2 .*\"2x2\""),
    (lambda c: c["grid"].update(mask="2x"), r"grid.mask: must be an int, \"AxB\""),
    (lambda c: c["grid"].update(arch=["fc", "rnn"]), r"unknown estimator 'rnn'"),
    (lambda c: c["grid"].update(tol=1e-3), r"grid.tol: is set by the sweep itself"),
    (lambda c: c["grid"].update(patches="4x4"), r"either patches or mask/stride"),
    (lambda c: c["grid"].pop("P"), r"grid: needs the key 'P'"),
    (lambda c: c["grid"].update(dataset="mnist"), r"\[data.paths\] mnist"),
    (lambda c: c.update(grids={}), r"config: unknown key 'grids' \(did you mean 'grid'\?\)"),
    (lambda c: c["data"].update(n_test="12"), r"data.n_test: must be an integer"),
    (lambda c: c.update(solver={"max_iters": 3}), r"solver: unknown key 'max_iters'"),
    (lambda c: c.update(sampling={"N": [10], "steps": 100, "burn_in": 100}),
     r"sampling.burn_in: must be < steps"),
    (lambda c: c.update(sampling={"steps": 100}), r"sampling: needs the key 'N'"),
    (lambda c: c.update(sampling={"N": [10.5]}), r"sampling.N\[0\]: must be an integer"),
    (lambda c: c.update(run={"workers": 0}), r"run.workers: must be ≥ 1"),
])
def test_config_errors_name_the_key(mutate, match):
    cfg = _cfg()
    mutate(cfg)
    with pytest.raises(SweepConfigError, match=match):
        load_config(cfg)


def test_config_toml_defaults_and_identity(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(textwrap.dedent("""
        [grid]
        arch = "cnn"
        N = [inf, 10]
        P = 16
        mask = "4x4"
        [run]
        workers = 3
    """))
    cfg = load_config(path)
    g = cfg.grids[0]
    assert g["N"] == (math.inf, 10.0) and g["mask"] == ((4, 4),)
    assert g["T"] == (0.1,) and g["activation"] == ("erf",) and g["dataset"] == ("digits",)
    assert cfg.run["workers"] == 3 and cfg.text.startswith("\n[grid]")
    # [run] and [sweep] are not part of the identity; the grid is
    assert cfg.with_run(workers=1).hash == cfg.hash
    other = load_config({"grid": {"arch": "cnn", "N": [math.inf, 10], "P": 16, "mask": "4x4",
                                  "T": 0.2}})
    assert other.hash != cfg.hash


# ============================================================================ plan
def test_plan_groups_chains_and_memory():
    cfg = load_config(_cfg(grid={"lambda1": [1.0, 2.0]}))
    plan = make_plan(cfg)
    assert len(plan) == 3 * 3 * 2 * 2           # arch × N × T × λ1
    # one kernel group per architecture: K_ij depends on neither N, T nor λ1 (THEORY §2)
    assert len(plan.groups) == 3
    for g in plan.groups.values():
        assert len(g.points) == 12 and len({p.chain for p in g.points}) == 4
    for pts in plan.chains.values():            # each chain: N = ∞ first, then decreasing
        assert [p.N for p in pts] == [math.inf, 100.0, 10.0]
    cnn = next(g for g in plan.groups.values() if g.points[0].arch == "cnn")
    # CNN, n = 4 patches: the i ≤ j blocks (10) of P×P float64, unit means and variances;
    # the cached test×train blocks n² × n_test × P
    assert cnn.train_bytes == 10 * 16 * 16 * 8 + 2 * 4 * 16 * 8
    assert cnn.cross_bytes == 16 * 12 * 16 * 8
    text = plan.describe()
    assert "36 points (36 theory, 0 sampled) in 3 kernel groups" in text and "per worker" in text
    # λ0 changes the kernels: a second group per architecture
    assert len(make_plan(load_config(_cfg(grid={"lambda0": [1.0, 2.0]}))).groups) == 6


def test_plan_collapses_parameters_an_estimator_does_not_take():
    """FC takes no mask: two masks give two LCN points per N but one FC point."""
    cfg = load_config(_cfg(grid={"arch": ["fc", "lcn"], "mask": ["4x4", "2x2"], "T": 0.1}))
    plan = make_plan(cfg)
    fc = [p for p in plan.points if p.arch == "fc"]
    lcn = [p for p in plan.points if p.arch == "lcn"]
    assert len(fc) == 3 and len(lcn) == 6
    assert all(p.params["mask"] is None for p in fc)
    assert {p.n for p in lcn} == {4, 16}


# ============================================================================ serial run
def test_serial_sweep_matches_direct_fits_and_reuses_kernels(tmp_path):
    res = kren.sweep(_cfg(), tmp_path / "s", progress=False)
    t = res.table
    assert len(t) == 18 and (t["status"] == "ok").all() and res.complete
    # kernel reuse: one train tensor built per kernel group (here: per architecture)
    assert t["kernel_built"].sum() == 3
    ds = load_digits(classes=(0, 1), n_train=16, n_test=12, seed=0)
    for arch, cls in (("fc", kren.FC), ("lcn", kren.LCN), ("cnn", kren.CNN)):
        for N, T in ((10.0, 0.1), (100.0, 1.0)):
            row = t[(t["arch"] == arch) & (t["N"] == N) & (t["T"] == T)].iloc[0]
            kw = {} if arch == "fc" else dict(mask=(4, 4))
            m = cls(N=N, T=T, input_shape=(1, 8, 8), **kw).fit(ds.X_train, ds.y_train)
            err = m.test_error(ds.X_test, ds.y_test)
            # the sweep warm-starts from the next larger N: both solutions meet tol = 1e-9
            assert row["test_error"] == pytest.approx(err.total, rel=1e-7)
            assert row["bias2"] + row["variance"] == pytest.approx(row["test_error"], rel=1e-12)
            assert row["train_error"] == pytest.approx(m.train_error(), rel=1e-7)
            Q = np.atleast_2d(m.Q_)
            np.testing.assert_allclose(row["Q_eigenvalues"], np.linalg.eigvalsh(Q), rtol=1e-6)
            np.testing.assert_allclose(row["patch_importance"], Q.sum(axis=1), rtol=1e-6)
            assert row["Q_trace"] == pytest.approx(np.trace(Q), rel=1e-6)
            np.testing.assert_allclose(res.Q[row["point"]][0], Q, rtol=1e-6)
    # N = ∞: Q = 𝟙 exactly (THEORY §5.2)
    inf = t[t["N"] == math.inf]
    assert (inf["Q_eig_min"] == 1.0).all() and (inf["Q_eig_max"] == 1.0).all()
    # the written table: Parquet and CSV with the same rows, Q matrices in Q.npz
    back = read_table(tmp_path / "s")
    assert_same_table(t, back, rtol=0)
    csv = pd.read_csv(tmp_path / "s" / "table.csv")
    assert list(csv["point"]) == list(t["point"])
    assert json.loads(csv["Q_eigenvalues"][5]) == pytest.approx(list(t["Q_eigenvalues"][5]))
    with np.load(tmp_path / "s" / "Q.npz") as f:
        assert len(f.files) == 2 * 18


def test_failing_points_are_recorded_and_the_sweep_goes_on(tmp_path):
    cfg = _cfg(grid={"arch": ["fc", "cnn"], "mask": ["4x4", 16], "T": 0.1, "P": [16, 400]},
               solver={"max_iter": 1})
    res = kren.sweep(cfg, tmp_path / "f", progress=False)
    t = res.table
    assert res.complete and len(t) == len(res.plan)
    assert len(t) == 6 + 12                   # FC takes no mask: 2 P × 3 N; CNN 2 masks × 2 P × 3 N
    ok = t[t["status"] == "ok"]
    # a mask larger than the 8×8 input: refused by the architecture, recorded, not computed
    invalid = t[t["error"].fillna("").str.contains("larger than the input")]
    assert len(invalid) == 6 and (invalid["arch"] == "cnn").all()
    assert invalid["seconds_solve"].isna().all()
    # 400 training images do not exist among the 360 zeros and ones: the loader's message
    too_many = t[(t["P"] == 400) & t["error"].fillna("").str.contains("larger than the 360")]
    assert len(too_many) == 3 + 3                     # FC, CNN 4x4 (the 16-mask ones are invalid)
    # max_iter = 1 leaves the finite-N CNN solves unconverged: recorded with the solver's message
    unconv = t[t["error"].fillna("").str.startswith("unconverged")]
    assert len(unconv) >= 1 and unconv["converged"].eq(False).all()
    assert unconv["test_error"].isna().all()
    # N = ∞ needs no solve: those succeed
    assert set(ok["N"]) == {math.inf} and len(ok) == 2
    assert len(ok) + len(invalid) + len(too_many) + len(unconv) == len(t)


def test_warm_start_extrapolates_linearly_in_one_over_N():
    """The chain's start (kren.sweeps.run.warm_start): the secant through the last two
    converged points in 1/N (N = ∞ is 1/N = 0), exact for Q linear in 1/N; the last point
    when the secant leaves Q ≻ 0 or 𝟙 + Q̄ ≻ 0; a number for a 1×1 Q."""
    from kren.sweeps.run import warm_start
    A, B = np.array([[2.0, 0.3], [0.3, 1.5]]), np.array([[-1.0, 0.2], [0.2, 0.5]])
    Q = lambda N: A + B / N                                       # noqa: E731
    Qb = lambda N: -0.2 * np.eye(2) + 0.1 * B / N                 # noqa: E731
    hist = [(100.0, Q(100.0), Qb(100.0)), (50.0, Q(50.0), Qb(50.0))]
    Q0, Qb0 = warm_start(hist, 20.0)
    np.testing.assert_allclose(Q0, Q(20.0), rtol=1e-13)
    np.testing.assert_allclose(Qb0, Qb(20.0), rtol=1e-13)
    # from N = ∞ (Q = 𝟙, Q̄ = 0): 1/N = 0 enters the secant
    hist = [(math.inf, np.eye(2), np.zeros((2, 2))), (1000.0, Q(1000.0) - A + np.eye(2),
                                                      Qb(1000.0) + 0.2 * np.eye(2))]
    np.testing.assert_allclose(warm_start(hist, 500.0)[0], np.eye(2) + B / 500.0, rtol=0,
                               atol=1e-15)
    # one point: itself; none: None
    assert warm_start(hist[:1], 10.0)[0] is hist[0][1]
    assert warm_start([], 10.0) is None
    # a secant that leaves Q ≻ 0 (here at N = 1: 2 − 1 − ... < 0): the last point as it is
    h2 = [(4.0, np.array([[1.0]]), np.array([[0.0]])), (2.0, np.array([[0.5]]),
                                                        np.array([[1.0]]))]
    assert warm_start(h2, 1.0) == 0.5
    assert warm_start(h2[:1] + [(3.0, np.array([[0.9]]), np.array([[0.0]]))], 2.0) == \
        pytest.approx(0.9 - 0.1 * (1 / 2 - 1 / 3) / (1 / 3 - 1 / 4))


# ============================================================================ folders
def test_changed_config_is_refused_and_same_config_resumes(tmp_path):
    out = tmp_path / "r"
    kren.sweep(_cfg(), out, progress=False)
    res = kren.sweep(_cfg(), out, progress=False)
    assert res.summary["computed"] == 0 and len(res.table) == 18
    changed = r"another config .*grids\[0\]\.T: \[0\.1, 1\.0\] -> \[0\.1, 0\.5\]"
    with pytest.raises(SweepFolderError, match=changed):
        kren.sweep(_cfg(grid={"T": [0.1, 0.5]}), out, progress=False)
    store = SweepStore(out)
    store.open(load_config(_cfg()), 18)
    try:
        with pytest.raises(SweepFolderError, match="another kren sweep"):
            SweepStore(out).open(load_config(_cfg()), 18)
    finally:
        store.close()


def test_dry_run_prints_the_plan_and_computes_nothing(tmp_path, capsys):
    cfg = tmp_path / "grid.toml"
    cfg.write_text(textwrap.dedent("""
        [grid]
        arch = ["fc", "cnn"]
        N = [inf, 100, 10]
        P = 16
        mask = "4x4"
        [data]
        classes = [0, 1]
        n_test = 12
        [sampling]
        N = [10]
        steps = 200
    """))
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "8 points (6 theory, 2 sampled) in 2 kernel groups" in text
    assert "to compute: 8" in text and "memory: per worker" in text
    assert "sampled: 2 points, widths [10]" in text
    assert "FC: 4 chains × 200 steps (burn-in 50, thin 10)" in text
    assert not out.exists()


# ============================================================================ Dask
@pytest.mark.slow
def test_dask_local_cluster_gives_the_serial_table(tmp_path):
    """216 points on a 2-worker LocalCluster equal the serial run to 1e-12.

    In-process workers (processes=False): robust and quick in CI (no worker start-up, no
    import of kren in spawned processes); what a remote cluster adds is the pickling of the
    tasks, the worker plugin and the results, checked here on the objects the sweep sends."""
    import pickle

    distributed = pytest.importorskip("distributed")
    from kren.sweeps.dask_plugin import SweepWorkerPlugin
    from kren.sweeps.run import _task
    from kren.sweeps.worker import WorkerState, run_task

    cfg = _cfg(grid={"N": [math.inf, 1000.0, 300.0, 100.0, 30.0, 10.0, 5.0, 3.0, 2.0],
                     "T": [0.1, 1.0], "lambda1": [1.0, 2.0], "seed": [0, 1], "P": 8},
               data={"n_test": 6})
    serial = kren.sweep(cfg, tmp_path / "serial", progress=False)
    assert len(serial.table) == 216 and (serial.table["status"] == "ok").all()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0", silence_logs=40) as cluster:
        dask = kren.sweep(cfg, tmp_path / "dask", scheduler=cluster.scheduler_address,
                          progress=False)
    t = dask.table
    assert dask.summary["executor"].startswith("dask") and t["worker"].nunique() == 2
    assert_same_table(serial.table, t, rtol=1e-12)
    # each tensor built at most once per worker
    built = t[t["kernel_built"]].groupby(["worker", "arch", "seed"]).size()
    assert (built == 1).all()
    # what goes over the wire to a remote worker survives pickling, and a pickled task
    # computes the same record
    plan = dask.plan
    point = next(p for p in plan.points if p.N == 10.0)
    task = pickle.loads(pickle.dumps(_task(plan, point, 1)))
    plugin = pickle.loads(pickle.dumps(SweepWorkerPlugin(plan.cache_bytes(), plan.config.hash)))
    assert plugin.token == plan.config.hash and plugin.state is None
    rec, arrays = pickle.loads(pickle.dumps(run_task(task, None, WorkerState(1 << 24))))
    row = t[t["point"] == point.id].iloc[0]
    assert rec["status"] == "ok"
    assert rec["test_error"] == pytest.approx(row["test_error"], rel=1e-7)   # cold vs warm start


# ============================================================================ kill -9
CHILD = """
import sys, time
import kren.sweeps.run as run
slow = run.run_task
def run_task(task, Q0, state):
    time.sleep(0.15)
    return slow(task, Q0, state)
run.run_task = run_task
import kren
kren.sweep(sys.argv[1], sys.argv[2], progress=False)
"""


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_computes_each_point_once(tmp_path, monkeypatch):
    cfg = tmp_path / "grid.json"
    cfg.write_text(json.dumps(_cfg(grid={"N": [math.inf, 300.0, 100.0, 30.0, 10.0, 3.0]})))
    out = tmp_path / "k"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(cfg), str(out)], env=env)
    points = out / "points"
    deadline = time.time() + 120
    while time.time() < deadline:
        if points.exists() and len(list(points.glob("*.npz"))) >= 8:
            break
        assert child.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL
    store = SweepStore(out)
    before = store.done()
    n_events = len(store.events())
    assert 8 <= len(before) < 36
    import kren.sweeps.run as run
    solved = []
    real = run.run_task

    def counting(task, Q0, state):
        solved.append(task.point.id)
        return real(task, Q0, state)

    monkeypatch.setattr(run, "run_task", counting)
    res = kren.sweep(str(cfg), out, progress=False)
    monkeypatch.setattr(run, "run_task", real)
    # the solves of the restart, counted where they run: the missing points, each once
    assert sorted(solved) == sorted(set(solved)) and len(solved) == 36 - len(before)
    assert not set(solved) & before
    after = store.events()[n_events:]
    started = [e["point"] for e in after if e["event"] == "start"]
    # only the missing points were computed, each once
    assert len(started) == len(set(started)) == 36 - len(before)
    assert not set(started) & before
    done = [e["point"] for e in store.events() if e["event"] == "done"]
    assert len(done) == len(set(done)) and set(done) <= set(res.table["point"])
    # ... and the table is that of an uninterrupted run
    ref = kren.sweep(str(cfg), tmp_path / "ref", progress=False)
    assert res.complete
    assert_same_table(ref.table, res.table, rtol=1e-12)


# ============================================================================ figures, paper
@pytest.mark.slow
def test_plot_writes_every_figure(tmp_path, capsys):
    pytest.importorskip("torch")
    cfg = _cfg(grid={"arch": ["fc", "cnn"]},
               sampling={"arch": ["cnn"], "N": [10], "steps": 80, "burn_in": 20, "thin": 4,
                         "chains": 2, "step_size": 0.01})
    res = kren.sweep(cfg, tmp_path / "p", progress=False)
    t = res.table
    sampled = t[t["kind"] == "sampled"]
    assert len(sampled) == 2 and (sampled["status"] == "ok").all()
    assert sampled["test_error_se"].gt(0).all() and sampled["verdict"].notna().all()
    th = t[(t["kind"] == "theory") & (t["N"] == 10.0)].set_index(["arch", "T"])["test_error"]
    for _, r in sampled.iterrows():
        assert r["theory_test_error"] == th[(r["arch"], r["T"])]
    assert main(["plot", str(tmp_path / "p"), "--format", "png"]) == 0
    names = {"test_error_vs_N", "bias_variance", "Q_spectra", "heatmap_T_N"}
    figures = tmp_path / "p" / "figures"
    assert {f.name for f in figures.iterdir()} == {f"{name}.png" for name in names}
    for name in names:
        assert (figures / f"{name}.png").stat().st_size > 1000
    from kren.sweeps.figures import plot_test_error
    paths = plot_test_error(t, tmp_path / "alpha", x="alpha", formats=("png", "pdf"))
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(SystemExit):
        main(["plot", str(tmp_path / "p"), "--format", "bmpx"])
    assert "unknown figure format bmpx" in capsys.readouterr().err


def test_paper_command_on_a_small_config(tmp_path, capsys):
    from kren.sweeps.paper import paper_config_text, parse_data
    import tomllib
    paper = load_config(tomllib.loads(paper_config_text()))
    assert paper.sampling["N"] == (10, 30, 100) and paper.grids[0]["patches"] == ((4, 4),)
    cfg = tmp_path / "small.json"
    cfg.write_text(json.dumps(_cfg(grid={"T": 0.1})))
    assert main(["paper", "--config", str(cfg), "--out", str(tmp_path / "pp"), "--quiet",
                 "--workers", "1"]) == 0
    for ext in ("png", "pdf"):
        assert (tmp_path / "pp" / f"paper.{ext}").stat().st_size > 1000
        assert (tmp_path / "pp" / "figures" / f"test_error_vs_N.{ext}").stat().st_size > 1000
    assert "9/9 points recorded" in capsys.readouterr().out
    # --data: MNIST and CIFAR-10 folders are recognised by their file names
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert parse_data(str(mnist)) == ("mnist", str(mnist))
    assert parse_data(f"fashion-mnist:{mnist}") == ("fashion-mnist", str(mnist))
    with pytest.raises(SweepConfigError, match="neither MNIST"):
        parse_data(str(tmp_path))
    moved = paper.with_dataset("mnist", mnist)
    assert moved.grids[0]["dataset"] == ("mnist",) and moved.hash != paper.hash
    plan = make_plan(moved)
    cnn = next(p for p in plan.points if p.arch == "cnn")
    assert cnn.params["mask"] == (7, 7) and cnn.n == 16     # 4×4 patches of 28×28 images
