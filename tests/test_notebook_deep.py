"""notebooks/06_deep_networks.ipynb (notebooks/build_06_deep_networks.py) holds exactly the cells
its builder writes, carries executed outputs, and runs top to bottom without error in under a minute:
small live computations (L = 1 equals kren.FC, both forms at L = 2, 3, Anderson = Newton, a tiny
sampled run) and the committed results of benchmarks/deep_vs_sampled.py."""
import importlib.util
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1] / "notebooks"
MARKERS = ["|Q − Q_FC| =", "‖K_R(nested) − K_R(product)‖_F", "Anderson agrees to",
           "identical weights: True", "closer form by test error:", "notebook ran in"]


def _builder():
    spec = importlib.util.spec_from_file_location("build06", ROOT / "build_06_deep_networks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_notebook_06_executes_and_matches_its_builder():
    build = _builder()
    nb = nbformat.read(build.PATH, as_version=4)
    assert [c.source for c in nb.cells] == [c.source for c in build.build().cells]
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    t0 = time.perf_counter()
    build.execute(nb, timeout=60)                    # raises CellExecutionError on any error
    assert time.perf_counter() - t0 < 60              # headroom for a loaded CI machine
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for marker in MARKERS:
        assert marker in outputs, marker
    # L = 1: both forms reproduce kren.FC (the printed differences are round-off)
    for line in outputs.splitlines():
        if "|Q − Q_FC| =" in line:
            assert float(line.split("|Q − Q_FC| =")[1].split()[0]) < 1e-10
