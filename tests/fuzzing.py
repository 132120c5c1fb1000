"""Shared strategies, oracle helpers and the example-count profile of the fuzz tests.

Adversarial properties: every backend against an independent float64 oracle, at scale.

Each property draws wide inputs (shapes with empty and single axes, float16, bfloat16,
float32, float64 and mixed dtypes, magnitudes from denormal to the dtype's maximum,
exact zeros) and checks the three backends in one example against a float64 oracle
written here from SciPy, so that a backend cannot agree with the reference by sharing its
bug, and against the frameworks' built-ins where those are exact. Graph and compile
variants (``tf.function`` with unknown shapes, ``torch.func.grad``) are properties of
their own.

Profiles (``HYPOTHESIS_PROFILE`` chooses one; otherwise ``CI=true`` chooses ``ci``):

- ``dev`` (the default): 100 random examples per property in every run; a failure prints
  its minimal example and a ``@reproduce_failure`` blob, and ``HYPOTHESIS_SEED=N`` (or
  ``pytest --hypothesis-seed=N``) repeats a whole run;
- ``ci``: 1,000 examples per property (``FUZZ_CI_EXAMPLES=N`` sets another count),
  derandomised: what ``make test`` runs under ``CI=true``, about 12 CPU minutes for the 25
  properties (28 tests with a plain one run once per backend). ``make fuzz-deep`` runs this
  profile at 10,000 examples per property; all 28 tests passed it at one commit (a59a255): 4,660 s of
  wall time on this project's 2-core machine, 123 CPU minutes, from 110 s (bfloat16 logits)
  to 850 s (sparse CE from logits) per property. In the one property profiled (sparse CE
  from logits, 2,000 examples), TensorFlow took 56% of the time: an eager loss call costs
  about 16 ms, and tracing the hot-path graphs of repeated signatures took a quarter of the
  whole. A 10,000-example run (about 78 minutes of wall time) is longer than the 45 minutes
  the project's CI allows all of ``make test`` with ``CI=true``, so ``make test`` keeps
  1,000. A run
  repeats example for example
  (``FUZZ_TRACE=path`` logs a digest of each example's choices and results to compare):
  the seed is a digest of the test's source (editing a property's body changes its
  examples; editing the helpers or the library does not), only the first failure is
  reported (the search for more stops on wall-clock time), and every property starts
  with TensorFlow's hot-path state empty (``fresh_tf_hot_paths``);
- ``deep``: 10,000 random examples per property, for a search of its own (the same cost;
  ``make fuzz-deep`` runs the derandomised ``ci`` profile instead).
"""
from __future__ import annotations

import functools
import hashlib
import os

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.extra import numpy as hnp
from hypothesis.internal.reflection import function_digest
from scipy import special

from conftest import Backend

# Health checks off: the strategies draw large arrays and filter non-finite 16-bit casts on
# purpose, and an example runs three frameworks (too_slow, data_too_large, filter_too_much).
_COMMON = dict(deadline=None, derandomize=False, print_blob=True, suppress_health_check=list(HealthCheck))
# CI reports the first failure only: once a bug is found, Hypothesis otherwise goes on looking
# for others for up to 10 s of wall-clock time, so which further failures a run reported (and
# how far each was shrunk) depended on the machine's load, even derandomised.
settings.register_profile("ci", max_examples=int(os.environ.get("FUZZ_CI_EXAMPLES", 1_000)), database=None,
                          **dict(_COMMON, derandomize=True, report_multiple_bugs=False))
settings.register_profile("deep", max_examples=10_000, database=None, **_COMMON)
settings.register_profile("dev", max_examples=100, **_COMMON)  # failures replayed from .hypothesis/
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI", "").lower() == "true" else "dev")
_SEED = os.environ.get("HYPOTHESIS_SEED")


def fuzz(test):
    """The profile's settings, and ``HYPOTHESIS_SEED``'s seed where one is given."""
    test = settings(settings.get_profile(PROFILE))(test)
    if _TRACE:
        _trace_examples(test)
    return seed(int(_SEED))(test) if _SEED else test


def _hot_path_caches():
    """The call counts and graphs of xentlib.tensorflow's ``compiled_when_hot`` losses."""
    import xentlib.tensorflow as xl
    for name in getattr(xl, "__all__", dir(xl)):
        fn = getattr(xl, name)
        while callable(fn):
            code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None) or ()
            if code is not None and {"seen", "graphs"} <= set(code.co_freevars):
                yield from (cell.cell_contents for var, cell in zip(code.co_freevars, cells)
                            if var in ("seen", "graphs"))
                break
            fn = getattr(fn, "__wrapped__", None)


