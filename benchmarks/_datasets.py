"""Data sets of the benchmarks: Fashion-MNIST and a large sparse problem.

Not part of the installed package: the benchmark scripts, run from the
repository root (``python benchmarks/<name>.py``), import this module as
``_datasets``. Elsewhere, get Fashion-MNIST with
``sklearn.datasets.fetch_openml("Fashion-MNIST", version=1)``.

Two entry points are provided:

* :func:`load_fashion_mnist` reads the Fashion-MNIST images, either from the
  IDX files shipped by the Debian package ``dataset-fashion-mnist`` (or any
  directory holding the same four files) or, as a fallback, from OpenML.
* :func:`make_sparse_classification` draws a large, sparse binary
  classification problem from a logistic model, whose best regularization
  strength is neither tiny nor huge: a good test bed for hyperparameter search.
"""

import functools
import gzip
import importlib.util
import numbers
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

__all__ = ["load_fashion_mnist", "make_sparse_classification"]


# ---------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------

#: Environment variable naming a directory that holds the Fashion-MNIST files.
FASHION_MNIST_ENV = "SKBILEVEL_FASHION_MNIST"

#: Where the Debian package ``dataset-fashion-mnist`` installs the files.
FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_FASHION_MNIST_N_ROWS = {"train": 60000, "test": 10000}
_FASHION_MNIST_SHAPE = (28, 28)
_N_CLASSES = 10

#: Human readable names of the ten Fashion-MNIST classes, by label.
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_MISSING_DATA_HELP = (
    "To get the data, do one of the following:\n"
    "  * install the Debian package: sudo apt-get install dataset-fashion-mnist "
    f"(files go to {FASHION_MNIST_DEFAULT_DIR});\n"
    f"  * set the environment variable {FASHION_MNIST_ENV} (or pass data_home) "
    "to a directory holding train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
    "t10k-labels-idx1-ubyte.gz (from "
    "https://github.com/zalandoresearch/fashion-mnist);\n"
    "  * or allow the download from OpenML with download_if_missing=True."
)


def _parse_idx(data, *, source="<bytes>"):
    """Parse the content of an (uncompressed) IDX file.

    Parameters
    ----------
    data : bytes
        Raw file content: a 4-byte magic number ``0x00 0x00 <type> <ndim>``,
        ``ndim`` big-endian uint32 dimensions, then the big-endian values.
    source : str, default="<bytes>"
        Name used in error messages.

    Returns
    -------
    array : ndarray
        Array of shape given by the header, in native byte order.

    Raises
    ------
    ValueError
        If the header is malformed or the payload size does not match it.
    """
    if len(data) < 4:
        raise ValueError(f"{source}: too short to be an IDX file ({len(data)} bytes)")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(
            f"{source}: bad IDX magic number {data[:4].hex()} (first two bytes "
            "must be zero); is this an IDX file?"
        )
    if type_code not in _IDX_DTYPES:
        raise ValueError(
            f"{source}: unknown IDX data type code 0x{type_code:02x} in magic "
            f"number {data[:4].hex()}"
        )
    if ndim == 0:
        raise ValueError(f"{source}: IDX header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{source}: truncated IDX header ({len(data)} bytes, "
            f"expected at least {header_size})"
        )
    shape = tuple(
        int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)
    )
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_size
    if actual != expected:
        raise ValueError(
            f"{source}: IDX payload has {actual} bytes but the header "
            f"(shape {shape}, dtype {dtype}) requires {expected}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    # Convert to native byte order (a no-op copy-free view for single bytes).
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_idx_file(path):
    """Read an IDX file, gzip-compressed if its name ends with ``.gz``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (gzip.BadGzipFile, EOFError) as exc:
        raise ValueError(f"{path}: corrupt gzip file ({exc})") from exc
    return _parse_idx(data, source=str(path))


def _file_key(path):
    """Cache key of a file: resolved path plus size and modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _load_idx_pair_cached(images_key, labels_key):
    """Parse and check one (images, labels) pair of Fashion-MNIST IDX files.

    The arguments are :func:`_file_key` tuples, so that a file rewritten on
    disk is parsed again. The returned arrays are read-only: they are shared
    by all callers through the cache.
    """
    images_path, labels_path = images_key[0], labels_key[0]
    images = _read_idx_file(images_path)
    labels = _read_idx_file(labels_path)
    if images.ndim != 3 or images.shape[1:] != _FASHION_MNIST_SHAPE:
        raise ValueError(
            f"{images_path}: expected images of shape (n, 28, 28), got {images.shape}"
        )
    if images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected unsigned byte pixels, got {images.dtype}"
        )
    if labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected a 1-d label array, got shape {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} "
            f"holds {labels.shape[0]} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= _N_CLASSES):
        raise ValueError(
            f"{labels_path}: labels must lie in 0..9, got range "
            f"[{labels.min()}, {labels.max()}]"
        )
    images = images.reshape(images.shape[0], -1)
    labels = labels.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _find_idx_files(directory, subset):
    """Return the (images, labels) paths of ``subset`` in ``directory``, or None.

    Both the gzip-compressed names and their uncompressed variants (without
    ``.gz``) are accepted; the compressed ones win.
    """
    directory = Path(directory).expanduser()
    found = []
    for name in _FASHION_MNIST_FILES[subset]:
        for candidate in (directory / name, directory / name[: -len(".gz")]):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return tuple(found)


