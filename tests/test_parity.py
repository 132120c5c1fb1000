"""PyTorch and TensorFlow equal the NumPy reference, every function, every option.

float64 inputs must agree to 1e-10; float32 inputs to 1e-5 (relative) of the
float64 reference on the same values, and keep their dtype.
"""
import zlib

import numpy as np
import pytest

from conftest import random_distribution


def _cases():
    """(id, function, input builder rng -> tuple of arrays, kwargs)."""
    dist = random_distribution
    logits = lambda rng, *s: rng.normal(0, 3, s)
    labels = lambda rng, c, *s: rng.integers(0, c, s)

    def padded_labels(rng, c, *s):
        y = labels(rng, c, *s)
        y[..., -2:] = -100  # padding at the end of every sequence
        return y

    def onehot(rng, c, n):
        return np.eye(c)[rng.integers(0, c, n)]

    def joint(rng, *s):
        p = rng.random(s)
        p[..., 0, 1] = 0.0
        return p / p.sum(axis=(-2, -1), keepdims=True)

    def binary_targets(rng, *s):
        return (rng.random(s) < 0.4).astype(float)

    yield "logsumexp", "logsumexp", lambda r: (logits(r, 4, 7),), {}
    yield "logsumexp-axis0-keepdims", "logsumexp", lambda r: (logits(r, 4, 7),), dict(axis=0, keepdims=True)
    yield "softmax", "softmax", lambda r: (logits(r, 3, 5),), {}
    yield "softmax-axis0", "softmax", lambda r: (logits(r, 3, 5),), dict(axis=0)
    yield "log_softmax", "log_softmax", lambda r: (logits(r, 2, 3, 6),), {}
    yield "log_softmax-axis1", "log_softmax", lambda r: (logits(r, 2, 3, 6),), dict(axis=1)
    yield "sigmoid", "sigmoid", lambda r: (logits(r, 20),), {}
    yield "log_sigmoid", "log_sigmoid", lambda r: (logits(r, 4, 5),), {}
    yield "entropy", "entropy", lambda r: (dist(r, (4, 6), zeros=True),), {}
    yield "entropy-bits", "entropy", lambda r: (dist(r, (4, 6)),), dict(base=2)
    yield "entropy-axis0", "entropy", lambda r: (dist(r, (6, 4)).T.copy(),), dict(axis=0, base=10)
    yield "cross_entropy", "cross_entropy", lambda r: (dist(r, (5, 4), zeros=True), dist(r, (5, 4))), {}
    yield "cross_entropy-bits", "cross_entropy", lambda r: (dist(r, (3,)), dist(r, (3,))), dict(base=2)
    yield "kl_divergence", "kl_divergence", lambda r: (dist(r, (5, 4), zeros=True), dist(r, (5, 4))), {}
    yield "kl_divergence-bits", "kl_divergence", lambda r: (dist(r, (2, 8)), dist(r, (2, 8))), dict(base=2)
    yield "joint_entropy", "joint_entropy", lambda r: (joint(r, 3, 4),), {}
    yield "joint_entropy-batch", "joint_entropy", lambda r: (joint(r, 2, 3, 4),), dict(base=2)
    yield "conditional_entropy", "conditional_entropy", lambda r: (joint(r, 3, 4),), {}
    yield "conditional_entropy-batch", "conditional_entropy", lambda r: (joint(r, 2, 4, 3),), dict(base=2)
    yield "mutual_information", "mutual_information", lambda r: (joint(r, 3, 4),), {}
    yield "mutual_information-batch", "mutual_information", lambda r: (joint(r, 2, 3, 3),), dict(base=2)
    yield "smooth_labels", "smooth_labels", lambda r: (onehot(r, 5, 4),), dict(epsilon=0.1)
    yield "smooth_labels-axis0", "smooth_labels", lambda r: (onehot(r, 5, 4).T.copy(),), dict(epsilon=0.3, axis=0)
    for red in ("mean", "sum", "none"):
        yield f"cce-probs-{red}", "categorical_cross_entropy", \
            lambda r: (onehot(r, 5, 6), dist(r, (6, 5))), dict(reduction=red)
        yield f"cce-logits-smooth-{red}", "categorical_cross_entropy", \
            lambda r: (dist(r, (6, 5)), logits(r, 6, 5)), dict(from_logits=True, label_smoothing=0.2, reduction=red)
        yield f"scce-logits-{red}", "sparse_categorical_cross_entropy", \
            lambda r: (labels(r, 7, 8), logits(r, 8, 7)), dict(from_logits=True, reduction=red)
        yield f"scce-all-options-{red}", "sparse_categorical_cross_entropy", \
            lambda r: (padded_labels(r, 6, 3, 5), logits(r, 3, 5, 6), r.random(6) + 0.5), \
            dict(from_logits=True, ignore_index=-100, label_smoothing=0.1, reduction=red)
        yield f"bce-probs-{red}", "binary_cross_entropy", \
            lambda r: (binary_targets(r, 5, 3), r.uniform(0.01, 0.99, (5, 3))), dict(reduction=red)
        yield f"bce-logits-all-options-{red}", "binary_cross_entropy", \
            lambda r: (binary_targets(r, 5, 3), logits(r, 5, 3)), \
            dict(from_logits=True, label_smoothing=0.1, pos_weight=np.array([0.5, 2.0, 3.0]), reduction=red)
        yield f"mse-{red}", "mean_squared_error", lambda r: (r.normal(size=(4, 3)), r.normal(size=(4, 3))), \
            dict(reduction=red)
        yield f"gaussian_nll-{red}", "gaussian_nll", lambda r: (r.normal(size=(4, 3)), r.normal(size=(4, 3))), \
            dict(variance=2.5, reduction=red)
    for red in ("mean", "none"):
        yield f"binary-focal-{red}", "binary_focal_cross_entropy", \
            lambda r: (r.random((5, 3)), logits(r, 5, 3)), \
            dict(from_logits=True, gamma=1.5, alpha=0.3, label_smoothing=0.1, reduction=red)
        yield f"binary-focal-probs-{red}", "binary_focal_cross_entropy", \
            lambda r: (binary_targets(r, 5, 3), r.uniform(0.01, 0.99, (5, 3))), dict(reduction=red)
        yield f"categorical-focal-{red}", "categorical_focal_cross_entropy", \
            lambda r: (dist(r, (6, 4)), logits(r, 6, 4)), \
            dict(from_logits=True, gamma=2.0, alpha=np.array([0.5, 1.0, 2.0, 0.25]),
                 label_smoothing=0.1, reduction=red)
        yield f"categorical-focal-probs-{red}", "categorical_focal_cross_entropy", \
            lambda r: (onehot(r, 4, 6), dist(r, (6, 4))), dict(alpha=0.25, reduction=red)
        yield f"brier-{red}", "brier_score", lambda r: (labels(r, 4, 9), dist(r, (9, 4))), \
            dict(reduction=red)
    yield "categorical-focal-axis0", "categorical_focal_cross_entropy", \
        lambda r: (onehot(r, 4, 6).T.copy(), logits(r, 4, 6)), dict(from_logits=True, axis=0)
    for binning in ("width", "mass"):
        for fn in ("expected_calibration_error", "maximum_calibration_error"):
            yield f"{fn}-{binning}", fn, lambda r: (labels(r, 3, 50), dist(r, (50, 3))), \
                dict(n_bins=5, binning=binning)
    yield "fit_temperature", "fit_temperature", lambda r: (logits(r, 40, 5), labels(r, 5, 40)), {}
    yield "cce-axis0", "categorical_cross_entropy", lambda r: (onehot(r, 4, 6).T.copy(), logits(r, 4, 6)), \
        dict(from_logits=True, axis=0)
    yield "cce-probs-zeros", "categorical_cross_entropy", lambda r: (onehot(r, 4, 6), dist(r, (6, 4), zeros=True)), \
        dict(reduction="none")
    yield "scce-probs-smooth", "sparse_categorical_cross_entropy", lambda r: (labels(r, 4, 6), dist(r, (6, 4))), \
        dict(label_smoothing=0.05)
    yield "scce-axis1-NCT", "sparse_categorical_cross_entropy", lambda r: (labels(r, 5, 2, 7), logits(r, 2, 5, 7)), \
        dict(from_logits=True, axis=1)
    yield "scce-weight-only", "sparse_categorical_cross_entropy", \
        lambda r: (labels(r, 4, 9), logits(r, 9, 4), r.random(4) + 0.1), dict(from_logits=True)
    yield "scce-probs-zero-weight-zero-prob", "sparse_categorical_cross_entropy", \
        lambda r: (np.array([0, 1]), np.array([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]]), np.array([1.0, 2.0, 0.0])), \
        dict(label_smoothing=0.1, reduction="none")
    yield "scce-probs-all-options", "sparse_categorical_cross_entropy", \
        lambda r: (padded_labels(r, 5, 3, 4), dist(r, (3, 4, 5)), r.random(5) + 0.5), \
        dict(ignore_index=-100, label_smoothing=0.1, reduction="none")
    yield "scce-ignore-0", "sparse_categorical_cross_entropy", lambda r: (labels(r, 4, 9), logits(r, 9, 4)), \
        dict(from_logits=True, ignore_index=0, reduction="none")
    yield "bce-scalar-pos-weight", "binary_cross_entropy", lambda r: (binary_targets(r, 8), logits(r, 8)), \
        dict(from_logits=True, pos_weight=np.array(3.0))
    yield "bce-probs-smooth", "binary_cross_entropy", lambda r: (r.random((3, 4)), r.uniform(0.01, 0.99, (3, 4))), \
        dict(label_smoothing=0.2, reduction="none")
    yield "bce-probs-pos-weight-smooth", "binary_cross_entropy", \
        lambda r: (binary_targets(r, 4, 3), r.uniform(0.01, 0.99, (4, 3))), \
        dict(pos_weight=np.array([0.5, 2.0, 3.0]), label_smoothing=0.1)
    yield "gaussian_nll-array-variance", "gaussian_nll", \
        lambda r: (r.normal(size=(4, 3)), r.normal(size=(4, 3)), r.uniform(0.5, 2, (4, 3))), dict(full=False)
    yield "perplexity", "perplexity", lambda r: (labels(r, 11, 3, 6), logits(r, 3, 6, 11)), {}
    yield "perplexity-ignore", "perplexity", lambda r: (padded_labels(r, 11, 3, 6), logits(r, 3, 6, 11)), \
        dict(ignore_index=-100)
    yield "perplexity-axis0", "perplexity", lambda r: (padded_labels(r, 11, 6, 3).T.copy(), logits(r, 11, 3, 6)), \
        dict(ignore_index=-100, axis=0)
    yield "softmax_ce_grad", "softmax_cross_entropy_grad", lambda r: (dist(r, (4, 5)), logits(r, 4, 5)), {}
    yield "softmax_ce_grad-axis0", "softmax_cross_entropy_grad", \
        lambda r: (dist(r, (4, 5)).T.copy(), logits(r, 5, 4)), dict(axis=0)
    yield "sigmoid_ce_grad", "sigmoid_cross_entropy_grad", lambda r: (r.random((4, 5)), logits(r, 4, 5)), {}


