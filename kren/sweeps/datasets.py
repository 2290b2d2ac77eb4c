"""Where a sweep's data come from: the data sets a config may name, their input shapes, loading.

``dataset`` in a sweep's grid is one of :data:`DATASETS`:

- ``"digits"``: scikit-learn's embedded 8×8 digits (:func:`kren.data.load_digits`), (1, 8, 8);
- ``"mnist"``, ``"fashion-mnist"``: idx files in the folder ``[data.paths] mnist = "..."``
  (:func:`kren.data.load_mnist`, :func:`kren.data.load_fashion_mnist`), (1, 28, 28);
- ``"cifar10"``: the python-pickle batches in ``[data.paths] cifar10 = "..."``
  (:func:`kren.data.load_cifar10`), (3, 32, 32), or (1, 32, 32) with ``[data] grayscale = true``.

A data set is loaded on the worker that needs it (never shipped from the client) and the
training inputs are the first ``P`` of a seeded draw (:mod:`kren.data`), so every point with the
same (dataset, classes, P, n_test, seed, standardize, grayscale) sees the same arrays.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import SweepConfigError

__all__ = ["DATASETS", "input_shape", "load", "detect", "data_key"]

#: name -> (input shape (C, H, W), needs a path)
DATASETS = {
    "digits": ((1, 8, 8), False),
    "mnist": ((1, 28, 28), True),
    "fashion-mnist": ((1, 28, 28), True),
    "cifar10": ((3, 32, 32), True),
}


def input_shape(name: str, grayscale: bool = False) -> tuple:
    """Input shape (C, H, W) of the data set ``name`` (CIFAR-10 grayscale: one channel)."""
    shape, _ = DATASETS[name]
    if name == "cifar10" and grayscale:
        return (1,) + shape[1:]
    return shape


def data_key(dataset: str, P: int, seed: int, data: dict) -> tuple:
    """Everything the loaded arrays depend on (a point's data identity)."""
    path = data["paths"].get(dataset) if DATASETS[dataset][1] else None
    classes = data["classes"]
    return (dataset, path, _hashable(classes), int(P), int(data["n_test"]), int(seed),
            bool(data["standardize"]), bool(data["grayscale"]) if dataset == "cifar10" else False)


def _hashable(v):
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(u) for u in v)
    return v


def _classes(value):
    if value == "none":
        return None
    if isinstance(value, (list, tuple)):
        return tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in value)
    return value


def load(key: tuple):
    """The :class:`kren.data.Dataset` of a data key (:func:`data_key`)."""
    from .. import data as _data
    dataset, path, classes, P, n_test, seed, standardize, grayscale = key
    kw = dict(classes=_classes(classes), n_train=P, n_test=n_test, seed=seed,
              standardize=standardize)
    if dataset == "digits":
        return _data.load_digits(**kw)
    if path is None:
        raise SweepConfigError(f"dataset {dataset!r} needs its folder: [data.paths] "
                               f"{dataset} = \"/path/to/files\" (or kren paper --data PATH)")
    if dataset == "mnist":
        return _data.load_mnist(path, **kw)
    if dataset == "fashion-mnist":
        return _data.load_fashion_mnist(path, **kw)
    return _data.load_cifar10(path, grayscale=grayscale, **kw)


def detect(path) -> str:
    """The data set held by the folder ``path``: ``"mnist"`` (idx files, also under ``raw/``)
    or ``"cifar10"`` (``data_batch_1`` ... ``test_batch``, also under ``cifar-10-batches-py/``).
    Fashion-MNIST has MNIST's file names: name it explicitly (``fashion-mnist:PATH``)."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"data folder not found: {p}")
    for d in (p, p / "raw", p / "cifar-10-batches-py"):
        if not d.is_dir():
            continue
        names = set(os.listdir(d))
        if any(n.startswith("train-images-idx3-ubyte") for n in names):
            return "mnist"
        if "test_batch" in names or "data_batch_1" in names:
            return "cifar10"
    raise SweepConfigError(
        f"{p} holds neither MNIST idx files (train-images-idx3-ubyte[.gz], ...) nor CIFAR-10 "
        "batches (data_batch_1 ... test_batch); name the data set as KIND:PATH with KIND one of "
        + ", ".join(k for k, (_, need) in DATASETS.items() if need))
