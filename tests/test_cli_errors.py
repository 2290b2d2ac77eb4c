"""The command line under bad input and faults (issue 9): one `kren: error:` line naming the
flag or config key with exit status 2, explicit flags over --config, typed config values,
output folders checked before computing, atomic outputs, interrupted and concurrent runs, and
demo rows marked when a fit does not converge.

Fails on the code before issue 8 (a2d8cfb): errors were tracebacks, --config overrode explicit
flags equal to their defaults, P = 50.7 became 50, --out failed after the computing, Ctrl-C left
a folder mixing old and new outputs, and one unconverged fit ended the demo in a traceback.
"""
import json
import os
import subprocess
import sys

import pytest

from kren.cli import main

SMALL = ["--P", "30", "--n-test", "10", "--classes", "0,1"]
DEMO = ["--P", "30", "--n-test", "10", "--N", "inf,5", "--quiet"]


def _user_error(capsys, argv, *names):
    """main(argv) exits with status 2 after exactly one stderr line `kren: error: ...` that
    names each of ``names``."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kren: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def no_computing(monkeypatch):
    """Any fit fails loudly: errors below must come before anything is computed."""
    import kren

    def fit(self, *a, **k):
        raise AssertionError("computed before the error was found")
    for cls in (kren.FC, kren.LCN, kren.CNN):
        monkeypatch.setattr(cls, "fit", fit)


# --------------------------------------------------------------------------- one line, exit 2
@pytest.mark.parametrize("argv,names", [
    (["solve", "--T", "0", *SMALL], ["--T"]),
    (["solve", "--T", "-1", "--arch", "fc", *SMALL], ["--T"]),
    (["solve", "--N", "0", *SMALL], ["--N"]),
    (["solve", "--P", "50.7"], ["--P", "50.7"]),
    (["solve", "--P", "0"], ["--P"]),
    (["solve", "--max-iter", "0"], ["--max-iter"]),
    (["solve", "--mask", "two"], ["--mask"]),
    (["solve", "--classes", "3"], ["--classes"]),
    (["solve", "--data", "mnist"], ["--data-path"]),
    (["solve", "--data", "imagenet"], ["--data"]),
    (["solve", "--activation", "sigmoid"], ["--activation"]),
    (["demo", "--P", "-3"], ["--P"]),
    (["demo", "--T", "0"], ["--T"]),
    (["demo", "--N", "10,abc"], ["--N", "abc"]),
    (["demo", "--N", "0"], ["--N"]),
    (["compare", "--steps", "0"], ["--steps"]),
    (["compare", "--burn-in", "500", "--steps", "100"], ["--burn-in", "--steps"]),
    (["compare", "--N", "cnn:10", "--arch", "fc"], ["--N"]),
    (["compare", "--T", "nan"], ["--T"]),
    (["compare", "--device", "tpu"], ["--device"]),
    (["frobnicate"], ["frobnicate"]),
])
def test_user_errors_are_one_line_naming_the_flag(capsys, no_computing, argv, names):
    _user_error(capsys, argv, *names)


def test_architecture_errors_name_the_flag(capsys, no_computing):
    """mask 9 on 8×8 digits: found when the estimator is made (after the data are loaded,
    before any fit)."""
    _user_error(capsys, ["solve", "--mask", "9", *SMALL], "--mask", "larger than the input")


def test_unexpected_exceptions_keep_their_traceback(monkeypatch):
    import kren.cli

    def broken(args):
        raise RuntimeError("a bug")
    monkeypatch.setattr(kren.cli, "cmd_solve", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["solve"])


def test_console_script_exit_status_and_stderr(tmp_path):
    """Through a real interpreter: exit status 2, one line, no traceback."""
    r = subprocess.run([sys.executable, "-m", "kren.cli", "solve", "--P", "50.7"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("kren: error:")
    assert "--P" in r.stderr and r.stdout == ""


# --------------------------------------------------------------------------- config
def test_explicit_flags_win_over_the_config_even_at_their_defaults(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('arch = "fc"\nN = 30\nT = 0.2\nclasses = "0,1"\nP = 30\nn_test = 10\n')
    assert main(["solve", "--config", str(cfg), "--T", "0.1", "--quiet"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"]["T"] == 0.1                 # the flag, although 0.1 is its default
    assert d["params"]["N"] == 30                  # the config, where no flag was given
    assert main(["solve", "--config", str(cfg), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["params"]["T"] == 0.2


@pytest.mark.parametrize("text,names", [
    ("P = 50.7\n", ["'P'", "integer", "50.7"]),
    ("P = true\n", ["'P'", "integer"]),
    ('T = "warm"\n', ["'T'", "number"]),
    ("T = -0.5\n", ["'T'", "> 0"]),
    ('N = "many"\n', ["'N'"]),
    ("mask = [2, 0]\n", ["'mask'"]),
    ('arch = "mlp"\n', ["'arch'", "mlp"]),
    ("seed = -1\n", ["'seed'"]),
    ("widht = 3\n", ["widht"]),
    ("P = \n", ["--config", "TOML"]),
])
def test_config_values_are_type_checked_naming_the_key(tmp_path, capsys, no_computing, text,
                                                       names):
    cfg = tmp_path / "run.toml"
    cfg.write_text(text)
    line = _user_error(capsys, ["solve", "--config", str(cfg)], *names)
    assert "run.toml" in line


def test_config_json_and_missing_file(tmp_path, capsys, no_computing):
    cfg = tmp_path / "run.json"
    cfg.write_text('{"P": 50.7}')
    _user_error(capsys, ["solve", "--config", str(cfg)], "'P'", "run.json")
    cfg.write_text('{"P": ')
    _user_error(capsys, ["solve", "--config", str(cfg)], "--config", "JSON")
    _user_error(capsys, ["solve", "--config", str(tmp_path / "none.toml")], "--config")


def test_inf_width_in_config(tmp_path, capsys):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"arch": "fc", "N": "inf", "classes": "0,1", "P": 20,
                               "n_test": 5}))
    assert main(["solve", "--config", str(cfg), "--quiet"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"]["N"] == "inf" and d["Q"] == 1.0


# --------------------------------------------------------------------------- outputs checked first
def test_out_into_a_missing_or_unwritable_folder_fails_before_computing(tmp_path, capsys,
                                                                        no_computing):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _user_error(capsys, ["solve", "--out", str(tmp_path / "missing" / "x.json"), *SMALL],
                "--out", "does not exist")
    _user_error(capsys, ["solve", "--out", str(tmp_path / "x.txt"), "--save-fit", *SMALL],
                "--out", ".json")
    _user_error(capsys, ["demo", "--out", str(blocker / "sub"), *DEMO], "--out")
    _user_error(capsys, ["demo", "--out", str(blocker), *DEMO], "--out", "not a folder")
    _user_error(capsys, ["compare", "--out", str(blocker / "sub"), "--P", "10"], "--out")
    if os.path.isdir("/proc/self"):                      # a read-only file system (Linux)
        _user_error(capsys, ["demo", "--out", "/proc/kren-test-output", *DEMO], "--out")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs a non-root POSIX user (root writes into read-only folders)")
def test_out_into_a_read_only_folder(tmp_path, capsys, no_computing):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _user_error(capsys, ["demo", "--out", str(ro), *DEMO], "--out")
        _user_error(capsys, ["solve", "--out", str(ro / "x.json"), *SMALL], "--out")
    finally:
        ro.chmod(0o700)


# --------------------------------------------------------------------------- demo rows
def test_demo_marks_unconverged_and_failed_fits(tmp_path, capsys, monkeypatch):
    """max_iter = 1 leaves the finite-N fits unconverged; one fit raising a kren error is a
    failed row. The demo finishes, the table marks them, demo.json gives the messages."""
    from kren.estimators.local import CNN
    from kren.linalg import NotPositiveDefiniteError
    real_fit = CNN.fit

    def fit(self, X, y, Q0=None):
        if self.N == 5:
            raise NotPositiveDefiniteError("A = T·1 + K_R is not positive definite (test)")
        return real_fit(self, X, y, Q0)
    monkeypatch.setattr(CNN, "fit", fit)
    assert main(["demo", "--out", str(tmp_path), "--max-iter", "1", *DEMO]) == 0
    out = capsys.readouterr().out
    assert "!" in out and "fit failed" in out
    rows = json.loads((tmp_path / "demo.json").read_text())["rows"]
    unconverged = [r for r in rows if not r["converged"] and not r["failed"]]
    assert unconverged and all("not converged" in r["message"] for r in unconverged)
    failed = [r for r in rows if r["failed"]]
    assert [(r["arch"], r["N"]) for r in failed] == [("CNN", 5)]
    assert failed[0]["test_error"] is None and "positive definite" in failed[0]["message"]
    assert all(r["converged"] for r in rows if r["N"] == float("inf"))
    assert (tmp_path / "test_error_vs_N.png").stat().st_size > 1000


# --------------------------------------------------------------------------- atomic, interrupted, concurrent
def _outputs(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.name in ("demo.json", "test_error_vs_N.png", "cnn_Q.png")}


def test_interrupted_demo_leaves_the_previous_outputs_and_says_so(tmp_path, capsys,
                                                                  monkeypatch):
    assert main(["demo", "--out", str(tmp_path), *DEMO]) == 0
    before = _outputs(tmp_path)
    assert set(before) == {"demo.json", "test_error_vs_N.png", "cnn_Q.png"}
    run_id = json.loads(before["demo.json"])["run_id"]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "complete" and status["run_id"] == run_id

    import kren
    calls = []

    def interrupting(real_fit):
        def fit(self, *a, **k):
            calls.append(1)
            if len(calls) == 4:                   # Ctrl-C during the fourth fit (LCN, N = ∞)
                raise KeyboardInterrupt
            return real_fit(self, *a, **k)
        return fit
    for cls in (kren.FC, kren.LCN, kren.CNN):
        monkeypatch.setattr(cls, "fit", interrupting(cls.fit))
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--out", str(tmp_path), "--T", "0.05", *DEMO])
    assert exc.value.code == 130
    assert capsys.readouterr().err.strip().startswith("kren: interrupted")
    assert _outputs(tmp_path) == before                   # byte for byte
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "interrupted" and status["run_id"] != run_id
    assert status["previous"]["run_id"] == run_id and status["config"]["T"] == 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cnn_Q.png", "demo.json", "status.json", "test_error_vs_N.png"]  # no temporaries, no lock


def test_failing_output_write_leaves_the_previous_outputs(tmp_path, monkeypatch):
    """The Q figure fails while being written (half a PNG, then an error): every output of the
    previous run stays as it was, none of the new run's appears."""
    from kren.demo import run_demo
    run_demo(out=tmp_path, P=30, n_test=10, Ns=(float("inf"), 5), quiet=True)
    before = _outputs(tmp_path)
    import kren.plotting

    def broken_plot_Q(Q, importance, path, title=""):
        with open(path, "wb") as fh:
            fh.write(b"\x89PNG\r\n\x1a\n half a figure")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(kren.plotting, "plot_Q", broken_plot_Q)
    with pytest.raises(OSError):
        run_demo(out=tmp_path, P=30, n_test=10, Ns=(float("inf"), 5), T=0.2, quiet=True)
    assert _outputs(tmp_path) == before
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "No space left" in status["message"]


