"""Offline data sets for kren: bundled 8×8 digits, MNIST / Fashion-MNIST idx files, CIFAR-10 pickle
batches, and Gaussian inputs labelled by a random teacher network. Nothing is downloaded.

Every loader returns a :class:`Dataset` (inputs flattened channels-first (C, H, W) -> c·H·W + h·W + w,
float64, as :mod:`kren.geometry` expects) together with the parameters that produced it in
``meta``.

Options common to the loaders of labelled images
-------------------------------------------------
``classes``
    * two labels ``(a, b)``: keep those two classes, y = target[0] (+1) for a, target[1] (−1) for b;
    * a two-way split ``((0, 2, 4, 6, 8), (1, 3, 5, 7, 9))``: the first group -> +1, the second -> −1;
    * ``"even-odd"``: the split above (even digits +1, odd digits −1);
    * ``None``: every class, y = the raw label as a float (regression target);
    * ``"all"``: every class as a class (THEORY §1, D outputs): y = the integer label (as a
      float, shape (P,)), or with ``one_hot=True`` the (P, C) one-hot targets, C the number of
      classes of the data set (10 for digits, MNIST, CIFAR-10), output d for the d-th smallest
      label. The integer labels are also in ``aux["labels_train"]``/``aux["labels_test"]`` and
      the class list in ``meta["labels"]``.
``target``
    the pair of values (first group, second group), default (+1.0, −1.0); with
    ``classes="all", one_hot=True``: (true class, every other class), so (1, −1) gives ±1
    targets and (1, 0) gives 0/1 targets; unused for ``None`` and for ``"all"`` without one-hot.
``one_hot``
    ``False`` (default) or ``True`` (only with ``classes="all"``): one-hot (P, C) targets.
``n_train``, ``n_test``, ``seed``
    samples drawn uniformly without replacement, deterministically given ``seed``; train and test
    are disjoint (MNIST, CIFAR: train from the training files, test from the test files; digits:
    both from the single bundled set). ``n_test=None`` takes every remaining test sample. The
    training draw is a random order, and for a fixed seed a smaller ``n_train`` gives a prefix of a
    larger one (nested training sets for learning curves); the test draw does not depend on
    ``n_train`` except for digits with ``n_test=None``.
``standardize``
    per-feature z-score with the TRAINING mean and standard deviation (ddof = 0), applied to both
    splits. A feature whose training standard deviation is zero (up to 1e-12 relative to its
    largest training magnitude, or 1e-12 absolute) is only centered, never divided.
    Without standardization pixels are scaled to [0, 1] (divided by 16 for digits, 255 otherwise).

Errors: a missing directory or file raises FileNotFoundError naming the path and the expected file
names; unknown classes, impossible sizes or malformed files raise ValueError.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset", "load_digits", "load_mnist", "load_fashion_mnist", "load_cifar10",
           "teacher", "standardize_splits", "read_idx", "EVEN_ODD", "LUMINANCE"]

EVEN_ODD = ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9))
#: ITU-R BT.601 luma weights used by ``load_cifar10(grayscale=True)``: Y = 0.299 R + 0.587 G + 0.114 B.
LUMINANCE = (0.299, 0.587, 0.114)

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR_TRAIN = tuple(f"data_batch_{k}" for k in range(1, 6))
CIFAR_TEST = "test_batch"

# idx type codes -> big-endian dtypes
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ====================================================================== Dataset
@dataclass
class Dataset:
    """A train/test split: X (P, N0) float64 flattened channels-first, y (P,) float64 (or (P, D)
    one-hot targets for ``classes="all", one_hot=True``).

    ``input_shape`` = (C, H, W); ``meta``: the parameters that produced it (name, classes,
    n_train, n_test, seed, standardize, ...). ``aux`` holds optional extra arrays (the teacher's
    weights for :func:`teacher`); they are not part of the fingerprint.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    input_shape: tuple
    meta: dict = field(default_factory=dict)
    aux: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        N0 = int(np.prod(self.input_shape))
        for split in ("train", "test"):
            X = np.ascontiguousarray(getattr(self, f"X_{split}"), dtype=np.float64)
            y = np.ascontiguousarray(getattr(self, f"y_{split}"), dtype=np.float64)
            if X.ndim != 2 or X.shape[1] != N0:
                raise ValueError(f"X_{split} must have shape (P, {N0}) for input_shape "
                                 f"{self.input_shape}, got {X.shape}")
            if y.shape[:1] != (X.shape[0],) or y.ndim not in (1, 2):
                raise ValueError(f"y_{split} must have shape ({X.shape[0]},) or ({X.shape[0]}, D) "
                                 f"to match X_{split}, got {y.shape}")
            setattr(self, f"X_{split}", X)
            setattr(self, f"y_{split}", y)

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.X_test.shape[0])

    @property
    def N0(self) -> int:
        return int(self.X_train.shape[1])

    def fingerprint(self) -> str:
        """sha256 (hex) of input_shape and the four arrays (name, shape, float64 LE bytes)."""
        h = hashlib.sha256()
        h.update(repr(self.input_shape).encode())
        for name in ("X_train", "y_train", "X_test", "y_test"):
            a = np.ascontiguousarray(getattr(self, name), dtype="<f8")
            h.update(name.encode())
            h.update(repr(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def to_dict(self) -> dict:
        """Plain dict (arrays, input_shape as a list, meta, fingerprint) for saving with a fit."""
        return {"X_train": self.X_train, "y_train": self.y_train, "X_test": self.X_test,
                "y_test": self.y_test, "input_shape": list(self.input_shape),
                "meta": dict(self.meta), "fingerprint": self.fingerprint()}

    @classmethod
    def from_dict(cls, d: dict) -> "Dataset":
        """Inverse of :meth:`to_dict`; raises ValueError if a stored fingerprint does not match."""
        ds = cls(d["X_train"], d["y_train"], d["X_test"], d["y_test"], tuple(d["input_shape"]),
                 dict(d.get("meta", {})))
        stored = d.get("fingerprint")
        if stored is not None and stored != ds.fingerprint():
            raise ValueError("data set fingerprint mismatch: the arrays differ from the ones saved")
        return ds


# ====================================================================== helpers
def _check_count(value, name: str, allow_none: bool = False, minimum: int = 1):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _parse_classes(classes):
    """Normalize ``classes`` to None or a pair of tuples of ints (two disjoint non-empty groups)."""
    if classes is None:
        return None
    if isinstance(classes, str):
        if classes.replace("_", "-").lower() == "even-odd":
            return EVEN_ODD
        if classes.lower() == "all":
            return "all"
        raise ValueError(f"unknown classes {classes!r}: use two labels (a, b), two groups of "
                         "labels ((..), (..)), 'even-odd', 'all' or None")
    try:
        items = list(classes)
    except TypeError:
        raise ValueError(f"classes must be two labels (a, b), two groups, 'even-odd' or None, "
                         f"got {classes!r}") from None
    if len(items) != 2:
        raise ValueError(f"classes must name exactly two classes or two groups, got {classes!r}")
    groups = []
    for item in items:
        group = (item,) if isinstance(item, (int, np.integer)) else item
        try:
            group = tuple(group)
        except TypeError:
            raise ValueError(
                f"classes entries must be labels or tuples of labels, got {item!r}") from None
        if len(group) == 0:
            raise ValueError(f"classes has an empty group: {classes!r}")
        for c in group:
            if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
                raise ValueError(f"class labels must be integers, got {c!r} in {classes!r}")
        groups.append(tuple(int(c) for c in group))
    overlap = set(groups[0]) & set(groups[1])
    if overlap:
        raise ValueError(f"classes {sorted(overlap)} appear in both groups of {classes!r}")
    return tuple(groups)


def _check_target(target):
    try:
        a, b = (float(t) for t in target)
    except (TypeError, ValueError):
        raise ValueError(f"target must be a pair of numbers (first group, second group), "
                         f"got {target!r}") from None
    if not (np.isfinite(a) and np.isfinite(b)):
        raise ValueError(f"target values must be finite, got {target!r}")
    return a, b


def _check_one_hot(one_hot, groups):
    if not isinstance(one_hot, (bool, np.bool_)):
        raise ValueError(f"one_hot must be True or False, got {one_hot!r}")
    if one_hot and groups != "all":
        raise ValueError("one_hot=True needs classes='all' (one output per class); two classes "
                         "or groups give one ±1 target")
    return bool(one_hot)


def _label_selection(labels: np.ndarray, groups, target, split: str, one_hot=False,
                     all_labels=None):
    """Indices kept and their targets. ``groups`` from :func:`_parse_classes`; for "all" the
    targets are the labels (float) or, ``one_hot``, (P, C) rows over ``all_labels``."""
    labels = np.asarray(labels)
    if groups is None or groups == "all":
        idx = np.arange(labels.shape[0])
        if groups == "all" and one_hot:
            classes = np.asarray(all_labels)
            Y = np.full((labels.shape[0], classes.shape[0]), target[1], dtype=np.float64)
            Y[idx, np.searchsorted(classes, labels)] = target[0]
            return idx, Y
        return idx, labels.astype(np.float64)
    present = set(np.unique(labels).tolist())
    missing = [c for g in groups for c in g if c not in present]
    if missing:
        raise ValueError(f"class(es) {missing} not present in the {split} labels; available "
                         f"classes: {sorted(present)}")
    in_a = np.isin(labels, groups[0])
    in_b = np.isin(labels, groups[1])
    idx = np.flatnonzero(in_a | in_b)
    y = np.where(in_a[idx], target[0], target[1]).astype(np.float64)
    return idx, y


def _draw(rng: np.random.Generator, pool: int, n: int | None, what: str, where: str) -> np.ndarray:
    if n is None:
        n = pool
    if n > pool:
        raise ValueError(f"{what}={n} is larger than the {pool} samples available in {where}")
    return rng.permutation(pool)[:n]


def standardize_splits(X_train: np.ndarray, X_test: np.ndarray, rtol: float = 1e-12):
    """Per-feature z-score with the TRAINING statistics, applied to both splits.

    x -> (x − mean_train) / std_train (ddof = 0). Features whose training std is at most
    rtol·max(1, max|x_train|) are only centered (never divided). Returns
    (X_train, X_test, info) with info = dict(mean, std, constant) (std is 1 on constant features).
    """
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    scale = np.maximum(1.0, np.abs(X_train).max(axis=0))
    constant = std <= rtol * scale
    std = np.where(constant, 1.0, std)
    return (X_train - mean) / std, (X_test - mean) / std, {"mean": mean, "std": std,
                                                              "constant": constant}


def _finish(name, X_train, y_train, X_test, y_test, input_shape, standardize, meta) -> Dataset:
    X_train = X_train.astype(np.float64)
    X_test = X_test.astype(np.float64)
    if not isinstance(standardize, (bool, np.bool_)):
        raise ValueError(f"standardize must be True or False, got {standardize!r}")
    if standardize:
        X_train, X_test, info = standardize_splits(X_train, X_test)
        meta["n_constant_features"] = int(info["constant"].sum())
    meta = {"name": name, **meta, "standardize": bool(standardize),
            "n_train": int(X_train.shape[0]), "n_test": int(X_test.shape[0]),
            "input_shape": list(input_shape)}
    return Dataset(X_train, y_train, X_test, y_test, tuple(input_shape), meta)


def _classes_meta(groups):
    if groups == "all":
        return "all"
    return None if groups is None else [list(g) for g in groups]


def _all_meta(groups, one_hot, all_labels, target, labels_tr, labels_te):
    """meta and aux entries of classes="all": the class list, one_hot, the integer labels."""
    if groups != "all":
        return {}, {}
    return ({"labels": [int(c) for c in all_labels], "one_hot": bool(one_hot),
             "target": list(target) if one_hot else None},
            {"labels_train": np.asarray(labels_tr, dtype=np.int64),
             "labels_test": np.asarray(labels_te, dtype=np.int64)})


def _labelled_split(name, train_images, train_labels, test_images, test_labels, input_shape,
                    scale, classes, n_train, n_test, seed, standardize, target, extra_meta,
                    one_hot=False):
    """Select classes, draw disjoint train/test sets, scale, standardize (MNIST, CIFAR)."""
    groups = _parse_classes(classes)
    target = _check_target(target)
    one_hot = _check_one_hot(one_hot, groups)
    n_train = _check_count(n_train, "n_train")
    n_test = _check_count(n_test, "n_test", allow_none=True)
    seed = _check_seed(seed)
    all_labels = np.union1d(np.unique(train_labels), np.unique(test_labels))
    tr_idx, tr_y = _label_selection(train_labels, groups, target, "training", one_hot, all_labels)
    te_idx, te_y = _label_selection(test_labels, groups, target, "test", one_hot, all_labels)
    ss_train, ss_test = np.random.SeedSequence(seed).spawn(2)
    what = "the selected classes of the " if groups is not None else "the "
    d_tr = _draw(np.random.default_rng(ss_train), tr_idx.size, n_train, "n_train",
                 what + "training files")
    d_te = _draw(np.random.default_rng(ss_test), te_idx.size, n_test, "n_test",
                 what + "test files")
    rows_tr, rows_te = tr_idx[d_tr], te_idx[d_te]
    X_train = train_images[rows_tr].reshape(rows_tr.size, -1).astype(np.float64) / scale
    X_test = test_images[rows_te].reshape(rows_te.size, -1).astype(np.float64) / scale
    meta = {"classes": _classes_meta(groups),
            "target": list(target) if groups and groups != "all" else None,
            "seed": seed, "scale": float(scale), "n_available_train": int(tr_idx.size),
            "n_available_test": int(te_idx.size),
            **extra_meta}
    more, aux = _all_meta(groups, one_hot, all_labels, target,
                          np.asarray(train_labels)[rows_tr], np.asarray(test_labels)[rows_te])
    meta.update(more)
    ds = _finish(name, X_train, tr_y[d_tr], X_test, te_y[d_te], input_shape, standardize, meta)
    ds.aux.update(aux)
    return ds


# ====================================================================== digits
def load_digits(classes=(0, 1), n_train=200, n_test=None, seed=0, standardize=True,
                target=(1.0, -1.0), one_hot=False) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1797 images, pixel values 0..16), input_shape (1, 8, 8).

    Train and test are drawn from the one bundled set: a seeded permutation of the selected
    samples, train = its first n_train entries, test = its last n_test entries (``n_test=None``:
    every sample not in train). Defaults: classes (0, 1) have 360 samples (178 zeros, 182 ones),
    so n_train = 200 and the remaining 160 for testing. Pixels / 16 before standardization.
    ``classes="all"``: the ten digits (1797 samples; y the label, or with ``one_hot=True`` the
    (P, 10) one-hot targets). See the module docstring for ``classes``, ``target``,
    ``one_hot`` and ``standardize``.
    """
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    images = np.asarray(bunch.data, dtype=np.float64)            # (1797, 64), row-major 8×8
    labels = np.asarray(bunch.target, dtype=np.int64)
    groups = _parse_classes(classes)
    target = _check_target(target)
    one_hot = _check_one_hot(one_hot, groups)
    n_train = _check_count(n_train, "n_train")
    n_test = _check_count(n_test, "n_test", allow_none=True)
    seed = _check_seed(seed)
    all_labels = np.unique(labels)
    idx, y = _label_selection(labels, groups, target, "digits", one_hot, all_labels)
    pool = idx.size
    where = ("the selected digit classes" if groups is not None else "the digits set")
    if n_train + (n_test or 0) > pool or (n_test is None and n_train >= pool):
        need = f"n_train + n_test = {n_train} + {n_test}" if n_test is not None else \
            f"n_train = {n_train} (plus at least one test sample)"
        raise ValueError(f"{need} is larger than the {pool} samples available in {where}")
    perm = np.random.default_rng(seed).permutation(pool)
    d_tr = perm[:n_train]
    d_te = perm[n_train:] if n_test is None else perm[pool - n_test:]
    meta = {"classes": _classes_meta(groups),
            "target": list(target) if groups and groups != "all" else None,
            "seed": seed, "scale": 16.0, "n_available": int(pool),
            "source": "sklearn.datasets.load_digits"}
    more, aux = _all_meta(groups, one_hot, all_labels, target, labels[idx[d_tr]],
                          labels[idx[d_te]])
    meta.update(more)
    ds = _finish("digits", images[idx[d_tr]] / 16.0, y[d_tr], images[idx[d_te]] / 16.0,
                 y[d_te], (1, 8, 8), standardize, meta)
    ds.aux.update(aux)
    return ds


# ====================================================================== idx (MNIST)
def read_idx(path) -> np.ndarray:
    """Read one idx file (optionally gzipped, detected from the gzip magic bytes 1f 8b).

    Header: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int,
    0x0D float, 0x0E double), the number of dimensions d, then d big-endian uint32 sizes;
    images are 0x00000803 (d = 3), labels 0x00000801 (d = 1). Returns the array in native order.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an idx file: bad magic number {raw[:4].hex() or '(empty)'} "
                         "(expected 00 00 <type> <ndim>, e.g. 0x00000803 images, 0x00000801 labels)")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated idx header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(f"{path}: idx header announces shape {dims} ({count * dtype.itemsize} "
                         f"bytes of data) but the file holds {len(raw) - header} bytes")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _find_dir(path, names, what) -> str:
    """The directory holding ``names`` (each plain or .gz): ``path`` itself or ``path/raw``."""
    if path is None:
        raise FileNotFoundError(f"{what}: no directory given; pass the path of a directory "
                                f"holding {', '.join(names)}")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} directory {path!r} does not exist; expected a directory "
                                f"holding {', '.join(names)} (each plain or .gz)")
    return path


