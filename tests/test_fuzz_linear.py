"""Fuzzed linear cross-entropy (values and gradients, every option) and the calibration
metrics, against naive float64 oracles written here (see tests/fuzzing.py)."""
from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import optimize, special

from fuzzing import (  # noqa: F401 (fresh_tf_hot_paths: an autouse fixture)
    BACKENDS,
    FLOATS,
    SIXTEEN,
    backends_for,
    call,
    compute_dtype_of,
    fresh_tf_hot_paths,
    fuzz,
    probability_vectors,
    rounded,
    smoothing_taken,
    to_backend,
)

MAGNITUDES = st.sampled_from([1e-20, 1e-3, 0.5, 1.0, 4.0, 30.0, 1e3, 1e15])


@st.composite
def linear_problems(draw):
    """hidden (..., d), weight (V, d), labels (...), optional bias and class weights, every option.

    Magnitudes of h and W from 1e-20 to 1e15 each, so logits from underflow to about 1e30 (kept
    below the compute dtype's max / 16: logits beyond it are inf in that dtype, not a loss)."""
    dtype_name = draw(st.sampled_from(sorted(FLOATS)))
    lead = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4))
    d, v = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    dtype = FLOATS[dtype_name]

    def array(shape):
        unit = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1)))
        with np.errstate(over="ignore"):  # float16 from 1e15: inf, a named error
            return (unit * draw(MAGNITUDES)).astype(dtype)

    hidden, weight = array((*lead, d)), array((v, d))
    bias = array((v,)) if draw(st.booleans()) else None
    ignore_index = draw(st.sampled_from([None, -100]))
    labels = draw(hnp.arrays(np.int64, lead, elements=st.integers(0, v - 1)))
    if ignore_index is not None:
        labels = np.where(draw(hnp.arrays(np.bool_, lead)), ignore_index, labels)
    class_weight = draw(hnp.arrays(np.float64, (v,), elements=st.sampled_from(
        [0.0, 1e-3, 0.5, 1.0, 3.0, 1e3]))).astype(dtype) if draw(st.booleans()) else None
    options = dict(
        bias=bias, ignore_index=ignore_index, class_weight=class_weight,
        label_smoothing=draw(st.sampled_from([0.0, 0.1, 1.0]) | st.floats(0, 1)),
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
        chunk_size=draw(st.none() | st.integers(1, 4)),
        z_loss=draw(st.sampled_from([0.0, 1e-4, 0.5])),
        softcap=draw(st.none() | st.sampled_from([0.5, 30.0])))
    return dtype_name, hidden, weight, labels, options


def to_float64(a):
    return None if a is None else np.asarray(a).astype(np.float64)


def linear_oracle(hidden, weight, labels, options, dtype_name):
    """The loss and its gradients (hidden, weight, bias) of the naive form, in float64."""
    h, w_mat, b = to_float64(hidden), to_float64(weight), to_float64(options["bias"])
    v = w_mat.shape[0]
    raw = h @ w_mat.T + (0 if b is None else b)
    cap = options["softcap"]
    z = raw if cap is None else cap * np.tanh(raw / cap)
    eps = smoothing_taken(options["label_smoothing"], dtype_name, shares=v)
    lam, ignore = options["z_loss"], options["ignore_index"]
    kept = labels != ignore if ignore is not None else np.ones(labels.shape, bool)
    safe = np.where(kept, labels, 0)
    cw = np.ones(v) if options["class_weight"] is None else to_float64(options["class_weight"])
    w_y = np.where(kept, cw[safe], 0.0)
    lse = special.logsumexp(z, axis=-1)
    z_y = np.take_along_axis(z, safe[..., None], axis=-1)[..., 0]
    uniform = (cw * (lse[..., None] - z)).sum(axis=-1) / v
    items = np.where(kept, (1 - eps) * w_y * (lse - z_y) + eps * uniform + lam * w_y * lse ** 2, 0.0)
    # d item / d z (the formula of xentlib/_linear.py's docstring, derived independently here)
    p = special.softmax(z, axis=-1)
    one_hot = np.eye(v)[safe]
    dz = (p * ((1 - eps) * w_y + eps * cw.mean() + 2 * lam * w_y * lse)[..., None]
          - (1 - eps) * w_y[..., None] * one_hot - eps / v * cw)
    dz = np.where(kept[..., None], dz, 0.0)
    reduction = options["reduction"]
    if reduction == "none":
        return items, None
    loss, upstream = items.sum(), 1.0
    if reduction == "mean":
        denominator = w_y.sum()
        loss, upstream = (loss / denominator, 1 / denominator) if denominator else (0.0, 0.0)
    upstream_dz = dz * upstream if cap is None else dz * upstream * (1 - (z / cap) ** 2)
    flat, flat_h = upstream_dz.reshape(-1, v), h.reshape(-1, h.shape[-1])
    grads = {"hidden": upstream_dz @ w_mat, "weight": flat.T @ flat_h, "bias": flat.sum(axis=0),
             "upstream": upstream}
    return items if reduction == "none" else loss, grads


