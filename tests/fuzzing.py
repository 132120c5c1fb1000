"""Shared strategies, oracle helpers and the example-count profile of the fuzz tests.

Adversarial properties: every backend against an independent float64 oracle, at scale.

Each property draws wide inputs (shapes with empty and single axes, 16/32/64-bit floats,
magnitudes up to the dtype's maximum, denormals, exact zeros) and checks the three
backends in one example against a float64 oracle written here from SciPy, so that a
backend cannot agree with the reference by sharing its bug. Graph and compile variants
(``tf.function`` with unknown shapes, ``torch.func.grad``) are properties of their own.

Examples per property: 10,000 when ``CI=true`` (the profile ``ci``), 150 otherwise
(``HYPOTHESIS_PROFILE`` chooses another registered profile).
"""
from __future__ import annotations

import os

import numpy as np
import torch
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special

from conftest import Backend

settings.register_profile("ci", max_examples=10_000, deadline=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("dev", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI", "").lower() == "true" else "dev")
fuzz = settings(settings.get_profile(PROFILE))

BACKENDS = [Backend(name) for name in ("numpy", "torch", "tensorflow")]
# The arrays are tiny: a second intra-op thread only spin-waits, and its spinning was 90% of
# torch's CPU time per example (log_softmax 3.8 ms -> 0.03 ms, torch.func.grad 19 -> 1.7 ms).
torch.set_num_threads(1)
FLOATS = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


def _eps(dtype_name):
    # Losses of 16-bit inputs are computed and returned in float32 (the documented rule).
    return float(np.finfo(np.float32 if dtype_name == "float16" else FLOATS[dtype_name]).eps)


@st.composite
def logits_batches(draw, min_classes=1, max_classes=6, min_rows=0, max_rows=5, any_leading_shape=False,
                   dtypes=tuple(FLOATS)):
    """(N, K) logits of one dtype, magnitudes from denormal to the dtype's maximum.

    ``any_leading_shape``: (..., K) with 0 to 2 leading axes, some of length 0
    (a 0-d item is one row of K logits).
    """
    dtype_name = draw(st.sampled_from(sorted(dtypes)))
    dtype = FLOATS[dtype_name]
    big = float(np.finfo(dtype).max) / 4  # /4: logsumexp's shift by the max stays finite
    scale = draw(st.sampled_from([1e-30, 1.0, 30.0, 1e4, big]))
    if any_leading_shape:
        leading = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    else:
        leading = (draw(st.integers(min_rows, max_rows)),)
    k = draw(st.integers(min_classes, max_classes))
    unit = draw(hnp.arrays(np.float64, (*leading, k), elements=st.floats(-1, 1)))
    z = (unit * min(scale, big)).astype(dtype)
    assume(np.isfinite(z).all())
    return dtype_name, z


def oracle_log_softmax(z):
    return special.log_softmax(z.astype(np.float64), axis=-1)


def close(actual, expected, *, dtype_name, scale=1.0, what=""):
    """|actual - expected| <= a few ulps of the compute dtype, relative to ``scale``."""
    out_eps = float(np.finfo(np.asarray(actual).dtype).eps)  # a 16-bit result rounds in 16 bits
    actual = np.asarray(actual, np.float64)
    assert not np.isnan(actual).any() or np.isnan(expected).any(), f"{what}: NaN, expected {expected}"
    tol = 64 * max(_eps(dtype_name), out_eps) * np.maximum(np.abs(expected), scale)
    both_inf = np.isinf(actual) & np.isinf(expected) & (np.sign(actual) == np.sign(expected))
    ok = both_inf | (np.abs(actual - expected) <= tol)
    assert ok.all(), f"{what}: got {actual}, expected {expected} (tol {tol})"


def each_backend(name, *arrays, **kwargs):
    for backend in BACKENDS:
        yield backend.name, backend.call(name, *arrays, **kwargs)


@st.composite
def distributions(draw, k_max=6):
    """Two distributions over K classes with exact zeros and denormal entries."""
    dtype_name = draw(st.sampled_from(["float32", "float64"]))
    dtype = FLOATS[dtype_name]
    k = draw(st.integers(1, k_max))
    tiny = float(np.finfo(dtype).smallest_subnormal)
    element = st.one_of(st.just(0.0), st.just(tiny), st.floats(1e-3, 1.0))
    p, q = (np.asarray(draw(st.lists(element, min_size=k, max_size=k)), np.float64)
            for _ in range(2))
    assume(p.sum() > 0 and q.sum() > 0)
    # Put the denormals back after normalising: they are the point of the test.
    p, q = (np.where(x == tiny, tiny, x / x.sum()).astype(dtype) for x in (p, q))
    assume(abs(float(p.astype(np.float64).sum()) - 1) < 1e-6
           and abs(float(q.astype(np.float64).sum()) - 1) < 1e-6)
    return dtype_name, p, q