def _find_file(directory, name, what, names) -> str:
    for d in (directory, os.path.join(directory, "raw")):
        for candidate in (name, name + ".gz"):
            p = os.path.join(d, candidate)
            if os.path.isfile(p):
                return p
    raise FileNotFoundError(f"{what}: file {name!r} (or {name + '.gz'!r}) not found in "
                            f"{directory!r} (nor in its 'raw' subdirectory); expected files: "
                            f"{', '.join(names)}")


def _load_idx_set(name, path, classes, n_train, n_test, seed, standardize, target,
                  one_hot=False) -> Dataset:
    names = list(MNIST_FILES.values())
    directory = _find_dir(path, names, name)
    files = {k: _find_file(directory, v, name, names) for k, v in MNIST_FILES.items()}
    arrays = {k: read_idx(p) for k, p in files.items()}
    for split in ("train", "test"):
        img, lab = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if img.ndim != 3:
            raise ValueError(f"{files[split + '_images']}: expected 3 dimensions (count, rows, "
                             f"cols) (magic 0x00000803), got shape {img.shape}")
        if lab.ndim != 1:
            raise ValueError(f"{files[split + '_labels']}: expected 1 dimension (magic "
                             f"0x00000801), got shape {lab.shape}")
        if img.shape[0] != lab.shape[0]:
            raise ValueError(f"{split} set: {img.shape[0]} images but {lab.shape[0]} labels")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise ValueError(f"train images {arrays['train_images'].shape[1:]} and test images "
                         f"{arrays['test_images'].shape[1:]} differ in size")
    input_shape = (1, *arrays["train_images"].shape[1:])
    return _labelled_split(name, arrays["train_images"], arrays["train_labels"],
                           arrays["test_images"], arrays["test_labels"], input_shape, 255.0,
                           classes, n_train, n_test, seed, standardize, target,
                           {"source": os.path.abspath(directory)}, one_hot)


