"""notebooks/05_multiple_outputs.ipynb (notebooks/build_05_multiple_outputs.py) runs top to
bottom without error and its committed cells are those its builder writes. Every symbolic step
inside it raises if the derived expression differs from the stated one (derivations.multi_steps)."""
import importlib.util
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1] / "notebooks"


def test_notebook_05_executes_and_matches_its_builder():
    spec = importlib.util.spec_from_file_location("build05", ROOT / "build_05_multiple_outputs.py")
    build05 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build05)
    nb = nbformat.read(ROOT / "05_multiple_outputs.ipynb", as_version=4)
    assert [c.source for c in nb.cells] == [c.source for c in build05.build().cells]
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    t0 = time.perf_counter()
    build05.execute(nb, timeout=120)                   # raises CellExecutionError on any error
    assert time.perf_counter() - t0 < 120
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for marker in ("Step 8D", "Step Q=1", "Step n=1", "FC: Q_ shape (10, 10) converged True",
                   "CNN: Q_ shape (16, 10, 16, 10) converged True", "notebook ran in"):
        assert marker in outputs, marker
    pngs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "image/png" in o.get("data", {})]
    assert len(pngs) == 2
