"""The fuzz findings not yet fixed: each one's minimal reproducer, a strict xfail.

A reproducer passes once its fix lands, and the strict mark then fails the suite: remove the
entry with the fix (and the finding's region in the property that found it). The findings are
logged with their inputs in the fuzz properties' files (tests/test_fuzz*.py) by their F-number.
"""
from __future__ import annotations

import numpy as np
import pytest

from fuzzing import BACKENDS, call, fresh_tf_hot_paths  # noqa: F401 (an autouse fixture)

# ---- the known failures' minimal reproducers (strict: each passes once its fix lands) -----------

KNOWN_LOSS_FAILURES = [  # (id, backends, function, positional arrays, keywords, expected)
]


@pytest.mark.parametrize(
    "backend_name, fn, arrays, kwargs, expected",
    [pytest.param(b, fn, arrays, kwargs, expected, id=f"{case}-{b}",
                  marks=pytest.mark.xfail(strict=True, reason=f"{case} (fuzz finding, not yet fixed)"))
     for case, backends, fn, arrays, kwargs, expected in KNOWN_LOSS_FAILURES for b in backends])
def test_known_loss_failure(backend_name, fn, arrays, kwargs, expected):
    backend = next(b for b in BACKENDS if b.name == backend_name)
    for _ in range(4):  # TF runs a call seen three times as a tf.function: both paths checked
        got = call(backend, fn, *arrays, **kwargs)
    assert np.array_equal(got, np.asarray(expected, got.dtype)) if np.isinf(expected) or expected == 0 else \
        np.isclose(got, expected, rtol=1e-6), (backend_name, fn, got, expected)

