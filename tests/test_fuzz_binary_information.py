"""Fuzzed binary and focal CE, perplexity and the closed-form gradients, the information
measures and the regression losses: every backend against a float64 (long double) oracle and
the frameworks' built-ins (see tests/fuzzing.py).

Split from test_fuzz.py so that the fuzz files take about the same time under CI=true
(pytest -n 2 --dist loadfile runs each file on one worker).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special

from fuzzing import (
    BACKENDS,
    FLOATS,
    LD,
    REDUCTION,
    SIXTEEN,
    SMOOTHING,
    WEIGHT,
    as_loss,
    assert_refused,
    backends_for,
    call,
    close,
    close_to_builtin,
    compute_eps,
    distributions,
    each_backend,
    entropy_terms,
    finfo,
    fresh_tf_hot_paths,  # noqa: F401 (an autouse fixture)
    fuzz,
    log_softmax_ld,
    logits_batches,
    probability_vectors,
    reduce_items,
    refused,
    scaled,
    scales,
    smoothing_taken,
    times,
)


def promoted(a, b):
    """NumPy's promotion of two float dtype names: the wider (float16 with bfloat16: None, unspecified)."""
    if a == b:
        return a
    if {a, b} == set(SIXTEEN):
        return None
    return max(a, b, key=lambda d: FLOATS[d](0).itemsize)


# ---- binary CE --------------------------------------------------------------------------

BINARY_TARGET = st.sampled_from([0.0, 1.0, 0.25, 0.5, 5e-324, 1e-30]) | st.floats(0, 1)


@fuzz
@given(logits_batches(max_classes=4, any_leading_shape=True), st.booleans(), st.data())
def test_binary_ce(batch, from_logits, data):
    """Logits to the dtype's max, or probabilities with exact 0 and 1 and subnormals; soft
    targets; pos_weight scalar or per class (0 to 1e300); smoothing; 0-d to empty shapes;
    torch's and tf.nn's sigmoid CE (and Keras') from logits where they are finite."""
    dtype_name, z = batch
    if data.draw(st.booleans()):
        z = z[..., 0]  # 0-d too
    dtype = FLOATS[dtype_name]
    y = data.draw(hnp.arrays(np.float64, z.shape, elements=BINARY_TARGET)).astype(dtype)
    drawn = data.draw(SMOOTHING)
    smoothing = 2 * smoothing_taken(drawn / 2, dtype_name)  # the oracle's (ε/2 below the smallest normal: 0)
    reduction = data.draw(REDUCTION)
    pw_shape = data.draw(st.sampled_from([None, ()] + ([z.shape[-1:]] if z.ndim else [])))
    pos_weight = None if pw_shape is None else data.draw(hnp.arrays(np.float64, pw_shape, elements=WEIGHT))
    if from_logits:
        y_pred = z
    else:
        extremes = st.sampled_from([0.0, 1.0, float(finfo(dtype_name).smallest_subnormal),
                                    1 - float(finfo(dtype_name).eps) / 2]) | st.floats(0, 1)
        y_pred = data.draw(hnp.arrays(np.float64, z.shape, elements=extremes)).astype(dtype)
    y64 = y.astype(np.float64).astype(LD)
    t = y64 * (1 - LD(smoothing)) + LD(smoothing) / 2
    not_t = (1 - y64) * (1 - LD(smoothing)) + LD(smoothing) / 2  # not 1 - t: 1 - 1e-125 / 2 rounds to 1
    w = LD(1) if pos_weight is None else pos_weight.astype(LD)
    if from_logits:
        z_ld = z.astype(np.float64).astype(LD)
        softplus_neg, softplus_pos = np.logaddexp(LD(0), -z_ld), np.logaddexp(LD(0), z_ld)  # -log p, -log(1-p)
        scale = float(np.abs(z.astype(np.float64)).max(initial=1.0))
    else:
        q = y_pred.astype(np.float64).astype(LD)
        with np.errstate(divide="ignore"):
            softplus_neg, softplus_pos = -np.log(q), -np.log1p(-q)
        scale = 1000.0
    elems = as_loss(times(w * t, softplus_neg) + times(not_t, softplus_pos), dtype_name)
    expected = reduce_items(elems, reduction)
    if pos_weight is not None:
        scale *= max(1.0, float(pos_weight.max(initial=1.0)))
    scale = min(scale * (max(1, elems.size) if reduction == "sum" else 1), 1e308)
    what = (f"binary CE {dtype_name} (from_logits={from_logits}, ε={smoothing}, pos_weight={pos_weight}, "
            f"{reduction})")
    results = {}
    if refused(pos_weight, dtype_name):
        return assert_refused("pos_weight", "binary_cross_entropy", y, y_pred, dtype_name=dtype_name,
                              from_logits=from_logits, label_smoothing=drawn, pos_weight=pos_weight,
                              reduction=reduction)
    for name, got in each_backend("binary_cross_entropy", y, y_pred, from_logits=from_logits,
                                  label_smoothing=drawn, pos_weight=pos_weight, reduction=reduction):
        results[name] = got
        close(got, expected, dtype_name=dtype_name, scale=scale, what=f"{name} {what}")
        assert np.all(got >= 0), f"{name} {what}: {got} < 0"

    if dtype_name in SIXTEEN or not from_logits:
        return
    import tensorflow as tf
    import torch
    import torch.nn.functional as F
    t_cast = t.astype(dtype)
    builtins = {}
    if pos_weight is None or np.array_equal(pos_weight.astype(dtype).astype(np.float64), pos_weight):
        pw = None if pos_weight is None else torch.from_numpy(np.asarray(pos_weight, dtype).copy())
        builtins["torch"] = F.binary_cross_entropy_with_logits(
            torch.from_numpy(np.array(z)), torch.from_numpy(np.array(t_cast)), pos_weight=pw,
            reduction="none").numpy()
        builtins["tensorflow"] = (
            tf.nn.sigmoid_cross_entropy_with_logits(t_cast, z) if pos_weight is None
            else tf.nn.weighted_cross_entropy_with_logits(t_cast, z, np.asarray(pos_weight, dtype))).numpy()
    for source, per_elem in builtins.items():
        builtin = np.asarray(reduce_items(per_elem.astype(np.float64), reduction), np.float64)
        close_to_builtin(results[source], builtin.reshape(np.shape(results[source])), dtype_name=dtype_name,
                         scale=scale, what=f"{source} vs its built-in: {what}")