def load_mnist(path, classes=(0, 1), n_train=500, n_test=500, seed=0, standardize=True,
               target=(1.0, -1.0), one_hot=False) -> Dataset:
    """MNIST from a directory of the standard idx files (plain or .gz; ``path`` or ``path/raw``):
    train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    t10k-labels-idx1-ubyte. input_shape (1, 28, 28); pixels / 255 before standardization.
    Train drawn from the training files, test from the t10k files (module docstring for options).
    """
    return _load_idx_set("mnist", path, classes, n_train, n_test, seed, standardize, target,
                         one_hot)


def load_fashion_mnist(path, classes=(0, 1), n_train=500, n_test=500, seed=0, standardize=True,
                       target=(1.0, -1.0), one_hot=False) -> Dataset:
    """Fashion-MNIST: the same idx file names and layout as :func:`load_mnist` (labels 0..9 =
    T-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot)."""
    return _load_idx_set("fashion-mnist", path, classes, n_train, n_test, seed, standardize,
                         target, one_hot)


# ====================================================================== CIFAR-10
def _read_cifar_batch(path):
    with open(path, "rb") as fh:
        try:
            d = pickle.load(fh, encoding="bytes")
        except Exception as exc:   # noqa: BLE001 - any unpickling failure is a malformed file
            raise ValueError(f"{path}: not a CIFAR-10 python pickle batch ({exc})") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"{path}: expected a dict with keys b'data' and b'labels', got {keys}")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: b'data' must have shape (count, 3072), got {data.shape}")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {data.shape[0]} images but {labels.shape} labels")
    return data.astype(np.uint8, copy=False), labels