CASES = list(_cases())

# Arrays passed as keyword arguments rather than positionally.
_ARRAY_KWARGS = {"class_weight", "pos_weight", "variance"}


def _split(fn, arrays, kwargs):
    """Third positional array of sparse CE is class_weight, of gaussian_nll variance."""
    arrays = list(arrays)
    kwargs = dict(kwargs)
    if fn == "sparse_categorical_cross_entropy" and len(arrays) == 3:
        kwargs["class_weight"] = arrays.pop()
    if fn == "gaussian_nll" and len(arrays) == 3:
        kwargs["variance"] = arrays.pop()
    return arrays, kwargs


def _run(backend, fn, arrays, kwargs, dtype):
    arrays, kwargs = _split(fn, arrays, kwargs)
    cast = lambda a: a.astype(dtype) if a.dtype.kind == "f" else a
    arrays = [backend.asarray(cast(np.asarray(a))) for a in arrays]
    kwargs = {k: backend.asarray(cast(np.asarray(v))) if k in _ARRAY_KWARGS and np.ndim(v) else
              (float(v) if k in _ARRAY_KWARGS else v) for k, v in kwargs.items()}
    return backend.numpy(getattr(backend.xl, fn)(*arrays, **kwargs))


@pytest.mark.parametrize("case_id, fn, build, kwargs", CASES, ids=[c[0] for c in CASES])
def test_float64_matches_reference(backend, reference, case_id, fn, build, kwargs):
    arrays = build(np.random.default_rng(zlib.crc32(case_id.encode())))
    expected = _run(reference, fn, arrays, kwargs, np.float64)
    got = _run(backend, fn, arrays, kwargs, np.float64)
    assert got.dtype == np.float64
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case_id, fn, build, kwargs", CASES, ids=[c[0] for c in CASES])
def test_float32_within_1e5_of_the_float64_reference(backend, reference, case_id, fn, build, kwargs):
    arrays = [a.astype(np.float32).astype(np.float64) if a.dtype.kind == "f" else a
              for a in build(np.random.default_rng(zlib.crc32(case_id.encode())))]
    expected = _run(reference, fn, arrays, kwargs, np.float64)
    got = _run(backend, fn, arrays, kwargs, np.float32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_the_case_table_covers_every_common_function(reference):
    covered = {c[1] for c in CASES}
    # linear_cross_entropy has its own suite (tests/test_linear_ce.py).
    assert covered == set(reference.xl.__all__) - {"gradient_descent", "linear_cross_entropy"}