def test_second_run_on_a_folder_in_use_is_refused(tmp_path, capsys, no_computing):
    from kren.outputs import RunFolder
    with RunFolder(tmp_path, "demo"):
        line = _user_error(capsys, ["demo", "--out", str(tmp_path), *DEMO], "--out", "in use")
        assert str(os.getpid()) in line
    assert not (tmp_path / ".kren-lock").exists()


def test_lock_of_a_dead_run_is_taken_over(tmp_path, capsys):
    """A run killed without cleaning up leaves its lock; the next run sees that its process is
    gone and proceeds."""
    import socket
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (tmp_path / ".kren-lock").write_text(json.dumps(
        {"pid": p.pid, "host": socket.gethostname(), "command": "demo"}))
    assert main(["demo", "--out", str(tmp_path), *DEMO]) == 0
    assert not (tmp_path / ".kren-lock").exists()
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "complete"


@pytest.mark.parametrize("save_fit", [[], ["--save-fit"]], ids=["json", "fit"])
def test_solve_out_is_written_atomically(tmp_path, capsys, monkeypatch, save_fit):
    """A solve whose --out write fails midway (a full disk) is one error line and leaves the
    previous file byte for byte."""
    import builtins
    import io
    out = tmp_path / "fit.json"
    argv = ["solve", "--arch", "fc", *SMALL, "--out", str(out), "--quiet", *save_fit]
    assert main([*argv, "--N", "20"]) == 0
    before = out.read_bytes()
    real_open = builtins.open

    class FullDisk:                  # the first write stores half of the bytes, then ENOSPC
        def __init__(self, fh):
            self._fh = fh

        def write(self, data):
            self._fh.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def full_disk_open(file, mode="r", *a, **k):
        fh = real_open(file, mode, *a, **k)
        return FullDisk(fh) if "w" in mode and str(tmp_path) in str(file) else fh

    monkeypatch.setattr(builtins, "open", full_disk_open)
    monkeypatch.setattr(io, "open", full_disk_open)
    _user_error(capsys, [*argv, "--N", "5"], "No space left", str(out))
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.json"]