# ---- information theory -----------------------------------------------------------------

@fuzz
@given(distributions(any_leading_shape=True), st.sampled_from(list(FLOATS)), st.booleans(),
       st.sampled_from([None, 2, 10, 0.5]), st.data())
def test_information_measures(dists, q_dtype, mixed, base, data):
    """entropy, cross_entropy, kl_divergence: exact zeros, subnormals, inf (p > 0 where q = 0),
    16-bit to float64 and mixed dtypes (computed in the wider), any axis, a base;
    torch's F.kl_div where it is finite."""
    dtype_name, p, q = dists
    if mixed and q_dtype != dtype_name:
        q = data.draw(probability_vectors(q.shape, q_dtype))
    axis = data.draw(st.integers(-p.ndim, p.ndim - 1))
    divisor = 1.0 if base is None else float(np.log(base))
    ce_terms = entropy_terms(p, q)
    h = special.entr(p.astype(np.float64)).sum(axis=-1) / divisor
    ce = ce_terms.sum(axis=-1) / divisor
    kl = special.rel_entr(p.astype(np.float64), q.astype(np.float64)).sum(axis=-1) / divisor
    dtypes = (dtype_name, q.dtype.name)
    wider = promoted(*dtypes)
    scale = np.maximum(np.abs(np.where(np.isfinite(ce), ce, 0)), 1.0).max(initial=1.0)
    moved_p, moved_q = np.moveaxis(p, -1, axis), np.moveaxis(q, -1, axis)
    kwargs = dict(axis=axis, base=base)
    for name, got in each_backend("entropy", moved_p, **kwargs):
        close(got, h, dtype_name=dtype_name, rounds_to=dtype_name, what=f"{name} entropy {dtype_name} base={base}")
    for fn, expected in (("cross_entropy", ce), ("kl_divergence", kl)):
        what = f"{fn} {dtypes} base={base} axis={axis}"
        for name, got in each_backend(fn, moved_p, moved_q, **kwargs):
            close(got, expected, dtype_name=wider or "float32", rounds_to=wider, what=f"{name} {what}",
                  scale=scale)
            if wider:  # returned in the wider dtype (bfloat16 is read back as float32)
                assert got.dtype == (np.float32 if wider == "bfloat16" else FLOATS[wider]), (name, what, got.dtype)
    if dtype_name == q.dtype.name and dtype_name in ("float32", "float64"):
        import torch
        import torch.nn.functional as F
        with np.errstate(divide="ignore"):
            log_q = np.log(q)
        builtin = F.kl_div(torch.from_numpy(log_q.copy()), torch.from_numpy(p.copy()),
                           reduction="none").sum(-1).numpy() / divisor
        close_to_builtin(call(BACKENDS[1], "kl_divergence", p, q, base=base), builtin, dtype_name=dtype_name,
                         scale=scale, what=f"torch kl vs F.kl_div {dtypes}")


