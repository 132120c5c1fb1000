"""Fuzzed values: every backend against a SciPy float64 oracle (see tests/fuzzing.py)."""
from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special

from fuzzing import _eps, close, distributions, each_backend, fuzz, logits_batches, oracle_log_softmax


@fuzz
@given(logits_batches())
def test_log_softmax_matches_scipy(batch):
    dtype_name, z = batch
    expected = oracle_log_softmax(z)
    for name, got in each_backend("log_softmax", z):
        close(got, expected, dtype_name=dtype_name, scale=np.abs(z).max(initial=1.0),
              what=f"{name} log_softmax")


@fuzz
@given(logits_batches(any_leading_shape=True), st.data())
def test_sparse_ce_from_logits_matches_scipy(batch, data):
    """Any leading shape (0-d, empty), the class axis anywhere, every option and reduction."""
    dtype_name, z = batch
    k = z.shape[-1]
    ignore_index = data.draw(st.sampled_from([None, -1]))
    low = 0 if ignore_index is None else -1
    labels = data.draw(hnp.arrays(np.int64, z.shape[:-1], elements=st.integers(low, k - 1)))
    smoothing = data.draw(st.sampled_from([0.0, 0.1, 1.0]))
    weight = data.draw(st.none() | hnp.arrays(np.float64, (k,), elements=st.sampled_from([0.0, 0.5, 3.0])))
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))
    axis = data.draw(st.integers(-z.ndim, z.ndim - 1))

    log_q = oracle_log_softmax(z)
    w = np.ones(k) if weight is None else weight
    kept = labels != ignore_index
    safe = np.where(kept, labels, 0)
    w_y = np.where(kept, w[safe], 0.0)
    nll_y = -np.take_along_axis(log_q, safe[..., None], axis=-1)[..., 0]
    uniform = smoothing * (log_q @ w) / k if smoothing else 0.0  # not 0 * (-inf) at huge logits
    per_item = np.where(kept, w_y * (1 - smoothing) * nll_y - uniform, 0.0)
    expected = {"none": per_item, "sum": per_item.sum(),
                "mean": per_item.sum() / w_y.sum() if w_y.sum() else 0.0}[reduction]
    # A value beyond the loss dtype's maximum is inf there (an item, or a sum); a weighted
    # mean whose weighted items pass that maximum is still finite (weighted losses are
    # computed in float64).
    loss_max = float(np.finfo(np.float32 if dtype_name == "float16" else z.dtype).max)
    expected = np.where(np.abs(expected) > loss_max, np.inf, expected)
    y_pred = np.moveaxis(z, -1, axis)
    for name, got in each_backend("sparse_categorical_cross_entropy", labels, y_pred, from_logits=True,
                                  label_smoothing=smoothing, ignore_index=ignore_index,
                                  class_weight=weight, axis=axis, reduction=reduction):
        what = f"{name} sparse CE (ε={smoothing}, w={weight}, ignore={ignore_index}, {reduction})"
        # the error of one item is a few ulps of its largest logit; a sum adds them up
        scale = float(np.abs(z).max(initial=1.0)) * max(float(w.max(initial=1.0)), 1.0) * max(1, int(kept.sum()))
        scale = min(scale, float(np.finfo(np.float64).max))
        close(got, expected, dtype_name=dtype_name, scale=scale, what=what)
        assert np.all((got >= 0) | np.isclose(got, 0, atol=64 * _eps(dtype_name) * scale)), what


@fuzz
@given(logits_batches(max_classes=1, any_leading_shape=True), st.data())
def test_binary_ce_is_exact_at_any_magnitude(batch, data):
    """From logits, or from the probabilities sigma(z) (exact 0 and 1 at large |z|); 0-d too."""
    dtype_name, z = batch
    z = z[..., 0]
    y = data.draw(hnp.arrays(z.dtype, z.shape, elements=st.sampled_from([0.0, 0.25, 1.0])))
    y64, z64 = y.astype(np.float64), z.astype(np.float64)
    from_logits = data.draw(st.booleans())
    if from_logits:
        y_pred = z
        per_elem = np.logaddexp(0, z64) - y64 * z64  # softplus(z) - y z, stable
    else:
        y_pred = special.expit(z64).astype(z.dtype)
        q = y_pred.astype(np.float64)
        per_elem = -(special.xlogy(y64, q) + special.xlogy(1 - y64, 1 - q))  # inf where certain and wrong
    expected = per_elem.mean() if z.size else 0.0
    for name, got in each_backend("binary_cross_entropy", y, y_pred, from_logits=from_logits):
        close(got, expected, dtype_name=dtype_name, scale=1.0,
              what=f"{name} binary CE (from_logits={from_logits})")
        assert got >= 0, f"{name}: binary CE {got} < 0"


@fuzz
@given(distributions(), st.sampled_from([0.0, 0.1]))
def test_cross_entropy_and_kl_handle_zeros_and_denormals(dists, smoothing):
    """Information measures and categorical CE from probabilities: exact zeros, denormals, inf."""
    dtype_name, p, q = dists
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    h = special.entr(p64).sum()
    ce = -special.xlogy(p64, q64).sum() if not ((p64 > 0) & (q64 == 0)).any() else np.inf
    kl = special.rel_entr(p64, q64).sum()
    for name, got in each_backend("entropy", p):
        close(got, h, dtype_name=dtype_name, what=f"{name} entropy")
    for name, got in each_backend("cross_entropy", p, q):
        close(got, ce, dtype_name=dtype_name, scale=max(abs(ce), 1.0) if np.isfinite(ce) else 1,
              what=f"{name} cross_entropy")
    for name, got in each_backend("kl_divergence", p, q):
        close(got, kl, dtype_name=dtype_name, scale=max(abs(ce), 1.0) if np.isfinite(ce) else 1,
              what=f"{name} kl_divergence")
    target = (1 - smoothing) * p64 + smoothing / len(p)
    loss = -special.xlogy(target, q64).sum() if not ((target > 0) & (q64 == 0)).any() else np.inf
    for name, got in each_backend("categorical_cross_entropy", p[None], q[None], label_smoothing=smoothing):
        close(got, loss, dtype_name=dtype_name, scale=max(abs(loss), 1.0) if np.isfinite(loss) else 1,
              what=f"{name} categorical CE from probabilities (ε={smoothing})")
