"""Command line: demo, solve (flags and config files), errors."""
import json
import math

import numpy as np
import pytest

import kren
from kren.cli import main
from kren.data import load_digits
from kren.demo import format_table


def test_demo_small(tmp_path, capsys):
    """A reduced demo writes both figures and a JSON whose numbers match a direct fit."""
    rc = main(["demo", "--out", str(tmp_path), "--P", "60", "--n-test", "40",
               "--N", "inf,20,5", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "CNN" in out and "LCN" in out and "FC" in out
    for name in ("test_error_vs_N.png", "cnn_Q.png", "demo.json"):
        assert (tmp_path / name).stat().st_size > 1000
    d = json.loads((tmp_path / "demo.json").read_text())
    assert len(d["rows"]) == 9 and all(r["converged"] for r in d["rows"])
    ds = load_digits(classes="even-odd", n_train=60, n_test=40, seed=0)
    m = kren.CNN(N=20, T=0.1, input_shape=(1, 8, 8), mask=2, stride=2).fit(ds.X_train, ds.y_train)
    row = next(r for r in d["rows"] if r["arch"] == "CNN" and r["N"] == 20)
    # the demo warm-starts from the previous N; both solutions satisfy the same tolerance 1e-9
    assert row["test_error"] == pytest.approx(m.test_error(ds.X_test, ds.y_test).total, rel=1e-7)
    inf_rows = [r for r in d["rows"] if r["N"] == "inf" or (isinstance(r["N"], float) and math.isinf(r["N"]))]
    assert len(inf_rows) == 3


def test_format_table_marks_unconverged():
    rows = [{"arch": "FC", "N": 10, "alpha": 5.0, "test_error": 0.5, "bias2": 0.3,
             "variance": 0.2, "converged": False}]
    assert "!" in format_table(rows)


def test_solve_flags_and_config(tmp_path, capsys):
    rc = main(["solve", "--arch", "cnn", "--N", "20", "--classes", "0,1", "--P", "50",
               "--n-test", "20", "--quiet"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["result"]["converged"] and np.array(d["Q"]).shape == (16, 16)
    assert d["test_error"]["total"] == pytest.approx(d["test_error"]["bias2"] + d["test_error"]["variance"])
    cfg = tmp_path / "run.toml"
    cfg.write_text('arch = "fc"\nN = 30\nT = 0.2\nclasses = "0,1"\nP = 50\nn_test = 20\n')
    out = tmp_path / "fc.json"
    assert main(["solve", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    assert d["estimator"] == "FC" and d["params"]["T"] == 0.2 and d["params"]["N"] == 30
    ds = load_digits(classes=(0, 1), n_train=50, n_test=20, seed=0)
    fc = kren.FC(N=30, T=0.2).fit(ds.X_train, ds.y_train)
    assert d["Q"] == pytest.approx(fc.Q_, rel=1e-12)


def test_solve_errors(tmp_path):
    with pytest.raises(SystemExit):
        main(["solve", "--config", str(tmp_path / "missing.toml")])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"arch": "cnn", "widht": 3}))
    with pytest.raises(SystemExit, match="widht"):
        main(["solve", "--config", str(bad)])
    # issue 9: a user error is one `kren: error:` line and exit status 2, no exception
    # (this assertion was `pytest.raises(ValueError, match="T")` before)
    with pytest.raises(SystemExit, match="T") as exc:
        main(["solve", "--arch", "fc", "--T", "0", "--P", "20", "--n-test", "5", "--classes", "0,1"])
    assert exc.value.code == 2


def test_demo_pooled_readout_beside_local(tmp_path, capsys):
    """--archs CNN,CNN-pool: the pooled-readout CNN (THEORY §3b) runs beside the local one; its
    row is the direct fit of kren.CNN(readout="pool") (a scalar Q: global renormalization)."""
    rc = main(["demo", "--out", str(tmp_path), "--P", "60", "--n-test", "40",
               "--N", "inf,20", "--archs", "CNN-pool,CNN", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.strip().startswith("N"))
    assert head.split("|")[1:] and [c.strip() for c in head.split("|")[1:]] == ["CNN", "CNN-pool"]
    d = json.loads((tmp_path / "demo.json").read_text())
    assert [r["arch"] for r in d["rows"]] == ["CNN", "CNN", "CNN-pool", "CNN-pool"]
    ds = load_digits(classes="even-odd", n_train=60, n_test=40, seed=0)
    m = kren.CNN(N=20, T=0.1, input_shape=(1, 8, 8), mask=2, stride=2,
                 readout="pool").fit(ds.X_train, ds.y_train)
    assert np.ndim(m.Q_) == 0 or np.size(m.Q_) == 1
    row = next(r for r in d["rows"] if r["arch"] == "CNN-pool" and r["N"] == 20)
    assert row["test_error"] == pytest.approx(m.test_error(ds.X_test, ds.y_test).total, rel=1e-7)
    assert row["Q_summary"] == pytest.approx(float(np.ravel(m.Q_)[0]), rel=1e-7)


def test_demo_bad_archs_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--out", str(tmp_path), "--archs", "FC,RNN"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--archs" in err and "RNN" in err
