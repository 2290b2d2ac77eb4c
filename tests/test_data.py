"""Offline data sets (kren.data): exact file formats written to tmp_path and read back."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from kren.architecture import Architecture
from kren.data import (EVEN_ODD, LUMINANCE, Dataset, load_cifar10, load_digits,
                       load_fashion_mnist, load_mnist, read_idx, standardize_splits, teacher)
from kren.forward import forward

MNIST_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# ====================================================================== file writers
def write_idx(path, array, gz=False):
    """idx file: 0x00, 0x00, type 0x08 (ubyte), ndim, big-endian uint32 sizes, then the bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.tobytes()
    if gz:
        path = str(path) + ".gz"
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        with open(path, "wb") as fh:
            fh.write(data)
    return path


def make_images(count, rng, size=28, first=0):
    """uint8 images whose pixel (0, 0) is the sample's id (first + k), so rows can be traced."""
    img = rng.integers(0, 256, size=(count, size, size), dtype=np.uint8)
    img[:, 0, 0] = np.arange(first, first + count)
    return img


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """A small MNIST-format directory: 60 train images (labels 0..9, 6 each), 30 test images."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("mnist")
    tr_img, te_img = make_images(60, rng), make_images(30, rng, first=100)
    tr_lab = np.tile(np.arange(10), 6).astype(np.uint8)
    te_lab = np.tile(np.arange(10), 3).astype(np.uint8)
    write_idx(d / MNIST_NAMES[0], tr_img, gz=True)       # mixed: gzipped and plain
    write_idx(d / MNIST_NAMES[1], tr_lab, gz=False)
    write_idx(d / MNIST_NAMES[2], te_img, gz=False)
    write_idx(d / MNIST_NAMES[3], te_lab, gz=True)
    return d, tr_img, tr_lab, te_img, te_lab


def _trace(X, images, first=0, scale=255.0):
    """Indices of the written images that the loaded rows (unstandardized) came from."""
    ids = np.rint(X[:, 0] * scale).astype(int) - first
    np.testing.assert_allclose(X, images[ids].reshape(len(ids), -1) / scale, rtol=0, atol=1e-15)
    return ids


# ====================================================================== idx
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip_and_magic(tmp_path, gz):
    rng = np.random.default_rng(1)
    img = make_images(7, rng, size=5)
    lab = rng.integers(0, 10, 7).astype(np.uint8)
    p_img = write_idx(tmp_path / "img", img, gz)
    p_lab = write_idx(tmp_path / "lab", lab, gz)
    raw = gzip.open(p_img).read() if gz else open(p_img, "rb").read()
    assert raw[:4] == bytes.fromhex("00000803")              # images magic 0x00000803
    raw = gzip.open(p_lab).read() if gz else open(p_lab, "rb").read()
    assert raw[:4] == bytes.fromhex("00000801")              # labels magic 0x00000801
    np.testing.assert_array_equal(read_idx(p_img), img)
    np.testing.assert_array_equal(read_idx(p_lab), lab)


def test_read_idx_rejects_malformed(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 5) + b"abc")   # announces 5, holds 3
    with pytest.raises(ValueError, match=r"announces shape \(5,\)"):
        read_idx(short)


# ====================================================================== MNIST loaders
@pytest.mark.parametrize("loader,name", [(load_mnist, "mnist"),
                                         (load_fashion_mnist, "fashion-mnist")])
def test_mnist_raw_arrays_equal_written(mnist_dir, loader, name):
    d, tr_img, tr_lab, te_img, te_lab = mnist_dir
    ds = loader(d, classes=None, n_train=60, n_test=None, seed=3, standardize=False)
    assert ds.input_shape == (1, 28, 28) and ds.X_train.dtype == np.float64
    assert ds.meta["name"] == name and ds.meta["classes"] is None
    ids = _trace(ds.X_train, tr_img)
    assert sorted(ids) == list(range(60))                     # every training image once
    np.testing.assert_array_equal(ds.y_train, tr_lab[ids].astype(float))
    ids_te = _trace(ds.X_test, te_img, first=100)
    assert sorted(ids_te) == list(range(30))
    np.testing.assert_array_equal(ds.y_test, te_lab[ids_te].astype(float))


def test_mnist_label_mapping(mnist_dir):
    d, tr_img, tr_lab, te_img, te_lab = mnist_dir
    ds = load_mnist(d, classes=(3, 7), n_train=12, n_test=6, seed=0, standardize=False)
    ids = _trace(ds.X_train, tr_img)
    assert set(tr_lab[ids]) == {3, 7}
    np.testing.assert_array_equal(ds.y_train, np.where(tr_lab[ids] == 3, 1.0, -1.0))
    ids = _trace(ds.X_test, te_img, first=100)
    np.testing.assert_array_equal(ds.y_test, np.where(te_lab[ids] == 3, 1.0, -1.0))
    # groups, "even-odd" and a custom target
    ds = load_mnist(d, classes="even-odd", n_train=40, n_test=20, seed=1, standardize=False,
                    target=(1.0, 0.0))
    ids = _trace(ds.X_train, tr_img)
    np.testing.assert_array_equal(ds.y_train, (tr_lab[ids] % 2 == 0).astype(float))
    assert ds.meta["classes"] == [list(g) for g in EVEN_ODD] and ds.meta["target"] == [1.0, 0.0]
    ds2 = load_mnist(d, classes=((0, 1, 2), (9,)), n_train=24, n_test=12, seed=1,
                     standardize=False)
    ids = _trace(ds2.X_train, tr_img)
    assert set(tr_lab[ids]) == {0, 1, 2, 9}                   # all 24 selected samples drawn
    np.testing.assert_array_equal(ds2.y_train, np.where(tr_lab[ids] <= 2, 1.0, -1.0))


def test_standardization_uses_train_statistics(mnist_dir):
    d = mnist_dir[0]
    raw = load_mnist(d, classes=None, n_train=40, n_test=20, seed=5, standardize=False)
    ds = load_mnist(d, classes=None, n_train=40, n_test=20, seed=5, standardize=True)
    np.testing.assert_array_equal(ds.y_train, raw.y_train)    # same draw
    mean, std = raw.X_train.mean(0), raw.X_train.std(0)
    constant = std == 0
    assert constant.sum() == 0 and ds.meta["n_constant_features"] == 0
    np.testing.assert_allclose(ds.X_train.mean(0), 0.0, atol=1e-13)
    np.testing.assert_allclose(ds.X_train.std(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ds.X_test, (raw.X_test - mean) / std, rtol=1e-12, atol=1e-12)


def test_standardize_constant_feature_is_only_centered():
    Xtr = np.array([[1.0, 0.3, 2.0], [3.0, 0.3, 2.0], [5.0, 0.3, 2.0]])
    Xte = np.array([[0.0, 1.3, 2.5]])
    A, B, info = standardize_splits(Xtr, Xte)
    np.testing.assert_array_equal(info["constant"], [False, True, True])
    np.testing.assert_allclose(A[:, 0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-14)
    np.testing.assert_allclose(A[:, 1:], 0.0, atol=1e-15)
    np.testing.assert_allclose(B[0], [-3.0 / np.sqrt(8.0 / 3.0), 1.0, 0.5], rtol=1e-13)


def test_mnist_determinism_and_nesting(mnist_dir):
    d = mnist_dir[0]
    a = load_mnist(d, classes="even-odd", n_train=30, n_test=10, seed=7)
    b = load_mnist(d, classes="even-odd", n_train=30, n_test=10, seed=7)
    c = load_mnist(d, classes="even-odd", n_train=30, n_test=10, seed=8)
    assert a.fingerprint() == b.fingerprint() and a.fingerprint() != c.fingerprint()
    small = load_mnist(d, classes="even-odd", n_train=10, n_test=10, seed=7, standardize=False)
    big = load_mnist(d, classes="even-odd", n_train=30, n_test=10, seed=7, standardize=False)
    np.testing.assert_array_equal(small.X_train, big.X_train[:10])   # nested training sets
    np.testing.assert_array_equal(small.X_test, big.X_test)          # test independent of n_train


def test_mnist_raw_subdirectory(tmp_path, mnist_dir):
    """torchvision layout: the idx files in <path>/raw."""
    src = mnist_dir[0]
    (tmp_path / "raw").mkdir()
    for f in os.listdir(src):
        (tmp_path / "raw" / f).write_bytes((src / f).read_bytes())
    a = load_mnist(tmp_path, n_train=5, n_test=3)
    b = load_mnist(src, n_train=5, n_test=3)
    assert a.fingerprint() == b.fingerprint()


def test_mnist_errors(tmp_path, mnist_dir):
    d = mnist_dir[0]
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:
        load_mnist(missing)
    assert str(missing) in str(e.value) and all(nm in str(e.value) for nm in MNIST_NAMES)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / MNIST_NAMES[0]).write_bytes((d / (MNIST_NAMES[0] + ".gz")).read_bytes())
    with pytest.raises(FileNotFoundError) as e:
        load_fashion_mnist(partial)
    msg = str(e.value)
    assert "train-labels-idx1-ubyte" in msg and str(partial) in msg
    assert all(nm in msg for nm in MNIST_NAMES)
    with pytest.raises(ValueError, match=r"class\(es\) \[11\] not present in the training labels"):
        load_mnist(d, classes=(0, 11))
    with pytest.raises(ValueError, match="n_train=13 is larger than the 12 samples"):
        load_mnist(d, classes=(0, 1), n_train=13, n_test=2)
    with pytest.raises(ValueError, match="n_test=7 is larger than the 6 samples"):
        load_mnist(d, classes=(0, 1), n_train=2, n_test=7)
    for bad in (0, -3, 2.5, True, "5"):
        with pytest.raises(ValueError, match="n_train must be"):
            load_mnist(d, n_train=bad, n_test=2)
    with pytest.raises(ValueError, match="n_test must be"):
        load_mnist(d, n_train=2, n_test=0)
    with pytest.raises(ValueError, match="seed must be"):
        load_mnist(d, n_train=2, n_test=2, seed=-1)
    with pytest.raises(ValueError, match="exactly two"):
        load_mnist(d, classes=(0, 1, 2))
    with pytest.raises(ValueError, match="appear in both groups"):
        load_mnist(d, classes=((0, 1), (1, 2)))
    with pytest.raises(ValueError, match="unknown classes"):
        load_mnist(d, classes="odd-even-ish")
    with pytest.raises(ValueError, match="target must be a pair"):
        load_mnist(d, target=(1.0,))
    # images and labels that disagree in count
    bad = tmp_path / "bad"
    bad.mkdir()
    rng = np.random.default_rng(0)
    write_idx(bad / MNIST_NAMES[0], make_images(4, rng))
    write_idx(bad / MNIST_NAMES[1], np.zeros(5, np.uint8))
    write_idx(bad / MNIST_NAMES[2], make_images(2, rng))
    write_idx(bad / MNIST_NAMES[3], np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="4 images but 5 labels"):
        load_mnist(bad, classes=None, n_train=1, n_test=1)
    # labels file with the images magic
    write_idx(bad / MNIST_NAMES[1], np.zeros((4, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="0x00000801"):
        load_mnist(bad, classes=None, n_train=1, n_test=1)


# ====================================================================== CIFAR-10
@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """5 training batches of 4 images (labels cycling 0..9), a test batch of 6, in a
    cifar-10-batches-py subdirectory. Pixel 0 of the red plane is the sample id."""
    rng = np.random.default_rng(2)
    root = tmp_path_factory.mktemp("cifar")
    d = root / "cifar-10-batches-py"
    d.mkdir()
    data = rng.integers(0, 256, size=(26, 3072), dtype=np.uint8)
    data[:, 0] = np.arange(26)
    labels = [k % 10 for k in range(26)]
    for b in range(5):
        with open(d / f"data_batch_{b + 1}", "wb") as fh:
            pickle.dump({b"batch_label": b"training batch", b"data": data[4 * b:4 * b + 4],
                         b"labels": labels[4 * b:4 * b + 4]}, fh)
    with open(d / "test_batch", "wb") as fh:
        pickle.dump({b"data": data[20:], b"labels": labels[20:]}, fh)
    return root, d, data, np.array(labels)


def test_cifar_rgb_and_grayscale(cifar_dir):
    root, d, data, labels = cifar_dir
    ds = load_cifar10(root, classes=None, n_train=20, n_test=None, seed=0, standardize=False)
    assert ds.input_shape == (3, 32, 32) and ds.X_train.shape == (20, 3072)
    ids = np.rint(ds.X_train[:, 0] * 255).astype(int)
    assert sorted(ids) == list(range(20))
    # channels-first flattening: the b"data" row is already R plane, G plane, B plane
    np.testing.assert_allclose(ds.X_train, data[ids] / 255.0, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(ds.y_train, labels[ids])
    ids_te = np.rint(ds.X_test[:, 0] * 255).astype(int)
    assert sorted(ids_te) == list(range(20, 26))
    g = load_cifar10(d, grayscale=True, classes=None, n_train=20, n_test=None, seed=0,
                     standardize=False)
    assert g.input_shape == (1, 32, 32) and g.X_train.shape == (20, 1024)
    rgb = data[ids].reshape(20, 3, 1024) / 255.0
    expected = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert LUMINANCE == (0.299, 0.587, 0.114)
    np.testing.assert_allclose(g.X_train, expected, rtol=1e-14, atol=1e-15)
    # two classes
    two = load_cifar10(d, classes=(3, 5), n_train=4, n_test=1, seed=0, standardize=False)
    ids = np.rint(two.X_train[:, 0] * 255).astype(int)
    np.testing.assert_array_equal(two.y_train, np.where(labels[ids] == 3, 1.0, -1.0))
    assert set(labels[ids]) == {3, 5}


def test_cifar_errors(tmp_path, cifar_dir):
    d = cifar_dir[1]
    with pytest.raises(FileNotFoundError) as e:
        load_cifar10(tmp_path / "none")
    assert "data_batch_1" in str(e.value) and "test_batch" in str(e.value)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "data_batch_1").write_bytes((d / "data_batch_1").read_bytes())
    with pytest.raises(FileNotFoundError) as e:
        load_cifar10(partial)
    msg = str(e.value)
    assert str(partial) in msg and "data_batch_5" in msg and "test_batch" in msg
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in os.listdir(d):
        (bad / f).write_bytes((d / f).read_bytes())
    with open(bad / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match=r"\(count, 3072\)"):
        load_cifar10(bad)
    (bad / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python pickle"):
        load_cifar10(bad)
    with pytest.raises(ValueError, match="n_test=3 is larger than the 2 samples"):
        load_cifar10(d, classes=(0, 1), n_train=2, n_test=3)


# ====================================================================== digits
def test_digits_mapping_split_and_standardization():
    from sklearn.datasets import load_digits as sk
    bunch = sk()
    raw = load_digits(classes=(0, 1), n_train=200, n_test=100, seed=4, standardize=False)
    assert raw.input_shape == (1, 8, 8) and raw.X_train.shape == (200, 64)
    # trace every row back to the bundled set (its 1797 images are all distinct)
    lookup = {row.tobytes(): k for k, row in enumerate(bunch.data / 16.0)}
    tr = np.array([lookup[r.tobytes()] for r in raw.X_train])
    te = np.array([lookup[r.tobytes()] for r in raw.X_test])
    assert not set(tr) & set(te)                                      # disjoint
    np.testing.assert_array_equal(raw.y_train, np.where(bunch.target[tr] == 0, 1.0, -1.0))
    np.testing.assert_array_equal(raw.y_test, np.where(bunch.target[te] == 0, 1.0, -1.0))
    assert set(bunch.target[tr]) == {0, 1}
    # standardized: train mean 0, std 1 on varying pixels; the constant ones only centered
    ds = load_digits(classes=(0, 1), n_train=200, n_test=100, seed=4)
    std = raw.X_train.std(0)
    varying = std > 0
    assert ds.meta["n_constant_features"] == int((~varying).sum()) > 0
    np.testing.assert_allclose(ds.X_train.mean(0), 0.0, atol=1e-13)
    np.testing.assert_allclose(ds.X_train.std(0)[varying], 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        ds.X_test, (raw.X_test - raw.X_train.mean(0)) / np.where(varying, std, 1.0),
        rtol=1e-12, atol=1e-12)
    # defaults: 360 zeros and ones, 200 train and the other 160 for testing
    dflt = load_digits()
    assert (dflt.n_train, dflt.n_test, dflt.meta["n_available"]) == (200, 160, 360)
    # even-odd and raw labels
    eo = load_digits(classes="even-odd", n_train=500, n_test=500, seed=0, standardize=False)
    tr = np.array([lookup[r.tobytes()] for r in eo.X_train])
    np.testing.assert_array_equal(eo.y_train, np.where(bunch.target[tr] % 2 == 0, 1.0, -1.0))
    rl = load_digits(classes=None, n_train=50, n_test=50, standardize=False)
    tr = np.array([lookup[r.tobytes()] for r in rl.X_train])
    np.testing.assert_array_equal(rl.y_train, bunch.target[tr].astype(float))


def test_digits_determinism_and_errors():
    a, b = load_digits(seed=1), load_digits(seed=1)
    assert a.fingerprint() == b.fingerprint() and a.fingerprint() != load_digits(seed=2).fingerprint()
    with pytest.raises(ValueError, match=r"n_train \+ n_test = 300 \+ 100 is larger than the 360"):
        load_digits(n_train=300, n_test=100)
    with pytest.raises(ValueError, match="larger than the 360"):
        load_digits(n_train=360)          # nothing would be left for testing
    with pytest.raises(ValueError, match=r"class\(es\) \[10\] not present"):
        load_digits(classes=(1, 10))
    with pytest.raises(ValueError, match="standardize must be True or False"):
        load_digits(standardize="yes")


# ====================================================================== teacher
@pytest.mark.parametrize("kind", ["fc", "cnn", "lcn"])
def test_teacher_labels_are_the_teacher_network(kind):
    ds = teacher(kind=kind, input_shape=(1, 6, 6), mask=(3, 3), stride=(1, 1),
                 activation="relu", N_teacher=3, n_train=50, n_test=20, seed=3)
    kw = {} if kind == "fc" else {"mask": (3, 3), "stride": (1, 1)}
    arch = Architecture(kind, input_shape=(1, 6, 6), activation="relu", **kw)
    np.testing.assert_allclose(ds.y_train, forward(arch, ds.X_train, ds.aux), rtol=1e-14)
    np.testing.assert_allclose(ds.y_test, forward(arch, ds.X_test, ds.aux), rtol=1e-14)
    assert ds.meta["kind"] == kind and ds.meta["N_teacher"] == 3 and ds.input_shape == (1, 6, 6)


def test_teacher_inputs_noise_and_seeds():
    ds = teacher(kind="cnn", n_train=2000, n_test=10, seed=0)
    # x ~ N(0, 1): 128000 entries; standard errors of mean and variance are 0.0028 and 0.004,
    # tolerance 5 standard errors
    assert abs(ds.X_train.mean()) < 5 * 0.0028
    assert abs(ds.X_train.var() - 1.0) < 5 * 0.004
    noisy = teacher(kind="cnn", n_train=2000, n_test=10, seed=0, noise=0.3)
    np.testing.assert_array_equal(noisy.X_train, ds.X_train)             # same inputs, teacher
    np.testing.assert_array_equal(noisy.aux["W"], ds.aux["W"])
    xi = (noisy.y_train - ds.y_train) / 0.3
    # 2000 N(0,1) noise draws: std of the sample std is 1/√(2·2000) = 0.016, 5 SE → 0.08
    assert abs(xi.std() - 1.0) < 0.08 and abs(xi.mean()) < 5 / np.sqrt(2000)
    small = teacher(kind="cnn", n_train=100, n_test=10, seed=0)
    np.testing.assert_array_equal(small.X_train, ds.X_train[:100])      # nested
    np.testing.assert_array_equal(small.y_test, ds.y_test)
    assert teacher(seed=1).fingerprint() != teacher(seed=0).fingerprint()
    with pytest.raises(ValueError, match="teacher kind"):
        teacher(kind="rnn")
    with pytest.raises(ValueError, match="noise must be"):
        teacher(noise=-1.0)
    with pytest.raises(ValueError, match="N_teacher must be"):
        teacher(N_teacher=0)


# ====================================================================== Dataset
def test_dataset_dict_roundtrip_and_fingerprint():
    ds = teacher(kind="fc", input_shape=(1, 3, 3), n_train=5, n_test=4, seed=9)
    d = ds.to_dict()
    assert d["fingerprint"] == ds.fingerprint() and len(d["fingerprint"]) == 64
    back = Dataset.from_dict(d)
    assert back.fingerprint() == ds.fingerprint() and back.meta == ds.meta
    d["X_test"] = d["X_test"].copy()
    d["X_test"][0, 0] += 1e-12                     # one changed number changes the hash
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        Dataset.from_dict(d)
    with pytest.raises(ValueError, match=r"X_train must have shape \(P, 9\)"):
        Dataset(np.zeros((2, 8)), np.zeros(2), np.zeros((1, 9)), np.zeros(1), (1, 3, 3))
    with pytest.raises(ValueError, match=r"y_test must have shape \(1,\)"):
        Dataset(np.zeros((2, 9)), np.zeros(2), np.zeros((1, 9)), np.zeros(2), (1, 3, 3))