def load_cifar10(path, grayscale=False, classes=(0, 1), n_train=500, n_test=500, seed=0,
                 standardize=True, target=(1.0, -1.0), one_hot=False) -> Dataset:
    """CIFAR-10 from the python-pickle batch directory (data_batch_1..data_batch_5, test_batch;
    ``path`` itself or ``path/cifar-10-batches-py``). Each batch is a dict with b"data"
    (count, 3072) uint8, rows = 1024 red, 1024 green, 1024 blue values, each 32×32 row-major
    (already channels-first), and b"labels".

    RGB: input_shape (3, 32, 32). ``grayscale=True``: one channel, input_shape (1, 32, 32), the
    ITU-R BT.601 luminance Y = 0.299 R + 0.587 G + 0.114 B. Pixels / 255 before standardization.
    Labels 0..9 = airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck.
    The batches are read with ``pickle``: load only files you trust.
    """
    names = list(CIFAR_TRAIN) + [CIFAR_TEST]
    directory = _find_dir(path, names, "cifar10")
    sub = os.path.join(directory, "cifar-10-batches-py")
    if not os.path.isfile(os.path.join(directory, CIFAR_TEST)) and os.path.isdir(sub):
        directory = sub
    missing = [nm for nm in names if not os.path.isfile(os.path.join(directory, nm))]
    if missing:
        raise FileNotFoundError(f"cifar10: file(s) {missing} not found in {directory!r}; expected "
                                f"files: {', '.join(names)}")
    if not isinstance(grayscale, (bool, np.bool_)):
        raise ValueError(f"grayscale must be True or False, got {grayscale!r}")
    train = [_read_cifar_batch(os.path.join(directory, nm)) for nm in CIFAR_TRAIN]
    tr_img = np.concatenate([b[0] for b in train])
    tr_lab = np.concatenate([b[1] for b in train])
    te_img, te_lab = _read_cifar_batch(os.path.join(directory, CIFAR_TEST))
    if grayscale:
        w = np.asarray(LUMINANCE)

        def gray(images):   # applied to the drawn rows only, see _LazyRows
            return images.reshape(-1, 3, 1024).astype(np.float64).transpose(0, 2, 1) @ w

        tr_img, te_img = _LazyRows(tr_img, gray), _LazyRows(te_img, gray)
        input_shape = (1, 32, 32)
    else:
        input_shape = (3, 32, 32)
    return _labelled_split("cifar10", tr_img, tr_lab, te_img, te_lab, input_shape, 255.0,
                           classes, n_train, n_test, seed, standardize, target,
                           {"source": os.path.abspath(directory), "grayscale": bool(grayscale),
                            "luminance": list(LUMINANCE) if grayscale else None}, one_hot)


