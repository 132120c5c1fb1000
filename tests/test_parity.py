"""PyTorch and TensorFlow equal the NumPy reference, every function, every option.

float64 inputs must agree to 1e-10; float32 inputs to 1e-5 (relative) of the
float64 reference on the same values, and keep their dtype.
"""
import zlib

import numpy as np
import pytest

from xentlib._docs import FUNCTIONS

# (case id, function, inputs(rng), options): the function table's parity rows.
CASES = [(case_id, fn, build, options) for fn, f in FUNCTIONS.items() for case_id, build, options in f.parity]


def _split(arrays, options):
    """The positional arrays, and the keywords with the inputs' dict of array keywords added."""
    arrays = list(arrays)
    if arrays and isinstance(arrays[-1], dict):
        options = {**options, **arrays.pop()}
    return arrays, options


def _run(backend, fn, arrays, kwargs, dtype):
    """Arrays of ``dtype`` in the backend; a 0-d array keyword as a Python float."""
    arrays, kwargs = _split(arrays, kwargs)
    cast = lambda a: a.astype(dtype) if a.dtype.kind == "f" else a
    arrays = [backend.asarray(cast(np.asarray(a))) for a in arrays]
    kwargs = {k: (backend.asarray(cast(v)) if v.ndim else float(v)) if isinstance(v, np.ndarray) else v
              for k, v in kwargs.items()}
    return backend.numpy(getattr(backend.xl, fn)(*arrays, **kwargs))


@pytest.mark.parametrize("case_id, fn, build, kwargs", CASES, ids=[c[0] for c in CASES])
def test_float64_matches_reference(backend, reference, case_id, fn, build, kwargs):
    arrays = build(np.random.default_rng(zlib.crc32(case_id.encode())))
    expected = _run(reference, fn, arrays, kwargs, np.float64)
    got = _run(backend, fn, arrays, kwargs, np.float64)
    assert got.dtype == np.float64
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def _float32_values(a):
    """``a`` rounded to float32 values (kept in float64); a dict of arrays entry by entry."""
    if isinstance(a, dict):
        return {k: _float32_values(v) for k, v in a.items()}
    return a.astype(np.float32).astype(np.float64) if a.dtype.kind == "f" else a


@pytest.mark.parametrize("case_id, fn, build, kwargs", CASES, ids=[c[0] for c in CASES])
def test_float32_within_1e5_of_the_float64_reference(backend, reference, case_id, fn, build, kwargs):
    arrays = [_float32_values(a) for a in build(np.random.default_rng(zlib.crc32(case_id.encode())))]
    expected = _run(reference, fn, arrays, kwargs, np.float64)
    got = _run(backend, fn, arrays, kwargs, np.float32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_every_function_of_the_table_has_parity_cases():
    """Save those with a suite of their own (``tested_in``)."""
    assert {c[1] for c in CASES} == {fn for fn, f in FUNCTIONS.items() if not f.tested_in}
