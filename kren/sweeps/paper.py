"""``kren paper``: the sweep behind the headline comparison, and its figure.

FC vs LCN vs CNN on the embedded digits (even vs odd), test error against the width N at fixed
P, theory from N = 5 to N = ∞ and Langevin-sampled networks at three widths; the config is the
packaged ``paper.toml`` (``kren paper --print-config`` prints it; its comments say why each
number was chosen). ``--data PATH`` runs the same config on MNIST or CIFAR-10 files
(:func:`kren.sweeps.datasets.detect`; ``KIND:PATH`` names the kind). Writes the sweep folder
and ``paper.png``/``paper.pdf`` (test error against N, sampled points with ±2 SE) in it.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .config import load_config
from .datasets import DATASETS, detect

__all__ = ["paper_config_text", "print_config", "run_paper", "parse_data"]


def paper_config_text() -> str:
    """The packaged paper.toml."""
    return resources.files("kren.sweeps").joinpath("paper.toml").read_text()


def print_config() -> None:
    """Print the packaged paper.toml (to copy and edit)."""
    print(paper_config_text(), end="")


def parse_data(spec: str):
    """``--data`` value -> (dataset, path): "digits", "KIND:PATH" or a folder (detected)."""
    if spec == "digits":
        return "digits", None
    kind, sep, path = spec.partition(":")
    if sep and kind in DATASETS and DATASETS[kind][1]:
        return kind, path
    return detect(spec), spec


def run_paper(out=None, data=None, workers=None, scheduler=None, progress=True, config=None):
    """Run the paper's sweep into ``out`` and draw its figures; returns (SweepResult, path of
    paper.png). ``data``: see :func:`parse_data`; ``config``: another config file."""
    from . import sweep
    from .figures import plot_sweep, plot_test_error
    from .table import read_table
    if config is None:
        import tomllib
        from dataclasses import replace
        text = paper_config_text()
        cfg = replace(load_config(tomllib.loads(text)), text=text, source="paper.toml")
    else:
        cfg = load_config(config)
    name = "digits"
    if data is not None:
        name, path = parse_data(data)
        cfg = cfg.with_dataset(name, path)
    if out is None:
        out = "kren-paper" if name == "digits" else f"kren-paper-{name}"
    res = sweep(cfg, out, workers=workers, scheduler=scheduler, progress=progress)
    folder = Path(res.folder)
    plot_sweep(folder)
    title = cfg.name if name == "digits" else cfg.name.replace("digits", name)
    paths = plot_test_error(read_table(folder), folder / "paper", "N", title)
    return res, str(paths[0])
