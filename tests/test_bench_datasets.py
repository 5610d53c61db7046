"""Tests for the benchmarks' data sets, ``benchmarks/_datasets.py``."""

import gzip
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

# benchmarks/ is no package: its scripts import the module as ``_datasets``.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _datasets as datasets  # noqa: E402
from _datasets import (  # noqa: E402
    FASHION_MNIST_DEFAULT_DIR,
    FASHION_MNIST_ENV,
    load_fashion_mnist,
    make_sparse_classification,
)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

_TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def _idx_bytes(array):
    array = np.asarray(array)
    header = bytes([0, 0, _TYPE_CODES[array.dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_idx_gz(path, array):
    with gzip.open(path, "wb") as f:
        f.write(_idx_bytes(array))


def _make_fake_split(directory, subset, n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    rng.shuffle(labels)
    prefix = "train" if subset == "train" else "t10k"
    _write_idx_gz(Path(directory) / f"{prefix}-images-idx3-ubyte.gz", images)
    _write_idx_gz(Path(directory) / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return images, labels


@pytest.fixture
def fake_home(tmp_path):
    """A directory with small fake train (23 rows) and test (11 rows) files."""
    train = _make_fake_split(tmp_path, "train", 23, seed=0)
    test = _make_fake_split(tmp_path, "test", 11, seed=1)
    return tmp_path, {"train": train, "test": test}


@pytest.fixture(autouse=True)
def _clear_openml_cache():
    datasets._fetch_openml_cached.cache_clear()
    yield
    datasets._fetch_openml_cached.cache_clear()


_DEBIAN_FILES = [
    Path(FASHION_MNIST_DEFAULT_DIR) / name
    for pair in datasets._FASHION_MNIST_FILES.values()
    for name in pair
]
needs_debian_files = pytest.mark.skipif(
    not all(f.is_file() for f in _DEBIAN_FILES),
    reason=f"Fashion-MNIST IDX files not installed in {FASHION_MNIST_DEFAULT_DIR} "
    "(apt-get install dataset-fashion-mnist)",
)


# ---------------------------------------------------------------------------
# IDX parsing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
)
def test_parse_idx_round_trip_all_types(dtype):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    parsed = datasets._parse_idx(_idx_bytes(array))
    assert parsed.shape == (3, 4, 5)
    assert parsed.dtype == np.dtype(dtype)
    assert parsed.dtype.isnative
    np.testing.assert_array_equal(parsed, array)


def test_parse_idx_is_big_endian():
    data = bytes([0, 0, 0x0C, 1]) + (2).to_bytes(4, "big")
    data += (1).to_bytes(4, "big") + (256).to_bytes(4, "big")
    np.testing.assert_array_equal(datasets._parse_idx(data), [1, 256])


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + (0).to_bytes(4, "big"), "magic"),
        (b"\x00\x00\x07\x01" + (0).to_bytes(4, "big"), "type code"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x02" + (1).to_bytes(4, "big"), "truncated"),
        (b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02", "requires 3"),
        (b"\x00\x00\x08\x01" + (1).to_bytes(4, "big") + b"\x01\x02", "requires 1"),
    ],
)
def test_parse_idx_rejects_malformed(data, match):
    with pytest.raises(ValueError, match=match):
        datasets._parse_idx(data)


def test_load_round_trip_from_data_home(fake_home):
    home, splits = fake_home
    for subset, (images, labels) in splits.items():
        X, y = load_fashion_mnist(subset=subset, data_home=home)
        assert X.shape == (len(labels), 784)
        assert X.dtype == np.float64
        assert y.dtype == np.int64
        np.testing.assert_array_equal(X, images.reshape(len(images), -1) / 255)
        np.testing.assert_array_equal(y, labels)
        assert X.min() >= 0 and X.max() <= 1


def test_load_dtype(fake_home):
    home, splits = fake_home
    X, _ = load_fashion_mnist(data_home=home, dtype=np.float32)
    assert X.dtype == np.float32
    images = splits["train"][0]
    np.testing.assert_allclose(X, images.reshape(len(images), -1) / 255, rtol=1e-6)


def test_load_uncompressed_files(tmp_path):
    images = np.full((2, 28, 28), 255, dtype=np.uint8)
    labels = np.array([3, 4], dtype=np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(images))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    X, y = load_fashion_mnist(subset="test", data_home=tmp_path)
    np.testing.assert_array_equal(X, np.ones((2, 784)))
    np.testing.assert_array_equal(y, [3, 4])


def test_load_from_environment_variable(fake_home, monkeypatch):
    home, splits = fake_home
    monkeypatch.setenv(FASHION_MNIST_ENV, str(home))
    X, y = load_fashion_mnist(subset="test", download_if_missing=False)
    assert X.shape == (11, 784)
    np.testing.assert_array_equal(y, splits["test"][1])


def test_classes_filtering_keeps_original_labels(fake_home):
    home, splits = fake_home
    images, labels = splits["train"]
    X, y = load_fashion_mnist(data_home=home, classes=(6, 0))
    mask = (labels == 0) | (labels == 6)
    assert set(np.unique(y)) == {0, 6}
    np.testing.assert_array_equal(y, labels[mask])
    np.testing.assert_array_equal(X, images[mask].reshape(mask.sum(), -1) / 255)
    # A single int and numpy integers are accepted; duplicates are harmless.
    _, y3 = load_fashion_mnist(data_home=home, classes=3)
    assert set(y3) == {3}
    _, y3b = load_fashion_mnist(data_home=home, classes=[np.int64(3), 3])
    np.testing.assert_array_equal(y3, y3b)


def test_cache_is_used_and_not_corrupted(fake_home):
    home, splits = fake_home
    X1, y1 = load_fashion_mnist(data_home=home)
    hits = datasets._load_idx_pair_cached.cache_info().hits
    X1[:] = -1.0
    y1[:] = -1
    X2, y2 = load_fashion_mnist(data_home=home)
    assert datasets._load_idx_pair_cached.cache_info().hits == hits + 1
    assert X2.flags.writeable and y2.flags.writeable
    images, labels = splits["train"]
    np.testing.assert_array_equal(X2, images.reshape(len(images), -1) / 255)
    np.testing.assert_array_equal(y2, labels)


def test_cache_notices_rewritten_files(fake_home):
    home, _ = fake_home
    load_fashion_mnist(data_home=home)
    _, labels = _make_fake_split(home, "train", 5, seed=2)
    X, y = load_fashion_mnist(data_home=home)
    assert X.shape == (5, 784)
    np.testing.assert_array_equal(y, labels)


def test_inconsistent_files_raise(tmp_path):
    _write_idx_gz(
        tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8)
    )
    _write_idx_gz(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="3 images but .* 4 labels"):
        load_fashion_mnist(data_home=tmp_path)

    _write_idx_gz(
        tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 10], np.uint8)
    )
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        load_fashion_mnist(data_home=tmp_path)

    _write_idx_gz(
        tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 27, 28), np.uint8)
    )
    with pytest.raises(ValueError, match=r"\(n, 28, 28\)"):
        load_fashion_mnist(data_home=tmp_path)

    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="corrupt gzip"):
        load_fashion_mnist(data_home=tmp_path)