class _LazyRows:
    """Rows of ``images`` passed through ``fn`` only when indexed (grayscale of the drawn rows)."""

    def __init__(self, images, fn):
        self.images, self.fn = images, fn

    def __getitem__(self, rows):
        return self.fn(self.images[rows])


# ====================================================================== teacher
def teacher(kind="cnn", input_shape=(1, 8, 8), mask=(2, 2), stride=None, activation="erf",
            N_teacher=1, n_train=500, n_test=500, noise=0.0, seed=0, padding="valid") -> Dataset:
    """Gaussian inputs labelled by a random teacher network (regression targets).

    x ~ N(0, 𝟙_{N0}); y = f_T(x) + noise·ξ, ξ ~ N(0, 1), where f_T is a network of
    :mod:`kren.forward` (THEORY §1) of kind ``"fc"``, ``"cnn"`` or ``"lcn"`` with N_teacher units or
    channels, weights drawn from the prior with λ0 = λ1 = 1 (FC ignores mask/stride/padding).
    The seed is split into independent streams for the teacher weights, the training inputs,
    the test inputs, the training noise and the test noise, so e.g. changing ``noise`` or
    ``n_test`` leaves the teacher and the training inputs unchanged, and a smaller n_train gives a prefix of a larger one.
    The teacher's weights are returned in ``aux`` (``aux["W"]``, ``aux["v"]``).
    """
    from .architecture import Architecture
    from .forward import forward, init_weights

    if kind not in ("fc", "cnn", "lcn"):
        raise ValueError(f"teacher kind must be 'fc', 'cnn' or 'lcn', got {kind!r}")
    N_teacher = _check_count(N_teacher, "N_teacher")
    n_train = _check_count(n_train, "n_train")
    n_test = _check_count(n_test, "n_test")
    seed = _check_seed(seed)
    try:
        noise = float(noise)
    except (TypeError, ValueError):
        raise ValueError(f"noise must be a non-negative number, got {noise!r}") from None
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a non-negative finite number, got {noise}")
    if kind == "fc":
        arch = Architecture("fc", input_shape=input_shape, activation=activation)
    else:
        arch = Architecture(kind, input_shape=input_shape, mask=mask, stride=stride,
                            padding=padding, activation=activation)
    s_w, s_tr, s_te, s_ntr, s_nte = np.random.SeedSequence(seed).spawn(5)
    params = init_weights(arch, N_teacher, np.random.default_rng(s_w))
    N0 = arch.N0
    X_train = np.random.default_rng(s_tr).standard_normal((n_train, N0))
    X_test = np.random.default_rng(s_te).standard_normal((n_test, N0))
    xi_train = np.random.default_rng(s_ntr).standard_normal(n_train)
    xi_test = np.random.default_rng(s_nte).standard_normal(n_test)
    y_train = forward(arch, X_train, params) + noise * xi_train
    y_test = forward(arch, X_test, params) + noise * xi_test
    geom = arch.geometry
    meta = {"name": "teacher", "kind": kind, "activation": activation, "N_teacher": N_teacher,
            "mask": list(geom.mask) if kind != "fc" else None,
            "stride": list(geom.stride) if kind != "fc" else None,
            "padding": padding if kind != "fc" else None,
            "noise": noise, "seed": seed, "standardize": False, "classes": None,
            "n_train": n_train, "n_test": n_test, "input_shape": list(arch.input_shape),
            "lambda0": 1.0, "lambda1": 1.0}
    return Dataset(X_train, y_train, X_test, y_test, arch.input_shape, meta,
                   aux={"W": params["W"], "v": params["v"]})