def _candidate_dirs(data_home):
    """Directories searched for the IDX files, in order."""
    if data_home is not None:
        return [Path(data_home)]
    dirs = []
    env = os.environ.get(FASHION_MNIST_ENV)
    if env:
        dirs.append(Path(env))
    dirs.append(Path(FASHION_MNIST_DEFAULT_DIR))
    return dirs


@functools.lru_cache(maxsize=2)
def _fetch_openml_cached(data_home):
    """Download (or read from the OpenML disk cache) Fashion-MNIST.

    Returns read-only ``uint8`` images of shape (70000, 784) and ``int64``
    labels; the first 60000 rows are the training set, the last 10000 the
    test set.
    """
    from sklearn import datasets as sk_datasets

    parser = "auto" if importlib.util.find_spec("pandas") is not None else "liac-arff"
    X, y = sk_datasets.fetch_openml(
        "Fashion-MNIST",
        version=1,
        data_home=data_home,
        as_frame=False,
        return_X_y=True,
        parser=parser,
    )
    if sp.issparse(X):
        X = X.toarray()
    X = np.asarray(X)
    y = np.asarray(y)
    n_total = sum(_FASHION_MNIST_N_ROWS.values())
    if X.shape != (n_total, 784) or y.shape != (n_total,):
        raise ValueError(
            f"unexpected Fashion-MNIST shapes from OpenML: X {X.shape}, y "
            f"{y.shape}; expected ({n_total}, 784) and ({n_total},)"
        )
    if X.min() < 0 or X.max() > 255:
        raise ValueError("unexpected pixel values from OpenML (outside 0..255)")
    images = X.astype(np.uint8)
    labels = y.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _validate_classes(classes):
    """Return ``classes`` as a sorted int64 array of unique labels, or None."""
    if classes is None:
        return None
    if isinstance(classes, numbers.Integral) and not isinstance(classes, bool):
        classes = (classes,)
    try:
        values = list(classes)
    except TypeError:
        raise ValueError(
            f"classes must be None or a sequence of integers in 0..9, got {classes!r}"
        ) from None
    if not values:
        raise ValueError("classes must not be empty; use None to keep all classes")
    for c in values:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Integral):
            raise ValueError(f"classes must be integers in 0..9, got {c!r}")
        if not 0 <= c < _N_CLASSES:
            raise ValueError(f"classes must be integers in 0..9, got {c!r}")
    return np.unique(np.asarray(values, dtype=np.int64))


