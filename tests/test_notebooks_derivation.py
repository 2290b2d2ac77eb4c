"""The derivation notebooks 01–03 (notebooks/build_derivation_notebooks.py) run top to bottom
without error in under 60 s each, and the committed .ipynb files hold exactly the cells their
builder writes. Every symbolic step inside them is an `assert` (SymPy simplify to 0, exact
rational equality, closed forms of THEORY §5), so a wrong derivation step fails the run."""
import importlib.util
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1] / "notebooks"


def _builder():
    spec = importlib.util.spec_from_file_location("build_derivation",
                                                  ROOT / "build_derivation_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# markers each executed notebook must print (numeric results of its final solves)
EXPECTED = {
    "01": ["closed form Q =", "| inf | 1.00000 | 1.00000 |", "notebook ran in"],
    "02": ["(exact match)", "‖K_R − K_NNGP‖_F / ‖K_NNGP‖_F =", "| ∞ |", "notebook ran in"],
    "03": ["CNN: Q =", "LCN: Q =", "max abs(f_LCN(∞) − f_CNN(∞))", "notebook ran in"],
}


@pytest.mark.parametrize("name", ["01", "02", "03"])
def test_derivation_notebook_executes_and_matches_its_builder(name):
    build = _builder()
    nb = nbformat.read(build.path(name), as_version=4)
    assert [c.source for c in nb.cells] == [c.source for c in build.build(name).cells]
    # the committed file carries executed outputs
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    t0 = time.perf_counter()
    build.execute(nb, timeout=60)                     # raises CellExecutionError on any error
    elapsed = time.perf_counter() - t0
    assert elapsed < 60, elapsed
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for marker in EXPECTED[name]:
        assert marker in outputs, marker
    assert not any(o.get("output_type") == "error"
                   for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_builder_rejects_unknown_notebook():
    with pytest.raises(ValueError, match="unknown notebook"):
        _builder().build("05")