@fuzz
@given(st.sampled_from(list(FLOATS)), hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=4),
       st.sampled_from([None, 2]), st.data())
def test_joint_measures(dtype_name, shape, base, data):
    """joint_entropy, conditional_entropy, mutual_information of tables with zeros and subnormals."""
    flat = data.draw(probability_vectors((*shape[:-2], shape[-2] * shape[-1]), dtype_name))
    p_xy = flat.reshape(shape)
    p = p_xy.astype(np.float64).astype(LD)
    divisor = LD(1) if base is None else np.log(LD(base))
    p_x, p_y = p.sum(axis=-1, keepdims=True), p.sum(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h_xy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(axis=(-2, -1))
        h_y_x = -np.where(p > 0, p * np.log(np.where(p > 0, p / p_x, 1)), 0).sum(axis=(-2, -1))
        mi = np.where(p > 0, p * np.log(np.where(p > 0, p / (p_x * p_y), 1)), 0).sum(axis=(-2, -1))
    expected = {"joint_entropy": h_xy, "conditional_entropy": np.maximum(h_y_x, 0),
                "mutual_information": np.maximum(mi, 0)}
    for fn, value in expected.items():
        for name, got in each_backend(fn, p_xy, base=base):
            close(got, value / divisor, dtype_name=dtype_name, scale=max(float(h_xy.max(initial=1.0)), 1.0),
                  rounds_to=dtype_name, what=f"{name} {fn} {dtype_name} {shape}")
            assert np.all(got >= 0), (name, fn, got)


# ---- regression losses ------------------------------------------------------------------

@fuzz
@given(st.sampled_from(list(FLOATS)), hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4),
       st.data())
def test_mse_and_gaussian_nll(dtype_name, shape, data):
    """Magnitudes from subnormal to the dtype's max (a square beyond the loss dtype's max is inf;
    a mean of finite items is finite); variance from subnormal to the max, scalar or per element."""
    dtype = FLOATS[dtype_name]
    unit = hnp.arrays(np.float64, shape, elements=st.floats(-1, 1))
    y, mean = (scaled(data.draw(unit), data.draw(scales(dtype_name)), dtype_name) for _ in range(2))
    var_shape = data.draw(st.sampled_from([(), shape]))
    variance = scaled(np.abs(data.draw(hnp.arrays(np.float64, var_shape, elements=st.floats(1e-3, 1)))),
                      data.draw(scales(dtype_name)), dtype_name)
    variance = np.where(variance > 0, variance, finfo(dtype_name).smallest_subnormal).astype(dtype)
    full = data.draw(st.booleans())
    reduction = data.draw(REDUCTION)
    y_ld, m_ld, v_ld = (a.astype(np.float64).astype(LD) for a in (y, mean, variance))
    sq = as_loss((y_ld - m_ld) ** 2, dtype_name)
    nll = as_loss(0.5 * ((y_ld - m_ld) ** 2 / v_ld + np.log(v_ld)) + (0.5 * np.log(2 * LD(np.pi)) if full else 0),
                  dtype_name)
    nll = np.broadcast_to(nll, shape)
    scale = max(float(np.abs(sq).max(initial=1.0)), 1.0)
    for name, got in each_backend("mean_squared_error", y, mean, reduction=reduction):
        close(got, reduce_items(sq, reduction), dtype_name=dtype_name, scale=scale,
              what=f"{name} MSE {dtype_name} {shape} {reduction}")
    for name, got in each_backend("gaussian_nll", y, mean, variance, full=full, reduction=reduction):
        close(got, reduce_items(nll, reduction), dtype_name=dtype_name,
              scale=max(float(np.abs(np.where(np.isfinite(nll), nll, 0)).max(initial=1.0)), 1.0),
              what=f"{name} gaussian_nll {dtype_name} {shape} var{var_shape} full={full} {reduction}")