@pytest.mark.parametrize("subset", ["validation", "Train", None, 0])
def test_bad_subset(subset, fake_home):
    with pytest.raises(ValueError, match="subset must be 'train' or 'test'"):
        load_fashion_mnist(subset=subset, data_home=fake_home[0])


@pytest.mark.parametrize("classes", [(0, 10), (-1,), [], (0.5,), (True, 1), "06", 12])
def test_bad_classes(classes, fake_home):
    with pytest.raises(ValueError, match="classes"):
        load_fashion_mnist(classes=classes, data_home=fake_home[0])


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, "not a dtype"])
def test_bad_dtype(dtype, fake_home):
    with pytest.raises(ValueError, match="dtype"):
        load_fashion_mnist(dtype=dtype, data_home=fake_home[0])


def test_missing_files_without_download(tmp_path):
    with pytest.raises(OSError) as excinfo:
        load_fashion_mnist(data_home=tmp_path, download_if_missing=False)
    message = str(excinfo.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert FASHION_MNIST_ENV in message
    assert "download_if_missing=True" in message
    assert str(tmp_path) in message


def test_missing_one_file_counts_as_missing(fake_home):
    home, _ = fake_home
    (home / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(OSError, match="not found"):
        load_fashion_mnist(subset="test", data_home=home, download_if_missing=False)
    # The train split is still there.
    X, _ = load_fashion_mnist(subset="train", data_home=home, download_if_missing=False)
    assert X.shape == (23, 784)


def test_openml_fallback(tmp_path, monkeypatch):
    import sklearn.datasets

    rng = np.random.default_rng(0)
    pixels = np.zeros((70000, 784), dtype=np.uint8)
    pixels[:, 0] = rng.integers(0, 256, size=70000)
    target = np.array([str(i % 10) for i in range(70000)], dtype=object)
    calls = []

    def fake_fetch_openml(name, **kwargs):
        calls.append((name, kwargs))
        return pixels.astype(np.float64), target

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", fake_fetch_openml)
    X, y = load_fashion_mnist(subset="test", data_home=tmp_path, classes=(0, 6))
    assert len(calls) == 1
    name, kwargs = calls[0]
    assert name == "Fashion-MNIST"
    assert kwargs["version"] == 1 and kwargs["as_frame"] is False
    assert kwargs["data_home"] == str(tmp_path)
    test_labels = np.arange(60000, 70000) % 10
    mask = np.isin(test_labels, (0, 6))
    assert X.shape == (mask.sum(), 784)
    np.testing.assert_array_equal(y, test_labels[mask])
    np.testing.assert_array_equal(X[:, 0], pixels[60000:, 0][mask] / 255)

    X_train, _ = load_fashion_mnist(subset="train", data_home=tmp_path)
    assert X_train.shape == (60000, 784)
    assert len(calls) == 1  # served from the in-memory cache


@needs_debian_files
@pytest.mark.parametrize("subset, n_rows", [("train", 60000), ("test", 10000)])
def test_debian_files(subset, n_rows):
    X, y = load_fashion_mnist(
        subset=subset, data_home=FASHION_MNIST_DEFAULT_DIR, download_if_missing=False
    )
    assert X.shape == (n_rows, 784)
    assert y.shape == (n_rows,)
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), np.full(10, n_rows // 10))

    Xb, yb = load_fashion_mnist(
        subset=subset,
        classes=(0, 6),
        data_home=FASHION_MNIST_DEFAULT_DIR,
        download_if_missing=False,
    )
    assert Xb.shape == (n_rows // 5, 784)
    np.testing.assert_array_equal(np.unique(yb), [0, 6])
    np.testing.assert_array_equal(Xb, X[np.isin(y, (0, 6))])


# ---------------------------------------------------------------------------
# make_sparse_classification
# ---------------------------------------------------------------------------


def _check_csr(X):
    assert sp.issparse(X) and X.format == "csr"
    X.check_format(full_check=True)
    assert X.has_canonical_format  # sorted indices, no duplicates
    nnz = X.nnz
    X = X.copy()
    X.sum_duplicates()
    assert X.nnz == nnz


def test_sparse_classification_default_problem():
    X, y = make_sparse_classification(random_state=0)
    assert X.shape == (50000, 20000)
    assert X.dtype == np.float64
    _check_csr(X)
    assert X.nnz == pytest.approx(0.002 * 50000 * 20000, rel=0.1)
    assert y.shape == (50000,)
    assert set(np.unique(y)) == {0, 1}
    assert 0.3 < y.mean() < 0.7


@pytest.mark.parametrize(
    "n_samples, n_features, density",
    [(2000, 1000, 0.01), (300, 50, 0.08), (200, 40, 0.5), (50, 10, 1.0)],
)
def test_sparse_classification_shape_density(n_samples, n_features, density):
    X, y = make_sparse_classification(
        n_samples, n_features, density=density, random_state=0
    )
    assert X.shape == (n_samples, n_features)
    assert X.dtype == np.float64
    _check_csr(X)
    assert X.nnz / (n_samples * n_features) == pytest.approx(density, rel=0.1)
    assert y.dtype.kind == "i"
    assert set(np.unique(y)) == {0, 1}
    assert 0.3 < y.mean() < 0.7


def test_sparse_classification_reproducible():
    X1, y1 = make_sparse_classification(3000, 2000, density=0.01, random_state=42)
    X2, y2 = make_sparse_classification(3000, 2000, density=0.01, random_state=42)
    X3, y3 = make_sparse_classification(3000, 2000, density=0.01, random_state=43)
    assert (X1 != X2).nnz == 0
    np.testing.assert_array_equal(y1, y2)
    assert (X1 != X3).nnz > 0
    # numpy generators are accepted too.
    X4, y4 = make_sparse_classification(
        300, 200, density=0.05, random_state=np.random.RandomState(0)
    )
    X5, _ = make_sparse_classification(
        300, 200, density=0.05, random_state=np.random.default_rng(0)
    )
    assert X4.shape == X5.shape == (300, 200)


def test_sparse_classification_logistic_model():
    X, y, coef = make_sparse_classification(
        20000, 2000, density=0.01, n_informative=500, random_state=0, return_coef=True
    )
    assert np.count_nonzero(coef) == 500
    logits = X @ coef
    assert logits.std() == pytest.approx(3.0, rel=0.15)
    agreement = np.mean((logits > 0) == (y == 1))
    assert 0.7 < agreement < 0.9  # noisy, but informative labels

    # More noise: labels agree less with the logits; no noise: they agree fully.
    _, y_noisy = make_sparse_classification(
        20000, 2000, density=0.01, n_informative=500, noise=5.0, random_state=0
    )
    assert np.mean((logits > 0) == (y_noisy == 1)) < agreement - 0.1
    _, y_clean = make_sparse_classification(
        20000, 2000, density=0.01, n_informative=500, noise=0.0, random_state=0
    )
    np.testing.assert_array_equal(y_clean, (logits > 0).astype(int))


def test_sparse_classification_no_informative_features():
    X, y, coef = make_sparse_classification(
        2000, 100, density=0.05, n_informative=0, random_state=0, return_coef=True
    )
    assert not coef.any()
    assert 0.4 < y.mean() < 0.6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 10.5}, "n_samples"),
        ({"n_features": 0}, "n_features"),
        ({"density": 0.0}, "density"),
        ({"density": 1.5}, "density"),
        ({"density": "dense"}, "density"),
        ({"n_informative": 101}, "n_informative"),
        ({"n_informative": -1}, "n_informative"),
        ({"noise": -0.1}, "noise"),
        ({"noise": np.inf}, "noise"),
        ({"random_state": "seed"}, "random_state"),
    ],
)
def test_sparse_classification_bad_parameters(kwargs, match):
    params = {"n_samples": 10, "n_features": 100, "density": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_sparse_classification(**params)


@pytest.mark.slow
def test_sparse_classification_is_fast():
    make_sparse_classification(1000, 1000, random_state=0)  # warm up
    start = time.perf_counter()
    make_sparse_classification(50000, 20000, density=0.002, random_state=0)
    assert time.perf_counter() - start < 2.0