def load_fashion_mnist(
    *,
    subset="train",
    classes=None,
    data_home=None,
    dtype=np.float64,
    download_if_missing=True,
):
    """Load the Fashion-MNIST images as flat, [0, 1]-scaled feature vectors.

    Fashion-MNIST (Xiao et al., 2017) holds 70000 grayscale 28x28 images of
    clothing items in 10 classes: 60000 for training and 10000 for testing.

    The data are looked for, in order:

    1. in ``data_home`` if given, otherwise in the directory named by the
       environment variable ``SKBILEVEL_FASHION_MNIST`` (if set), then in
       ``/usr/share/datasets/fashion-mnist/`` (Debian package
       ``dataset-fashion-mnist``). A directory is used if it holds the two
       IDX files of the requested subset (``train-images-idx3-ubyte.gz`` and
       ``train-labels-idx1-ubyte.gz``, or ``t10k-images-idx3-ubyte.gz`` and
       ``t10k-labels-idx1-ubyte.gz``; uncompressed copies without ``.gz``
       are accepted too);
    2. otherwise, if ``download_if_missing``, on OpenML through
       :func:`sklearn.datasets.fetch_openml` (dataset ``"Fashion-MNIST"``,
       version 1, cached on disk under ``data_home`` or scikit-learn's default
       data home); its first 60000 rows are the training set and its last
       10000 rows the test set.

    Parsed files are cached in memory (per file and subset), so repeated calls
    only pay for the conversion to ``dtype``. Each call returns new, writable
    arrays: modifying them does not affect later calls.

    Parameters
    ----------
    subset : {"train", "test"}, default="train"
        Which split to load: 60000 training or 10000 test images.
    classes : sequence of int or None, default=None
        Keep only the samples whose label is in ``classes`` (integers in
        0..9). Labels keep their original values: ``classes=(0, 6)`` gives a
        binary T-shirt/top (0) versus Shirt (6) problem with ``y`` in
        ``{0, 6}``. ``None`` keeps the ten classes.
    data_home : str or path-like, default=None
        Directory holding the IDX files. When given, it is the only local
        directory searched and it is also the OpenML download cache.
    dtype : floating dtype, default=np.float64
        Data type of ``X``.
    download_if_missing : bool, default=True
        If the files are not found locally, download them from OpenML instead
        of raising an error.

    Returns
    -------
    X : ndarray of shape (n_samples, 784)
        Pixel intensities divided by 255, so in [0, 1], one image per row
        (row-major 28x28).
    y : ndarray of shape (n_samples,), dtype int64
        Class labels in 0..9: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress,
        4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot (see
        ``FASHION_MNIST_CLASS_NAMES``).

    Raises
    ------
    ValueError
        If ``subset``, ``classes`` or ``dtype`` is invalid, or if a data file
        is malformed.
    OSError
        If the files are not found locally and ``download_if_missing`` is
        False; the message explains how to get them.

    Examples
    --------
    >>> from _datasets import load_fashion_mnist
    >>> X, y = load_fashion_mnist(subset="test", classes=(0, 6))  # doctest: +SKIP
    >>> X.shape, sorted(set(y))  # doctest: +SKIP
    ((2000, 784), [0, 6])
    """
    if not isinstance(subset, str) or subset not in _FASHION_MNIST_FILES:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    classes = _validate_classes(classes)
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"invalid dtype {dtype!r}: {exc}") from exc
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating point type, got {dtype}")

    searched = _candidate_dirs(data_home)
    paths = None
    for directory in searched:
        paths = _find_idx_files(directory, subset)
        if paths is not None:
            break

    if paths is not None:
        images, labels = _load_idx_pair_cached(*(_file_key(p) for p in paths))
    elif download_if_missing:
        home = None if data_home is None else str(Path(data_home).expanduser())
        all_images, all_labels = _fetch_openml_cached(home)
        n_train = _FASHION_MNIST_N_ROWS["train"]
        rows = slice(0, n_train) if subset == "train" else slice(n_train, None)
        images, labels = all_images[rows], all_labels[rows]
    else:
        names = " and ".join(_FASHION_MNIST_FILES[subset])
        where = ", ".join(str(d) for d in searched)
        raise OSError(
            f"Fashion-MNIST {subset} files ({names}) not found in: {where}; "
            f"download_if_missing=False.\n{_MISSING_DATA_HELP}"
        )

    if classes is not None:
        mask = np.isin(labels, classes)
        images = images[mask]  # fancy indexing: already a copy
        y = labels[mask]
    else:
        y = labels.copy()
    X = images.astype(dtype)  # always a new, writable array
    X /= 255
    return X, y


