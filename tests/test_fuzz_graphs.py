"""Fuzzed gradients, tf.function with unknown shapes, torch.func.grad, mixed and 16-bit dtypes (see tests/fuzzing.py).

Split from test_fuzz.py so that the fuzz files take about the same time under CI=true
(pytest -n 2 --dist loadfile runs each file on one worker).
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import special

from fuzzing import (  # noqa: F401 (fresh_tf_hot_paths: an autouse fixture)
    BACKENDS,
    close,
    distributions,
    entropy_terms,
    fresh_tf_hot_paths,
    fuzz,
    logits_batches,
    oracle_log_softmax,
)


@fuzz
@given(logits_batches(min_classes=2, min_rows=1, dtypes=("float32", "float64")), st.data())
def test_sparse_ce_gradient_is_softmax_minus_onehot(batch, data):
    dtype_name, z = batch
    n, k = z.shape
    labels = np.asarray(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)),
                        np.int64)
    expected = (special.softmax(z.astype(np.float64), axis=-1) - np.eye(k)[labels]) / n
    import tensorflow as tf
    import torch
    zt = torch.tensor(z, requires_grad=True)
    BACKENDS[1].xl.sparse_categorical_cross_entropy(torch.tensor(labels), zt,
                                                    from_logits=True).backward()
    close(zt.grad.numpy(), expected, dtype_name=dtype_name, scale=1 / n, what="torch grad")
    zv = tf.Variable(z)
    with tf.GradientTape() as tape:
        loss = BACKENDS[2].xl.sparse_categorical_cross_entropy(labels, zv, from_logits=True)
    close(tape.gradient(loss, zv).numpy(), expected, dtype_name=dtype_name, scale=1 / n,
          what="tensorflow grad")


@pytest.fixture(scope="module")
def traced_sparse_ce():
    """One tf.function with unknown batch and class dimensions, traced once."""
    import tensorflow as tf
    xl = BACKENDS[2].xl
    return tf.function(lambda y, z: xl.sparse_categorical_cross_entropy(
        y, z, from_logits=True, label_smoothing=0.1),
        input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None], tf.float32)])


@fuzz
@given(logits_batches(min_classes=1), st.data())
def test_tf_function_with_unknown_shapes_equals_eager(traced_sparse_ce, batch, data):
    _, z = batch
    z = z.astype(np.float32)
    assume(np.isfinite(z).all())
    n, k = z.shape
    labels = np.asarray(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)),
                        np.int64)
    eager = BACKENDS[2].call("sparse_categorical_cross_entropy", labels, z, from_logits=True,
                             label_smoothing=0.1)
    graph = traced_sparse_ce(labels, z).numpy()
    close(graph, eager, dtype_name="float32", scale=np.abs(z).max(initial=1.0), what="graph")


@fuzz
@given(logits_batches(min_classes=2, min_rows=1, dtypes=("float64",)), st.data())
def test_torch_func_grad_equals_autograd(batch, data):
    import torch
    dtype_name, z = batch
    n, k = z.shape
    labels = torch.tensor(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    xl = BACKENDS[1].xl
    grad = torch.func.grad(lambda t: xl.sparse_categorical_cross_entropy(labels, t,
                                                                          from_logits=True))
    expected = (special.softmax(z, axis=-1) - np.eye(k)[labels.numpy()]) / n
    close(grad(torch.tensor(z)).numpy(), expected, dtype_name=dtype_name, scale=1 / n,
          what="torch.func.grad")


@fuzz
@given(logits_batches(min_classes=1, min_rows=1, max_rows=3))
def test_bfloat16_logits_give_losses_close_to_float64(batch):
    import tensorflow as tf
    import torch
    _, z = batch
    z32 = z.astype(np.float32)
    assume(np.isfinite(z32.astype(ml_dtypes.bfloat16).astype(np.float32)).all())
    inputs = {"torch": torch.tensor(z32).to(torch.bfloat16),
              "tensorflow": tf.cast(tf.constant(z32), tf.bfloat16)}
    exact = z32.astype(ml_dtypes.bfloat16).astype(np.float64)  # the values the backends see
    items = -oracle_log_softmax(exact)[:, 0]
    # an item beyond float32's maximum is inf in the float32 loss (the documented rule)
    expected = np.where(items > np.finfo(np.float32).max, np.inf, items).mean()
    labels = np.zeros(len(z), np.int64)
    for backend in BACKENDS[1:]:
        out = backend.xl.sparse_categorical_cross_entropy(
            backend.asarray(labels), inputs[backend.name], from_logits=True)
        close(backend.numpy(out), expected, dtype_name="float32",
              scale=np.abs(exact).max(initial=1.0), what=f"{backend.name} bf16")


@fuzz
@given(distributions(dtypes=("float16", "float32", "float64")), st.sampled_from([np.float16, np.float32, np.float64]),
       st.booleans())
def test_mixed_dtypes_promote(dists, other, swap):
    """Two distributions of different dtypes: computed and returned in the wider (NumPy's rule)."""
    dtype_name, p, q = dists
    q = q.astype(other)
    sum_tolerance = {np.float16: 1e-2, np.float32: 1e-4, np.float64: 1e-6}  # the library's, per dtype
    assume(np.isfinite(q).all() and abs(float(q.astype(np.float64).sum()) - 1) < sum_tolerance[other])
    if swap:
        p, q = q, p
    expected_dtype = np.result_type(p, q)
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    kl = special.rel_entr(p64, q64).sum()
    for fn in ("cross_entropy", "kl_divergence"):
        for backend in BACKENDS:
            out = backend.numpy(getattr(backend.xl, fn)(backend.asarray(p), backend.asarray(q)))
            assert out.dtype == expected_dtype, (backend.name, fn, p.dtype, q.dtype, out.dtype)
            expected = kl if fn == "kl_divergence" else entropy_terms(p, q).sum()
            close(out, expected, dtype_name=expected_dtype.name, scale=max(abs(float(expected)), 1.0)
                  if np.isfinite(expected) else 1.0, what=f"{backend.name} {fn} (mixed)")
