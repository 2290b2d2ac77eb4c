"""The BLAS thread policy (kren.linalg.blas_threads): other processes' load, not kren's own."""
from __future__ import annotations

import kren.kernels
import kren.linalg as la


def test_own_load_is_the_cpu_rate_over_the_last_minute(monkeypatch):
    """_own_load = ΔCPU/Δwall between now and the oldest sample within LOAD_WINDOW (60 s):
    2 cores busy for 30 s, then 1 core for 60 s, read at 90 s: the window starts at 30 s, so
    60 CPU-seconds in 60 s = 1.0; samples closer than 1 s to the last one are not kept."""
    monkeypatch.setattr(la, "_SAMPLES", [])
    assert la._own_load(0.0, 0.0) == 0.0                     # a window shorter than 1 s
    assert la._own_load(30.0, 60.0) == 2.0
    assert la._own_load(30.5, 61.0) == 61.0 / 30.5           # read, not kept
    assert len(la._SAMPLES) == 2
    assert la._own_load(90.0, 120.0) == 1.0                  # (120 − 60)/(90 − 30)


def test_busy_machine_means_other_processes(monkeypatch):
    """Two cores, load average 2: one thread when the load is another process's (more than
    half a core of it), all cores when it is this process's own (its pass threads), never
    threads below THREADED_MIN; sixteen cores: busy from four cores held by others."""
    monkeypatch.setattr(kren.kernels, "_threads", lambda: 2)
    monkeypatch.setattr(la, "_others_running", lambda: None)    # no /proc: the load average
    monkeypatch.setattr(la, "BUSY_TTL", 0.0)
    monkeypatch.setattr(la, "_loadavg", lambda: 2.0)
    monkeypatch.setattr(la, "_own_load", lambda: 0.0)
    assert la.blas_threads(la.THREADED_MIN) == 1
    monkeypatch.setattr(la, "_own_load", lambda: 1.9)
    assert la._busy_cores() == 2.0 - 1.9
    assert la.blas_threads(la.THREADED_MIN) is None
    assert la.blas_threads(la.THREADED_MIN - 1) == 1
    monkeypatch.setattr(la, "_own_load", lambda: 1.4)           # others hold 0.6 core
    assert la.blas_threads(la.THREADED_MIN) == 1
    monkeypatch.setattr(kren.kernels, "_threads", lambda: 16)
    monkeypatch.setattr(la, "_loadavg", lambda: 5.0)
    monkeypatch.setattr(la, "_own_load", lambda: 1.5)           # others hold 3.5 cores
    assert la.blas_threads(la.THREADED_MIN) is None
    monkeypatch.setattr(la, "_own_load", lambda: 0.5)           # others hold 4.5 cores
    assert la.blas_threads(la.THREADED_MIN) == 1


def test_busy_from_proc_counts_other_processes_running_now(monkeypatch):
    """Where /proc tells, busy cores = other user processes running now (the fewer of two
    scans; the lagging load average is then not read), and the answer is reused for BUSY_TTL.
    Two cores: one other → busy (> 0.5 core); none → idle even at load average 5; a process
    seen in one scan only is a blip."""
    monkeypatch.setattr(kren.kernels, "_threads", lambda: 2)
    monkeypatch.setattr(la, "_loadavg", lambda: 5.0)
    monkeypatch.setattr(la, "_own_load", lambda: 0.0)
    monkeypatch.setattr(la, "BUSY_TTL", 0.0)
    monkeypatch.setattr(la, "_others_running", lambda: 1)
    assert la._busy_cores() == 1.0 and la.blas_threads(la.THREADED_MIN) == 1
    monkeypatch.setattr(la, "_others_running", lambda: 0)
    assert la._busy_cores() == 0.0 and la.blas_threads(la.THREADED_MIN) is None
    reads = iter([2, 0])
    monkeypatch.setattr(la, "_others_running", lambda: next(reads))
    assert la._busy_cores() == 0.0
    monkeypatch.setattr(la, "BUSY_TTL", 60.0)                 # reused: no scan within the TTL
    monkeypatch.setattr(la, "_others_running", lambda: 7)
    assert la._busy_cores() == 0.0


def test_proc_scan_sees_a_running_process():
    """On Linux a CPU-bound child process is counted as running (kernel threads and this
    process are not); elsewhere the scan is None and the load average is used."""
    import os
    import subprocess
    import sys
    import time
    if la._others_running() is None:
        assert not os.path.exists("/proc/self")
        return
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert max(la._others_running() for _ in range(20)) >= 1
    finally:
        child.kill()
        child.wait()
