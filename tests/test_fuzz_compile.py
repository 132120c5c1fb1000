"""Fuzzed compile variants: XLA (jit_compile), torch.func.vmap and grad, torch.compile, each
against the eager result (see tests/fuzzing.py).

Split from test_fuzz_graphs.py so that the fuzz files take about the same time under CI=true
(pytest -n 2 --dist loadfile runs each file on one worker).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import (
    BACKENDS,
    close,
    fresh_tf_hot_paths,  # noqa: F401 (an autouse fixture)
    fuzz,
    logits_batches,
)

# ---- XLA, torch.func.vmap and grad, torch.compile ------------------------------------------

FROM_LOGITS = ("sparse_categorical_cross_entropy", "categorical_cross_entropy", "binary_cross_entropy")


def loss_inputs(fn, z, data):
    """The first argument of ``fn`` for logits ``z`` (N, K): labels, a soft target or a binary one."""
    n, k = z.shape
    if fn == "sparse_categorical_cross_entropy":
        return np.asarray(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)), np.int64)
    target = np.asarray(data.draw(st.lists(st.floats(0, 1), min_size=n * k, max_size=n * k)), z.dtype).reshape(n, k)
    if fn == "categorical_cross_entropy":
        target = np.where(target.sum(-1, keepdims=True) > 0, target, 1.0)
        target = (target / target.sum(-1, keepdims=True)).astype(z.dtype)
    return target


@pytest.fixture(scope="module")
def xla_losses():
    """One jit_compile=True tf.function per loss (XLA compiles once per shape and dtype)."""
    import tensorflow as tf
    xl = BACKENDS[2].xl
    return {(fn, smoothing): tf.function(lambda y, z, fn=fn, smoothing=smoothing: getattr(xl, fn)(
        y, z, from_logits=True, label_smoothing=smoothing), jit_compile=True)
        for fn in FROM_LOGITS for smoothing in SMOOTHINGS}


SMOOTHINGS = (0.1,)  # XLA compiles per function, option, shape and dtype: one option (0 and 1: eager)


@fuzz
@given(st.sampled_from(FROM_LOGITS), logits_batches(min_classes=1, max_classes=3, min_rows=1, max_rows=3,
                                                    dtypes=("float32", "float64")),
       st.sampled_from(SMOOTHINGS), st.data())
def test_xla_equals_eager(xla_losses, fn, batch, smoothing, data):
    """Under XLA (jit_compile=True, where value checks cannot raise) a valid input gives the eager
    value: logits to the dtype's max, smoothing, the three from-logits losses."""
    import tensorflow as tf
    dtype_name, z = batch
    y = loss_inputs(fn, z, data)
    eager = BACKENDS[2].call(fn, y, z, from_logits=True, label_smoothing=smoothing)
    compiled = xla_losses[fn, smoothing](tf.constant(y), tf.constant(z)).numpy()
    close(compiled, eager, dtype_name=dtype_name, scale=float(np.abs(z.astype(np.float64)).max(initial=1.0)),
          what=f"XLA {fn} {dtype_name} ε={smoothing}: z={z.tolist()}")


@fuzz
@given(st.sampled_from(FROM_LOGITS), logits_batches(min_classes=1, max_classes=4, min_rows=1, max_rows=4,
                                                    dtypes=("float32", "float64")), st.data())
def test_torch_func_vmap_and_grad_equal_the_batch(fn, batch, data):
    """torch.func.vmap of the per-item loss equals reduction='none', and vmap(grad) the per-item
    gradients of autograd: the three from-logits losses."""
    import torch

    import xentlib
    dtype_name, z = batch
    y = torch.from_numpy(loss_inputs(fn, z, data))
    xl = BACKENDS[1].xl
    zt = torch.from_numpy(z.copy()).requires_grad_()
    per_item = getattr(xl, fn)(y, zt, from_logits=True, reduction="none")
    if fn == "binary_cross_entropy":
        per_item = per_item.sum(-1)  # one item per row: its K elements
    autograd = [torch.autograd.grad(item, zt, retain_graph=True)[0][i].numpy() for i, item in enumerate(per_item)]

    def item_loss(z_row, y_row):
        return getattr(xl, fn)(y_row[None], z_row[None], from_logits=True, reduction="sum")

    with xentlib.value_checks(False):  # the value checks read data back: not under vmap
        batched = torch.func.vmap(item_loss)(zt.detach(), y)
        grads = torch.func.vmap(torch.func.grad(item_loss))(zt.detach(), y)
    scale = float(np.abs(z.astype(np.float64)).max(initial=1.0))
    close(batched.numpy(), per_item.detach().numpy(), dtype_name=dtype_name, scale=scale, what=f"vmap {fn}")
    close(grads.numpy(), np.stack(autograd), dtype_name=dtype_name, what=f"vmap(grad) {fn}")


@pytest.fixture(scope="module")
def compiled_sparse_ce():
    """torch.compile of sparse CE, dynamic shapes (one compile per dtype and rank, not per shape)."""
    import torch
    xl = BACKENDS[1].xl
    return torch.compile(lambda y, z: xl.sparse_categorical_cross_entropy(y, z, from_logits=True,
                                                                          label_smoothing=0.1), dynamic=True)


@fuzz
@given(logits_batches(min_classes=2, max_classes=4, min_rows=1, max_rows=4, dtypes=("float32",)), st.data())
def test_torch_compile_equals_eager(compiled_sparse_ce, batch, data):
    import torch
    _, z = batch
    labels = torch.from_numpy(loss_inputs("sparse_categorical_cross_entropy", z, data))
    eager = BACKENDS[1].xl.sparse_categorical_cross_entropy(labels, torch.from_numpy(z), from_logits=True,
                                                            label_smoothing=0.1).numpy()
    compiled = compiled_sparse_ce(labels, torch.from_numpy(z)).numpy()
    close(compiled, eager, dtype_name="float32", scale=float(np.abs(z).max(initial=1.0)),
          what=f"torch.compile sparse CE: z={z.tolist()}")