def error_bound(hidden, weight, options, dtype_name):
    """What rounding in the compute dtype (unit roundoff u) may move the loss and dloss/dz.

    The logits' rounding error is at most d u sum_j |W_cj h_j| (+ |b_c|); the loss moves by at
    most its gradient's 1-norm in z (<= 2 w (1 + 2 lambda |lse|), w the largest class weight)
    times that. dloss/dz (entries of size <= w') is off by a few u w' from its own rounding, plus
    w' times the logits' error. Returns (u, loss bound, dz bound per item)."""
    u = float(np.finfo(compute_dtype_of(dtype_name)).eps)
    h, w_mat = np.abs(to_float64(hidden)), np.abs(to_float64(weight))
    b = 0 if options["bias"] is None else np.abs(to_float64(options["bias"]))
    s = float(np.max(h @ w_mat.T + b, initial=0.0))
    cw = 1.0 if options["class_weight"] is None else float(np.max(to_float64(options["class_weight"])))
    w_eff = max(cw, 1.0) * (1 + 2 * options["z_loss"] * (s + np.log(weight.shape[0])))
    logit_error = (hidden.shape[-1] + 4) * u * s
    lse = s + np.log(weight.shape[0])
    if max(cw, 1.0) * lse * (2 + options["z_loss"] * lse) > float(np.finfo(compute_dtype_of(dtype_name)).max) / 16:
        # a (weighted) item near the compute dtype's max is inf there (the documented rule), not a loss: no
        # bound (bfloat16 W 1e15, h 1e3, class weight 1e3, z_loss 0.5: 4.98e38, past float32's max)
        return u, np.inf, np.inf
    return u, 2 * w_eff * logit_error, w_eff * (16 * u + 2 * logit_error)


def backend_grads(backend, hidden, weight, labels, options):
    """The loss and the gradients of a scalar loss with respect to hidden, weight and bias."""
    arrays = {"hidden": hidden, "weight": weight, "bias": options["bias"]}
    kwargs = {k: (to_backend(backend, x) if isinstance(x, np.ndarray) else x)
              for k, x in options.items() if k != "bias"}
    if backend.name == "torch":
        import torch
        leaves = {k: to_backend(backend, x).requires_grad_() for k, x in arrays.items() if x is not None}
        loss = backend.xl.linear_cross_entropy(leaves["hidden"], leaves["weight"], torch.from_numpy(labels),
                                               bias=leaves.get("bias"), **kwargs)
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        return backend.numpy(loss), {k: None if g is None else backend.numpy(g) for k, g in zip(leaves, grads)}
    import tensorflow as tf
    leaves = {k: tf.Variable(to_backend(backend, x)) for k, x in arrays.items() if x is not None}
    with tf.GradientTape() as tape:
        loss = backend.xl.linear_cross_entropy(leaves["hidden"], leaves["weight"], labels,
                                               bias=leaves.get("bias"), **kwargs)
    grads = tape.gradient(loss, list(leaves.values()))
    return backend.numpy(loss), {k: None if g is None else backend.numpy(g) for k, g in zip(leaves, grads)}