def _clear_fashion_mnist_cache():
    """Drop the in-memory Fashion-MNIST cache (mainly for tests)."""
    _load_idx_pair_cached.cache_clear()
    _fetch_openml_cached.cache_clear()


# ---------------------------------------------------------------------------
# Synthetic sparse classification
# ---------------------------------------------------------------------------

# Standard deviation of the noiseless logits X @ coef (before division by
# ``noise``). With noise=1, about 80% of the labels agree with the sign of the
# logit, so that the classes overlap and regularization matters.
_LOGIT_SCALE = 3.0


def _as_generator(random_state):
    """Turn a scikit-learn style ``random_state`` into a numpy Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    raise ValueError(
        "random_state must be None, an int, a numpy RandomState or Generator, "
        f"got {random_state!r}"
    )


def _check_int(value, name, low, high=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def _sparse_pattern(n_samples, n_features, density, rng):
    """Draw a random CSR sparsity pattern with about ``density`` per entry.

    Returns ``indptr`` and ``indices`` (sorted within rows, no duplicates).
    Each row gets a Binomial(n_features, density) number of distinct,
    uniformly drawn columns.
    """
    if density > 0.1:
        # Nearly dense: a boolean mask is no bigger than the output itself.
        mask = rng.random((n_samples, n_features)) < density
        counts = mask.sum(axis=1)
        indices = np.nonzero(mask)[1]
        indptr = np.zeros(n_samples + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, indices

    counts = rng.binomial(n_features, density, size=n_samples)
    rows = np.repeat(np.arange(n_samples, dtype=np.int64), counts)
    # Encode (row, column) as row * n_features + column: sorting the keys
    # sorts by row then column, i.e. gives CSR order directly.
    keys = rows * n_features + rng.integers(0, n_features, size=rows.size)
    keys.sort()
    accepted = np.empty(0, dtype=np.int64)
    while keys.size:
        # ``keys`` is sorted; drop repeats within it and collisions with the
        # already accepted keys, then redraw the columns of the dropped ones.
        dup = np.zeros(keys.size, dtype=bool)
        dup[1:] = keys[1:] == keys[:-1]
        if accepted.size:
            pos = np.searchsorted(accepted, keys)
            pos_clipped = np.minimum(pos, accepted.size - 1)
            dup |= accepted[pos_clipped] == keys
        # Merging two sorted runs with a stable sort is linear (timsort).
        accepted = np.sort(np.concatenate([accepted, keys[~dup]]), kind="stable")
        redraw_rows = keys[dup] // n_features
        keys = redraw_rows * n_features + rng.integers(
            0, n_features, size=redraw_rows.size
        )
        keys.sort()
    indptr = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, accepted % n_features


def make_sparse_classification(
    n_samples=50000,
    n_features=20000,
    *,
    density=0.002,
    n_informative=None,
    noise=1.0,
    random_state=None,
    return_coef=False,
):
    """Generate a large sparse binary classification problem.

    Each row of ``X`` has a Binomial(``n_features``, ``density``) number of
    nonzero entries (about ``density * n_features``) at distinct, uniformly
    random columns, with standard normal values. Labels follow a logistic
    model::

        P(y = 1 | x) = expit(x @ coef / noise)

    where ``coef`` has ``n_informative`` nonzero, Gaussian entries at random
    positions, scaled so that the noiseless logits ``x @ coef`` have a
    standard deviation of 3 (in expectation over rows). With the default
    ``noise=1`` about 20% of the labels disagree with the sign of the logit,
    so the classes are not separable and, on the default 50000 x 20000
    problem, :class:`~sklearn.linear_model.LogisticRegression` reaches its
    best cross-validated log-loss at an intermediate ``C`` (neither the
    smallest nor the largest of ``np.logspace(-4, 4)``). There is no
    intercept: the classes are balanced on average.

    Generation is vectorized; the default problem takes well under a second.

    Parameters
    ----------
    n_samples : int, default=50000
        Number of rows.
    n_features : int, default=20000
        Number of columns.
    density : float, default=0.002
        Expected fraction of nonzero entries, in (0, 1].
    n_informative : int or None, default=None
        Number of nonzero entries of the true coefficient vector, in
        ``[0, n_features]``. ``None`` means ``max(1, n_features // 10)``.
        With 0 the labels are pure coin flips.
    noise : float, default=1.0
        Label noise level (>= 0): the logits are divided by ``noise``. Larger
        values give noisier labels; 0 gives the noiseless labels
        ``x @ coef > 0``.
    random_state : int, RandomState, Generator or None, default=None
        Seed or random generator, for reproducible output.
    return_coef : bool, default=False
        Also return the true coefficient vector.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), float64
        Design matrix, with sorted column indices and no duplicates.
    y : ndarray of shape (n_samples,), dtype int64
        Labels in {0, 1}.
    coef : ndarray of shape (n_features,)
        True coefficients (only if ``return_coef``).

    Raises
    ------
    ValueError
        If a parameter is out of range.

    Examples
    --------
    >>> from _datasets import make_sparse_classification
    >>> X, y = make_sparse_classification(1000, 500, density=0.01, random_state=0)
    >>> X.shape, X.format, sorted(set(y.tolist()))
    ((1000, 500), 'csr', [0, 1])
    """
    n_samples = _check_int(n_samples, "n_samples", 1)
    n_features = _check_int(n_features, "n_features", 1)
    if n_informative is None:
        n_informative = max(1, n_features // 10)
    n_informative = _check_int(n_informative, "n_informative", 0, n_features)
    if not isinstance(density, numbers.Real) or not 0 < density <= 1:
        raise ValueError(f"density must be a number in (0, 1], got {density!r}")
    if not isinstance(noise, numbers.Real) or not (noise >= 0 and np.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    density = float(density)
    rng = _as_generator(random_state)

    indptr, indices = _sparse_pattern(n_samples, n_features, density, rng)
    data = rng.standard_normal(indices.size)
    index_dtype = np.int32 if max(indices.size, n_features) < 2**31 else np.int64
    X = sp.csr_matrix(
        (data, indices.astype(index_dtype), indptr.astype(index_dtype)),
        shape=(n_samples, n_features),
    )
    X.has_sorted_indices = True

    coef = np.zeros(n_features)
    if n_informative:
        support = rng.choice(n_features, size=n_informative, replace=False)
        w = rng.standard_normal(n_informative)
        # E[(x @ coef)^2] = density * ||coef||^2 for standard normal entries.
        coef[support] = w * (_LOGIT_SCALE / np.sqrt(density) / np.linalg.norm(w))
    logits = X @ coef
    if noise > 0:
        y = (rng.random(n_samples) < expit(logits / noise)).astype(np.int64)
    else:
        y = (logits > 0).astype(np.int64)
    if return_coef:
        return X, y, coef
    return X, y