@pytest.fixture(autouse=True)
def fresh_tf_hot_paths():
    """Every property starts with TensorFlow's hot-path state empty (import this fixture into a
    test module to use it).

    From the fourth call with the same signature a TF loss runs as a graph, so whether an
    example took the eager or the graph path depended on every TF call made before it in the
    process: under ``make test`` (xdist hands files to workers as they come free) on which other
    test files that worker had run, and a failure seen in one run went missing in the next.
    """
    for cache in _hot_path_caches():
        cache.clear()


# FUZZ_TRACE=path: each example appends "test digest-of-its-choices digest-of-its-results" to
# path, so that two runs can be compared example by example (cmp the files).
_TRACE = os.environ.get("FUZZ_TRACE")
_RESULTS = []  # digests of the current example's backend results (see ``call``)


def _trace_examples(test):
    inner = test.hypothesis.inner_test

    @functools.wraps(inner)
    def traced(*args, **kwargs):
        _RESULTS.clear()
        outcome = "passed"
        try:
            return inner(*args, **kwargs)
        except BaseException as error:
            outcome = type(error).__name__
            raise
        finally:
            choices = repr(current_build_context().data.choices).encode()
            with open(_TRACE, "a") as log:
                log.write(f"{inner.__name__} {hashlib.sha1(choices).hexdigest()[:16]} "
                          f"{hashlib.sha1(' '.join(_RESULTS).encode()).hexdigest()[:16]} {outcome}\n")

    # the derandomised seed is a digest of the test's source: the same through the wrapper
    assert function_digest(traced) == function_digest(inner)
    test.hypothesis.inner_test = traced


BACKENDS = [Backend(name) for name in ("numpy", "torch", "tensorflow")]
# The arrays are tiny: a second intra-op thread only spin-waits, and its spinning was 90% of
# torch's CPU time per example (log_softmax 3.8 ms -> 0.03 ms, torch.func.grad 19 -> 1.7 ms).
torch.set_num_threads(1)


def _one_tensorflow_thread():
    """The same for TensorFlow, whose pools only hand the work back and forth (two properties:
    31.4 s wall, 18.6 s CPU with its default threads; 21.7 s wall, 20.7 s CPU with one)."""
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TF already initialised by an earlier test module: its pools stay
        pass


_one_tensorflow_thread()
BF16 = ml_dtypes.bfloat16
FLOATS = {"float16": np.float16, "bfloat16": BF16, "float32": np.float32, "float64": np.float64}
SIXTEEN = ("float16", "bfloat16")


def backends_for(*dtype_names):
    """The backends that take these dtypes (NumPy has no bfloat16)."""
    return BACKENDS[1:] if "bfloat16" in dtype_names else BACKENDS


def to_backend(backend, a):
    """``a`` (any FLOATS dtype, or int) as a tensor of ``backend`` with the same dtype."""
    a = np.asarray(a)
    if backend.name == "torch" and a.dtype == BF16:
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return backend.asarray(a)