def assert_close(got, expected, tol, what, or_else=None):
    """|got - expected| <= tol; where ``expected`` is inf (rounded beyond its dtype), that inf.
    ``or_else``: a second acceptable value."""
    if or_else is not None:
        try:
            return assert_close(got, or_else, tol, what)
        except AssertionError:
            pass
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    with np.errstate(invalid="ignore"):
        ok = np.where(np.isinf(expected), got == expected, np.abs(got - expected) <= tol)
    assert ok.all(), f"{what}: got {got}, expected {expected} (tol {tol})"


@fuzz
@given(linear_problems())
def test_linear_cross_entropy_matches_the_naive_float64_form(problem):
    """linear_cross_entropy (every backend, every option, 0-d to empty leading shapes, chunking)
    against h W^T + b then CE in float64: the value, and for a reduced loss the gradients with
    respect to hidden, weight and bias (torch autograd, TF GradientTape)."""
    dtype_name, hidden, weight, labels, options = problem
    # float16 h, W or b of magnitude 1e15 hold inf: the first non-empty one of them is named
    bad = next((name for name, x in (("hidden", hidden), ("weight", weight), ("bias", options["bias"]))
                if x is not None and x.size and not np.isfinite(x).all()), None)
    if bad:
        for backend in backends_for(dtype_name):
            with pytest.raises(ValueError, match=f"^{bad} must be finite"):
                call(backend, "linear_cross_entropy", hidden, weight, labels, **options)
        return
    u, bound, dz_bound = error_bound(hidden, weight, options, dtype_name)
    assume(bound < 1e-3 * float(np.finfo(compute_dtype_of(dtype_name)).max))  # logits far within range
    expected, grads = linear_oracle(hidden, weight, labels, options, dtype_name)
    tol = bound + 8 * u * np.abs(expected)
    what = f"linear CE {dtype_name} h{hidden.shape} W{weight.shape} {options}"
    for backend in backends_for(dtype_name):
        got = call(backend, "linear_cross_entropy", hidden, weight, labels, **options)
        assert got.dtype == compute_dtype_of(dtype_name), (backend.name, got.dtype)
        assert_close(got, expected, tol, f"{backend.name} {what}")
        if grads is None or backend.name == "numpy":
            continue
        loss, got_grads = backend_grads(backend, hidden, weight, labels, options)
        assert_close(loss, expected, tol, f"{backend.name} (with a tape) {what}")
        # TF's CPU kernels read a subnormal input as 0 (documented): the flushed inputs' gradients are right too
        flushed = flushed_grads(hidden, weight, labels, options, dtype_name) if backend.name == "tensorflow" else {}
        for name, g in grads.items():
            if name == "upstream" or (name == "bias" and options["bias"] is None):
                continue
            # dh = dz W, dW = dz^T h, db = sum dz: dz's error (times the reduction's 1/sum w) carried
            # through the product's other factor, plus the product's rounding and the output dtype's
            g_tol = grad_tolerance(name, g, grads["upstream"] * dz_bound, hidden, weight, u, dtype_name)
            if dtype_name in SIXTEEN:  # returned in the input dtype: beyond its max, inf of its sign
                g = rounded(g, FLOATS[dtype_name])
            assert_close(got_grads[name], g, g_tol, f"{backend.name} d/d{name} {what}",
                         or_else=flushed.get(name))