# ---- focal losses -----------------------------------------------------------------------

@fuzz
@given(logits_batches(max_classes=4, any_leading_shape=True), st.booleans(), st.data())
def test_focal_losses(batch, from_logits, data):
    """binary and categorical focal CE: gamma 0 to 5, alpha, smoothing, logits to the max or
    probabilities with exact 0 and 1."""
    dtype_name, z = batch
    dtype = FLOATS[dtype_name]
    k = z.shape[-1]
    gamma = data.draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0]))
    smoothing = data.draw(st.sampled_from([0.0, 0.1]))
    reduction = data.draw(REDUCTION)
    z_ld = z.astype(np.float64).astype(LD)
    scale = float(np.abs(z.astype(np.float64)).max(initial=1.0)) if from_logits else 1000.0

    # binary: y in {0, 1/4, 1}
    y = data.draw(hnp.arrays(np.float64, z.shape, elements=st.sampled_from([0.0, 0.25, 1.0]))).astype(dtype)
    alpha = data.draw(st.none() | st.sampled_from([0.0, 0.25, 1.0]))
    t = y.astype(np.float64).astype(LD) * (1 - LD(smoothing)) + LD(smoothing) / 2
    if from_logits:
        y_pred = z
        log_p, log_not_p = -np.logaddexp(LD(0), -z_ld), -np.logaddexp(LD(0), z_ld)
    else:
        y_pred = data.draw(hnp.arrays(np.float64, z.shape, elements=st.sampled_from([0.0, 1.0]) | st.floats(0, 1)))
        y_pred = y_pred.astype(dtype)
        with np.errstate(divide="ignore"):
            log_p, log_not_p = np.log(y_pred.astype(np.float64).astype(LD)), np.log1p(-y_pred.astype(LD))
    p, not_p = np.exp(log_p), np.exp(log_not_p)
    miss = (t * not_p + (1 - t) * p) ** LD(gamma) if gamma else LD(1)
    bce = times(t, -log_p) + times(1 - t, -log_not_p)
    elems = times(miss, bce)
    if alpha is not None:
        elems = times(alpha * t + (1 - alpha) * (1 - t), elems)
    expected = reduce_items(as_loss(elems, dtype_name), reduction)
    what = f"binary focal {dtype_name} (γ={gamma}, α={alpha}, ε={smoothing}, from_logits={from_logits}, {reduction})"
    for name, got in each_backend("binary_focal_cross_entropy", y, y_pred, gamma=gamma, alpha=alpha,
                                  from_logits=from_logits, label_smoothing=smoothing, reduction=reduction):
        close(got, expected, dtype_name=dtype_name, scale=scale * (max(1, z.size) if reduction == "sum" else 1),
              what=f"{name} {what}", or_else=reduce_items(elems, reduction) if reduction != "none" else None)

    # categorical
    target_y = data.draw(probability_vectors(z.shape, dtype_name))
    alpha_c = data.draw(st.none() | hnp.arrays(np.float64, (k,), elements=st.sampled_from([0.0, 0.25, 1.0, 2.0])))
    target = target_y.astype(np.float64).astype(LD) * (1 - LD(smoothing)) + LD(smoothing) / k
    if from_logits:
        y_pred = z
        log_q = log_softmax_ld(z)
        q = np.exp(log_softmax_ld(z))
        others = np.stack([q[..., [j for j in range(k) if j != c]].sum(axis=-1) for c in range(k)],
                          axis=-1)  # 1 - q without cancellation
    else:
        y_pred = data.draw(probability_vectors(z.shape, dtype_name))
        q = y_pred.astype(np.float64).astype(LD)
        with np.errstate(divide="ignore"):
            log_q = np.log(q)
        others = np.clip(1 - q, 0, 1)
    miss = others ** LD(gamma) if gamma else LD(1)
    terms = times(miss, times(target, -log_q))
    if alpha_c is not None:
        terms = times(alpha_c.astype(LD), terms)
    expected = reduce_items(as_loss(terms.sum(axis=-1), dtype_name), reduction)
    what = (f"categorical focal {dtype_name} (γ={gamma}, α={alpha_c}, ε={smoothing}, from_logits={from_logits}, "
            f"{reduction})")
    n_rows = max(1, z.size // max(k, 1))
    for name, got in each_backend("categorical_focal_cross_entropy", target_y, y_pred, gamma=gamma, alpha=alpha_c,
                                  from_logits=from_logits, label_smoothing=smoothing, reduction=reduction):
        close(got, expected, dtype_name=dtype_name, scale=2 * scale * (n_rows if reduction == "sum" else 1),
              what=f"{name} {what}",
              or_else=reduce_items(terms.sum(axis=-1), reduction) if reduction != "none" else None)


# ---- perplexity, gradients, smoothing, Brier ----------------------------------------------

@fuzz
@given(logits_batches(any_leading_shape=True, max_classes=5), st.data())
def test_perplexity_gradients_smoothing_and_brier(batch, data):
    """perplexity (exp of the mean NLL: inf only where that passes the loss dtype's max), the two
    closed-form gradients, smooth_labels and the Brier score."""
    dtype_name, z = batch
    k = z.shape[-1]
    scale = float(np.abs(z.astype(np.float64)).max(initial=1.0))
    ignore_index = data.draw(st.sampled_from([None, -1]))
    labels = data.draw(hnp.arrays(np.int64, z.shape[:-1], elements=st.integers(0 if ignore_index is None else -1,
                                                                                k - 1)))
    kept = labels != ignore_index
    log_q = log_softmax_ld(z)
    nll = -np.take_along_axis(log_q, np.where(kept, labels, 0)[..., None], axis=-1)[..., 0]
    mean_nll = np.where(kept, as_loss(nll, dtype_name), 0).sum() / kept.sum() if kept.sum() else LD(0)
    out_max = float(np.finfo(np.float64 if dtype_name == "float64" else np.float32).max)
    if not kept.any():
        for backend in backends_for(dtype_name):  # no token to average: a named error
            with pytest.raises(ValueError, match="^labels"):
                call(backend, "perplexity", labels, z, ignore_index=ignore_index)
    for name, got in each_backend("perplexity", labels, z, ignore_index=ignore_index) if kept.any() else ():
        what = f"{name} perplexity {dtype_name} (ignore={ignore_index}, mean NLL {mean_nll})"
        assert not np.isnan(got), what
        if mean_nll > np.log(LD(out_max)) + 1e-3:
            assert got == np.inf, what
        elif got != np.inf or mean_nll < np.log(LD(out_max)) - 64 * compute_eps(dtype_name) * scale:
            close(np.log(np.float64(got)), mean_nll, dtype_name=dtype_name, scale=scale, what=what)

    y = data.draw(probability_vectors(z.shape, dtype_name))
    softmax = np.exp(log_softmax_ld(z))
    for name, got in each_backend("softmax_cross_entropy_grad", y, z):
        close(got, softmax - y.astype(np.float64), dtype_name=dtype_name, rounds_to=dtype_name,
              what=f"{name} softmax CE grad {dtype_name}")
    b = data.draw(hnp.arrays(np.float64, z.shape, elements=BINARY_TARGET)).astype(z.dtype)
    for name, got in each_backend("sigmoid_cross_entropy_grad", b, z):
        close(got, special.expit(z.astype(np.float64)) - b.astype(np.float64), dtype_name=dtype_name,
              rounds_to=dtype_name, what=f"{name} sigmoid CE grad {dtype_name}")
    epsilon = data.draw(SMOOTHING)
    for name, got in each_backend("smooth_labels", y, epsilon=epsilon):
        close(got, (1 - epsilon) * y.astype(np.float64) + epsilon / k, dtype_name=dtype_name, rounds_to=dtype_name,
              what=f"{name} smooth_labels {dtype_name} ε={epsilon}")
    reduction = data.draw(REDUCTION)
    safe = np.where(kept, labels, 0)
    brier = ((y.astype(np.float64).astype(LD) - np.eye(k)[safe]) ** 2).sum(axis=-1)
    for name, got in each_backend("brier_score", safe, y, reduction=reduction):
        close(got, reduce_items(as_loss(brier, dtype_name), reduction), dtype_name=dtype_name,
              scale=max(1, brier.size) if reduction == "sum" else 1, what=f"{name} Brier {dtype_name} {reduction}")