def call(backend, name, *arrays, **kwargs):
    """``backend.xl.<name>`` on NumPy arrays (bfloat16 included), read back as NumPy."""
    kwargs = {k: (to_backend(backend, v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    result = backend.numpy(getattr(backend.xl, name)(*(to_backend(backend, a) for a in arrays), **kwargs))
    if _TRACE:
        _RESULTS.append(f"{backend.name}:{name}:{result.dtype}:{result.shape}:{result.tobytes().hex()}")
    return result


def each_backend(name, *arrays, dtypes=(), skip=(), **kwargs):
    """(backend name, result) of every backend that takes these dtypes, but those in ``skip``
    (a known failure's region: see the test's ``known`` and tests/test_fuzz.py)."""
    for backend in backends_for(*dtypes, *(np.asarray(a).dtype.name for a in arrays)):
        if backend.name not in skip:
            yield backend.name, call(backend, name, *arrays, **kwargs)


def subnormal(a):
    """Whether ``a`` holds a subnormal (non-zero, below its dtype's smallest normal)."""
    a = np.asarray(a)
    tiny = float(ml_dtypes.finfo(a.dtype).tiny)
    values = np.abs(a.astype(np.float64))
    return bool(((values > 0) & (values < tiny)).any())


def finfo(dtype_name):
    return ml_dtypes.finfo(FLOATS[dtype_name])


def compute_eps(dtype_name):
    """The epsilon of the dtype a loss is computed in: 16-bit inputs are computed in float32."""
    return float(np.finfo(np.float32 if dtype_name in SIXTEEN else FLOATS[dtype_name]).eps)


_eps = compute_eps  # the old name


def loss_max(dtype_name):
    """The largest finite loss: losses of 16-bit inputs are float32."""
    return float(np.finfo(np.float32 if dtype_name in SIXTEEN else FLOATS[dtype_name]).max)


def smoothing_taken(epsilon, dtype_name, shares=1):
    """The label smoothing a loss takes, the documented convention: a positive epsilon is never
    dropped, and is at least ``shares`` (the class count K; binary: 2) times the compute dtype's
    smallest normal (float32's for 16-bit inputs), so that each share epsilon / K is at least
    that normal. The oracle smooths with it: (1 - e) y + e / K."""
    if not epsilon:
        return 0.0
    return max(epsilon, shares * float(np.finfo(compute_dtype_of(dtype_name)).tiny))


def compute_dtype_of(dtype_name):
    """The dtype a loss of ``dtype_name`` inputs is computed and returned in."""
    return np.float32 if dtype_name in SIXTEEN else FLOATS[dtype_name]


def rounded(expected, dtype):
    """The float64 ``expected`` as the nearest value of ``dtype`` (beyond its max: inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(expected, np.float64).astype(dtype).astype(np.float64)


def scales(dtype_name):
    """Magnitudes from the smallest subnormal to the dtype's maximum."""
    info = finfo(dtype_name)
    return st.sampled_from([float(info.smallest_subnormal), float(info.tiny), 1e-3, 1.0, 30.0, 1e4,
                            float(info.max) / 2, float(info.max)])


def scaled(unit, scale, dtype_name):
    """``unit * scale`` in ``dtype_name``, clipped to its range (no inf from rounding)."""
    big = float(finfo(dtype_name).max)
    with np.errstate(over="ignore"):
        return np.clip(np.asarray(unit, np.float64) * scale, -big, big).astype(FLOATS[dtype_name])


@st.composite
def logits_batches(draw, min_classes=1, max_classes=6, min_rows=0, max_rows=5, any_leading_shape=False,
                   dtypes=tuple(FLOATS)):
    """(N, K) logits of one dtype, magnitudes from denormal to the dtype's maximum.

    ``any_leading_shape``: (..., K) with 0 to 2 leading axes, some of length 0
    (a 0-d item is one row of K logits).
    """
    dtype_name = draw(st.sampled_from(sorted(dtypes)))
    scale = draw(scales(dtype_name))
    if any_leading_shape:
        leading = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    else:
        leading = (draw(st.integers(min_rows, max_rows)),)
    k = draw(st.integers(min_classes, max_classes))
    unit = draw(hnp.arrays(np.float64, (*leading, k), elements=st.floats(-1, 1)))
    return dtype_name, scaled(unit, scale, dtype_name)


def oracle_log_softmax(z):
    return special.log_softmax(np.asarray(z, np.float64), axis=-1)


def close(actual, expected, *, dtype_name, scale=1.0, what="", rounds_to=None, or_else=None):
    """|actual - expected| <= a few ulps of the compute dtype, relative to ``scale``, plus the
    rounding of the result to its dtype (``rounds_to``: a 16-bit result read back as float32).

    ``expected`` is exact (float64 or long double); where it passes the result dtype's maximum
    the result must be inf of its sign, and where it is inf, that inf (never NaN, never finite).
    ``or_else``: a second acceptable value (two conventions that are both right).
    """
    if or_else is not None:
        try:
            return close(actual, or_else, dtype_name=dtype_name, scale=scale, what=what, rounds_to=rounds_to)
        except AssertionError:
            pass
    actual = np.asarray(actual)
    out = finfo(rounds_to) if rounds_to else np.finfo(actual.dtype)
    out_eps, out_max = float(out.eps), float(out.max)
    actual = actual.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = np.asarray(expected, np.longdouble).astype(np.float64)  # beyond float64: inf
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    assert not np.isnan(expected).any(), f"{what}: the oracle gave NaN: {expected}"
    assert not np.isnan(actual).any(), f"{what}: NaN, expected {expected}"
    with np.errstate(over="ignore", invalid="ignore"):
        tol = (64 * compute_eps(dtype_name) * np.maximum(np.abs(expected), scale)
               + 2 * out_eps * np.abs(expected))
        same_sign = np.sign(actual) == np.sign(expected)
        overflowed = np.isinf(actual) & same_sign & (np.abs(expected) + tol >= out_max)
        ok = overflowed | (np.isfinite(expected) & (np.abs(actual - expected) <= tol))
    assert ok.all(), f"{what}: got {actual}, expected {expected} (tol {tol})"


def close_to_builtin(actual, builtin, **kwargs):
    """Equal to a framework's built-in where the built-in is finite (elsewhere xentlib is
    checked against the oracle alone: the built-ins give NaN or inf where the answer is finite)."""
    builtin = np.asarray(builtin, np.float64)
    finite = np.isfinite(builtin)
    if finite.any():
        close(np.asarray(actual, np.float64)[finite] if np.ndim(actual) else actual,
              builtin[finite] if np.ndim(builtin) else builtin, **kwargs)


PROBABILITY_ELEMENTS = ("zero", "subnormal", "tiny", "uniform")


@st.composite
def probability_vectors(draw, shape, dtype_name):
    """Rows summing to 1 in ``dtype_name``, with exact zeros, subnormals and tiny normals."""
    info = finfo(dtype_name)
    sub, tiny = float(info.smallest_subnormal), float(info.tiny)
    element = st.one_of(st.just(0.0), st.just(sub), st.just(tiny), st.floats(sub, tiny), st.floats(1e-3, 1.0))
    x = draw(hnp.arrays(np.float64, shape, elements=element))
    x[..., 0] = np.where(x.sum(axis=-1) > 0.5, x[..., 0], 1.0)  # a row of only tiny values: give it mass
    # Keep the subnormals and tiny values exactly; only the large entries absorb the normalisation.
    big = x >= 1e-3
    rest = np.where(big, 0.0, x).sum(axis=-1, keepdims=True)
    x = np.where(big, x / x.sum(axis=-1, where=big, keepdims=True) * (1 - rest), x)
    cast = x.astype(FLOATS[dtype_name])
    # Rounding to 16 bits moves the sum: the largest entry takes the difference back.
    largest = np.argmax(x, axis=-1)[..., None]
    residual = 1 - cast.astype(np.float64).sum(axis=-1, keepdims=True)
    np.put_along_axis(x, largest, np.take_along_axis(cast.astype(np.float64), largest, axis=-1) + residual,
                      axis=-1)
    return np.where(big, x, cast.astype(np.float64)).astype(FLOATS[dtype_name])


@st.composite
def distributions(draw, k_max=6, dtypes=tuple(FLOATS), any_leading_shape=False):
    """Two distributions over K classes (of one dtype) with exact zeros and subnormal entries."""
    dtype_name = draw(st.sampled_from(dtypes))
    k = draw(st.integers(1, k_max))
    leading = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3)) if any_leading_shape else ()
    p = draw(probability_vectors((*leading, k), dtype_name))
    q = draw(probability_vectors((*leading, k), dtype_name))
    return dtype_name, p, q


def entropy_terms(p, q):
    """-p log q elementwise in float64: 0 where p = 0, inf where p > 0 and q = 0."""
    p64, q64 = np.asarray(p, np.float64), np.asarray(q, np.float64)
    return -special.xlogy(p64, q64)


# ---- the oracles' arithmetic (long double) and option strategies shared by the loss properties ----

LD = np.longdouble  # the oracle's reductions: 64-bit mantissa, range to 1e4932 (no float64 overflow)
REDUCTION = st.sampled_from(["mean", "sum", "none"])
# Class and positive weights: 0, subnormal, tiny, ordinary, huge (to 1e300), mixed in one vector.
WEIGHT = st.sampled_from([0.0, 5e-324, 1e-300, 1e-30, 1e-3, 0.5, 1.0, 3.0, 1e4, 1e30, 1e300])
SMOOTHING = st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(0, 1)
F32 = np.finfo(np.float32)
# The backends a known failure's region skips (see each property's F-numbered comments).
TORCH_TF = ("torch", "tensorflow")
EVERY = ("numpy", "torch", "tensorflow")
loss_dtype = compute_dtype_of


def as_loss(x, dtype_name):
    """An exact item value as the loss dtype stores it (beyond its maximum: inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x, LD).astype(loss_dtype(dtype_name)).astype(LD)


def log_softmax_ld(z):
    z = np.asarray(z, np.float64).astype(LD)
    m = z.max(axis=-1, keepdims=True)
    shifted = z - m
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def times(w, x):
    """w * x with 0 * inf = 0 (a term of weight 0 adds nothing)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.asarray(w) == 0, LD(0), np.asarray(w, LD) * x)


def reduce_items(items, reduction, denominator=None):
    items = np.asarray(items, LD)
    if reduction == "none":
        return items
    total = items.sum()
    if reduction == "sum":
        return total
    count = items.size if denominator is None else denominator
    return total / count if count else LD(0)


def refused(weight, dtype_name):
    """Whether the backends refuse ``weight`` (class_weight, pos_weight) by name: beyond float32's
    maximum where the loss is computed in float32 (16-bit and float32 predictions)."""
    return weight is not None and dtype_name != "float64" and bool((np.asarray(weight) > F32.max).any())


def assert_refused(argument, fn, *arrays, dtype_name, **kwargs):
    """Every backend that takes ``dtype_name`` raises the ValueError naming ``argument``."""
    for backend in backends_for(dtype_name):
        with pytest.raises(ValueError, match=f"^{argument} must be non-negative, finite and at most"):
            call(backend, fn, *arrays, **kwargs)