def flushed_grads(hidden, weight, labels, options, dtype_name):
    """The oracle's gradients of the inputs as TensorFlow's CPU kernels read them (a value below the
    compute dtype's smallest normal as 0), or {} where no input holds one."""
    tiny = np.finfo(compute_dtype_of(dtype_name)).tiny

    def flushed(a):
        return None if a is None else np.where(np.abs(to_float64(a)) < tiny, 0, a).astype(a.dtype)

    arrays = (hidden, weight, options["bias"])
    if all(a is None or np.array_equal(flushed(a), a) for a in arrays):
        return {}
    h, w, b = (flushed(a) for a in arrays)
    grads = linear_oracle(h, w, labels, {**options, "bias": b}, dtype_name)[1]
    return {k: rounded(g, FLOATS[dtype_name]) if dtype_name in SIXTEEN else g for k, g in grads.items()}


def grad_tolerance(name, g, dz_error, hidden, weight, u, dtype_name):
    rows_h = np.abs(to_float64(hidden)).reshape(-1, hidden.shape[-1])
    other = {"hidden": np.abs(to_float64(weight)).sum(axis=0),  # (d,): sum over classes of |W_c|
             "weight": rows_h.sum(axis=0)[None, :],              # (1, d): sum over items of |h_n|
             "bias": np.float64(len(rows_h))}[name]
    # TensorFlow's CPU kernels flush a result below the smallest normal to 0 (documented in
    # xentlib.tensorflow): a gradient entry of 1e-316 may be 0
    tiny = float(np.finfo(compute_dtype_of(dtype_name)).tiny)
    tol = dz_error * other * (1 + 8 * u) + 8 * u * np.abs(g) + tiny
    if dtype_name in SIXTEEN:  # rounded to 16 bits (bfloat16 8 bits of mantissa, float16 11): one ulp,
        # as the oracle is rounded from the exact value and the backend from a float32 one near it
        # (an exact value at a midpoint goes either way)
        tol = tol + (2.0 ** -7 if dtype_name == "bfloat16" else 2.0 ** -10) * np.abs(g) + float(
            ml_dtypes.finfo(FLOATS[dtype_name]).smallest_subnormal)
    return tol


# ---- calibration --------------------------------------------------------------------------

def calibration_oracle(labels, probs, n_bins, binning):
    """ECE and MCE with exact bin edges (right-closed ((b/B, (b+1)/B]: Fraction arithmetic)."""
    p = np.asarray(probs).astype(np.float64).reshape(-1, probs.shape[-1])
    if not len(p):
        return 0.0, 0.0
    confidence = p.max(axis=-1)
    correct = (p.argmax(axis=-1) == labels.reshape(-1)).astype(np.float64)
    if binning == "width":
        bins = np.array([min(max(-(-Fraction(c) * n_bins // 1) - 1, 0), n_bins - 1) for c in confidence])
    else:
        bins = np.empty(len(p), np.int64)
        bins[np.argsort(confidence, kind="stable")] = np.arange(len(p)) * n_bins // len(p)
    gaps = [(abs(sum(correct[bins == b] - confidence[bins == b])), int((bins == b).sum()))
            for b in range(n_bins) if (bins == b).any()]
    return sum(g for g, _ in gaps) / len(p), max(g / c for g, c in gaps)


@fuzz
@given(st.sampled_from(["float16", "bfloat16", "float32", "float64"]), st.integers(0, 12), st.integers(1, 5),
       st.sampled_from([1, 2, 3, 10, 15]), st.sampled_from(["width", "mass"]), st.data())
def test_calibration_errors_match_the_exact_bins(dtype_name, n, k, n_bins, binning, data):
    """expected/maximum_calibration_error: confidences at and next to the bin edges (b/B and its
    neighbours in the dtype), ties, no items; the bins are cut with exact arithmetic here."""
    dtype = FLOATS[dtype_name]
    p = data.draw(probability_vectors((n, k), dtype_name)).astype(np.float64)
    edges = [b / n_bins for b in range(1, n_bins + 1)]
    near = st.sampled_from(edges).map(lambda e: float(data.draw(st.sampled_from(
        [e, np.nextafter(dtype(e), dtype(0)), np.nextafter(dtype(e), dtype(1))]))))
    for row in range(n):  # some rows: the top class's probability set to (next to) an edge
        if k > 1 and data.draw(st.booleans()):
            top = float(min(data.draw(near), 1.0))
            if top >= 1 / k:
                p[row] = (1 - top) / (k - 1)
                p[row, data.draw(st.integers(0, k - 1))] = top
    probs = p.astype(dtype)
    labels = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    ece, mce = calibration_oracle(labels, probs, n_bins, binning)
    out = np.float64 if dtype_name == "float64" else np.float32
    with np.errstate(over="ignore"):
        for name, expected in (("expected_calibration_error", ece), ("maximum_calibration_error", mce)):
            for backend in backends_for(dtype_name):
                got = call(backend, name, labels, probs, n_bins=n_bins, binning=binning)
                assert got.dtype == out and got.shape == (), (backend.name, name, got.dtype, got.shape)
                tol = 4 * float(np.finfo(out).eps) * max(expected, 1e-300) + 8 * n * np.finfo(np.float64).eps
                assert abs(float(got) - expected) <= tol, (
                    f"{backend.name} {name} {dtype_name} B={n_bins} {binning}: got {got}, expected {expected}; "
                    f"labels={labels.tolist()} probs={probs.astype(np.float64).tolist()}")


def mean_nll(z, labels, temperature):
    z = z / temperature
    return float((special.logsumexp(z, axis=-1) - z[np.arange(len(z)), labels]).mean())


@fuzz
@given(st.sampled_from(["float16", "bfloat16", "float32", "float64"]), st.integers(1, 8), st.integers(1, 5),
       st.sampled_from([1e-3, 0.1, 1.0, 5.0, 30.0, 1e3]), st.data())
def test_fit_temperature_minimises_the_nll(dtype_name, n, k, magnitude, data):
    """fit_temperature: T in [0.01, 100], and its mean NLL no worse than SciPy's bounded search of
    the same objective (both in float64); the backends agree to their dtype's rounding."""
    dtype = FLOATS[dtype_name]
    unit = data.draw(hnp.arrays(np.float64, (n, k), elements=st.floats(-1, 1)))
    logits = (unit * magnitude).astype(dtype)
    labels = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    z = logits.astype(np.float64)
    best = optimize.minimize_scalar(lambda log_t: mean_nll(z, labels, np.exp(log_t)),
                                    bounds=(np.log(0.01), np.log(100.0)), method="bounded",
                                    options={"xatol": 1e-10})
    reference = min(best.fun, mean_nll(z, labels, 0.01), mean_nll(z, labels, 100.0))
    out = np.float64 if dtype_name == "float64" else np.float32
    results = {}
    for backend in backends_for(dtype_name):
        t = call(backend, "fit_temperature", logits, labels)
        assert t.dtype == out and t.shape == (), (backend.name, t.dtype, t.shape)
        t = float(t)
        assert 0.01 * (1 - 1e-6) <= t <= 100 * (1 + 1e-6), (backend.name, t)
        nll = mean_nll(z, labels, t)
        # float rounding of T (to float32) moves the NLL by about |dNLL/dT| eps T: bounded by |z| / T * eps
        slack = 1e-9 * max(1.0, abs(reference)) + 4 * float(np.finfo(out).eps) * np.abs(z).max() / t
        assert nll <= reference + slack, (
            f"{backend.name} fit_temperature {dtype_name}: T={t} NLL {nll} > {reference} (SciPy's T="
            f"{np.exp(best.x)}); logits={logits.astype(np.float64).tolist()} labels={labels.tolist()}")
        results[backend.name] = t
    values = np.array(list(results.values()))
    assert np.allclose(values, values[:1], rtol=1e-5), results
