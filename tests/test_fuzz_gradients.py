"""Fuzzed gradients of the cross-entropy losses: torch autograd and TF GradientTape against a
float64 oracle, and no NaN gradient where the loss is finite (see tests/fuzzing.py).

The oracle is torch float64 autograd of the straightforward formula of each loss, written here
(``ORACLES``) from the documented conventions, independently of xentlib: binary and
categorical CE (logits or probabilities, smoothing, ``pos_weight``), sparse CE (logits or
probabilities, smoothing, ``class_weight``, ``ignore_index``) and both focal losses (``gamma``,
``alpha``, smoothing). The limits of the conventions are written into the formula the usual
way (``torch.where`` before the log): a term whose coefficient is 0 adds 0 to the loss
and to its gradient also where its log is infinite (``0 log 0 = 0``), and ``x ** gamma`` has gradient 0 at ``x = 0``
(where it multiplies a cross-entropy that is 0 there). Inputs: 16-bit to float64, 0-d and empty
shapes, logits from the smallest subnormal to the dtype's maximum, probabilities exactly 0 and 1
and subnormal, targets 0, 1 and soft. Checked: the gradient with respect to ``y_pred`` (and
``y_true`` for binary and categorical CE, whose targets are differentiable) has the prediction's
dtype, is not NaN wherever its item's loss is finite, and is within a few ulps of the compute
dtype of the oracle's where the oracle is not NaN (an entry beyond the gradient dtype's max may
be inf); at a probability of exactly 0 or 1 the gradient with respect to a target is only
checked not to be NaN (its one-sided derivative is infinite; 0 and inf are both conventions).

Cost at ``FUZZ_CI_EXAMPLES=10000`` (``CI=true``), measured on one core (niced, TF and torch on one
thread): test_loss_gradients_match_the_float64_oracle 204 s (at 2,000: 43 s), most of it TF's eager
GradientTape.
"""
from __future__ import annotations

import mpmath
import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fuzzing import (  # noqa: F401 (fresh_tf_hot_paths: an autouse fixture)
    BACKENDS,
    FLOATS,
    close,
    finfo,
    fresh_tf_hot_paths,
    fuzz,
    loss_dtype,
    loss_max,
    probability_vectors,
    scaled,
    scales,
    to_backend,
)

# ---- the float64 oracle: straightforward formulas, torch autograd -----------------------------


def _times(c, v):
    """c v with 0 inf = 0, and no gradient through that infinite v (d/dc is v elsewhere)."""
    return c * torch.where((c == 0) & torch.isinf(v), 0.0, v)


def _xlogy(c, q):
    """c log q with 0 log 0 = 0, and no gradient through that log (d/dc is log q elsewhere)."""
    return c * torch.log(torch.where((c == 0) & (q == 0), 1.0, q))


def _power(x, gamma):
    """x ** gamma (gamma 0: 1), gradient 0 at x = 0 (it multiplies a CE that is 0 there)."""
    if not gamma:
        return torch.ones_like(x)
    zero = x <= 0
    return torch.where(zero, 0.0, torch.where(zero, 1.0, x) ** gamma)


def _binary_ce(y, z, o):
    eps, w = o["label_smoothing"], 1.0 if o.get("pos_weight") is None else torch.from_numpy(o["pos_weight"])
    t, not_t = y * (1 - eps) + eps / 2, (1 - y) * (1 - eps) + eps / 2
    if o["from_logits"]:
        return -(_times(w * t, F.logsigmoid(z)) + _times(not_t, F.logsigmoid(-z)))
    return -(_xlogy(w * t, z) + _xlogy(not_t, 1 - z))


def _categorical_ce(y, z, o):
    eps, k = o["label_smoothing"], z.shape[-1]
    t = y * (1 - eps) + eps / k
    terms = _times(t, -F.log_softmax(z, dim=-1)) if o["from_logits"] else -_xlogy(t, z)
    return terms.sum(-1)


def _sparse_targets(labels, k, o):
    """(targets t_c = (1 - eps) w_y [c = y] + eps w_c / K of the kept items, summed label weights)."""
    eps, ignore = o["label_smoothing"], o.get("ignore_index")
    w = torch.ones(k, dtype=torch.float64) if o.get("class_weight") is None else torch.from_numpy(o["class_weight"])
    kept = torch.ones(labels.shape, dtype=torch.bool) if ignore is None else labels != ignore
    safe = torch.where(kept, labels, 0)
    w_y = torch.where(kept, w[safe], 0.0)
    t = (1 - eps) * w_y[..., None] * F.one_hot(safe, k).double() + eps * w / k
    return torch.where(kept[..., None], t, 0.0), w_y.sum()


def _sparse_ce(labels, z, o):
    t, _ = _sparse_targets(labels, z.shape[-1], o)
    terms = _times(t, -F.log_softmax(z, dim=-1)) if o["from_logits"] else -_xlogy(t, z)
    return terms.sum(-1)


def _binary_focal(y, z, o):
    eps, gamma, alpha = o["label_smoothing"], o["gamma"], o["alpha"]
    t = y * (1 - eps) + eps / 2
    if o["from_logits"]:
        log_p, log_not_p = F.logsigmoid(z), F.logsigmoid(-z)
        p, not_p = torch.exp(log_p), torch.exp(log_not_p)
        ce = -(_times(t, log_p) + _times(1 - t, log_not_p))
    else:
        p, not_p = z, 1 - z
        ce = -(_xlogy(t, z) + _xlogy(1 - t, 1 - z))
    elems = _power(t * not_p + (1 - t) * p, gamma) * ce
    return elems if alpha is None else _times(alpha * t + (1 - alpha) * (1 - t), elems)


def _categorical_focal(y, z, o):
    eps, gamma, alpha, k = o["label_smoothing"], o["gamma"], o["alpha"], z.shape[-1]
    t = y * (1 - eps) + eps / k
    if o["from_logits"]:
        log_q = F.log_softmax(z, dim=-1)
        others = (torch.exp(log_q)[..., None, :] * (1 - torch.eye(k, dtype=z.dtype))).sum(-1)  # 1 - q_c
        terms = _times(t, -log_q)
    else:
        others, terms = 1 - z, -_xlogy(t, z)
    terms = _power(others, gamma) * terms
    if alpha is not None:
        terms = _times(torch.from_numpy(np.asarray(alpha, np.float64)), terms)
    return terms.sum(-1)


ORACLES = {  # function -> (per-item oracle, elementwise items, targets differentiable)
    "binary_cross_entropy": (_binary_ce, True, True),
    "categorical_cross_entropy": (_categorical_ce, False, True),
    "sparse_categorical_cross_entropy": (_sparse_ce, False, False),
    "binary_focal_cross_entropy": (_binary_focal, True, True),
    "categorical_focal_cross_entropy": (_categorical_focal, False, True),
}


def _categorical_focal_from_logits_exact(y, z, o):
    r"""(items, d loss / d z, d loss / d y) of categorical focal CE from logits in 50-digit mpmath,
    from the textbook derivative: :math:`\partial_{z_j} = \sum_c t_c (\delta_{cj} - q_j) (1 - q_c)^\gamma
    (\gamma q_c \log q_c / (1 - q_c) - 1)`, :math:`\partial_{t_c} = (1 - q_c)^\gamma (-\log q_c)`, with
    :math:`1 - q_c = \sum_{j \ne c} q_j`. float64 autograd of the formula cancels beyond logits of about 30
    (log_softmax's backward subtracts softmax times a large upstream: z [0, 1.7e38], y [1, 0], gamma .5
    gives d/dz_1 0 where it is 1)."""
    eps, gamma, k = o["label_smoothing"], o["gamma"], z.shape[-1]
    alpha = np.broadcast_to(np.asarray(1.0 if o["alpha"] is None else o["alpha"], np.float64), (k,))
    rows_y, rows_z = y.astype(np.float64).reshape(-1, k), z.astype(np.float64).reshape(-1, k)
    items, g_z, g_t = np.zeros(len(rows_z)), np.zeros(rows_z.shape), np.zeros(rows_z.shape)
    with mpmath.workdps(50):
        for i, (yr, zr) in enumerate(zip(rows_y, rows_z)):
            top = max(mpmath.mpf(float(v)) for v in zr)
            zm = [mpmath.mpf(float(v)) - top for v in zr]  # exact; unshifted 1e308 + log 2 needs 308 digits
            log_total = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zm))
            q = [mpmath.exp(v - log_total) for v in zm]
            t = [mpmath.mpf(float(v)) * (1 - mpmath.mpf(eps)) + mpmath.mpf(eps) / k for v in yr]
            rest = [mpmath.fsum(q[j] for j in range(k) if j != c) for c in range(k)]  # 1 - q_c
            log_q = [v - log_total for v in zm]
            miss = [r ** gamma if gamma else mpmath.mpf(1) for r in rest]
            coef = [alpha[c] * t[c] * miss[c] * ((gamma * q[c] * log_q[c] / rest[c] if rest[c] else 0) - 1)
                    for c in range(k)]
            items[i] = float(mpmath.fsum(alpha[c] * t[c] * miss[c] * -log_q[c] for c in range(k)))
            total = mpmath.fsum(coef)
            g_z[i] = [float(coef[j] - q[j] * total) for j in range(k)]
            g_t[i] = [float(alpha[c] * miss[c] * -log_q[c] * (1 - mpmath.mpf(eps))) for c in range(k)]
    n = len(rows_z) if o["reduction"] == "mean" else 1
    if n:
        g_z, g_t = g_z / n, g_t / n
    return items.reshape(z.shape[:-1]), g_z.reshape(z.shape), g_t.reshape(y.shape)


def oracle_gradients(fn, y, pred, o):
    """(items, d loss / d pred, d loss / d y) in float64: the inputs' exact values, torch autograd
    (categorical focal CE from logits: exact, see :func:`_categorical_focal_from_logits_exact`)."""
    if fn == "categorical_focal_cross_entropy" and o["from_logits"] and pred.size:
        return _categorical_focal_from_logits_exact(y, pred, o)
    per_item, _, y_differentiable = ORACLES[fn]
    pred_t = torch.from_numpy(pred.astype(np.float64)).requires_grad_()
    if fn == "sparse_categorical_cross_entropy":
        y_t = torch.from_numpy(y)
        items = per_item(y_t, pred_t, o)
        k = pred.shape[-1]
        denominator = _sparse_targets(y_t, k, o)[1]
        loss = (items.sum() if o["reduction"] != "mean" else
                items.sum() / denominator if denominator > 0 else None)
    else:
        y_t = torch.from_numpy(y.astype(np.float64)).requires_grad_(y_differentiable)
        items = per_item(y_t, pred_t, o)
        loss = (items.sum() if o["reduction"] != "mean" else
                items.sum() / items.numel() if items.numel() else None)
    if loss is None:  # a mean over nothing: 0, whatever the inputs
        return items.detach().numpy(), np.zeros(pred.shape), np.zeros(y.shape) if y_differentiable else None
    wrt = [pred_t, y_t] if y_differentiable else [pred_t]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    return (items.detach().numpy(), grads[0].numpy(),
            grads[1].numpy() if y_differentiable else None)


# ---- the backends' gradients --------------------------------------------------------------

def backend_gradients(backend, fn, y, pred, o, y_differentiable):
    """(d loss / d pred, d loss / d y or None) of ``backend.xl.<fn>``; a 'none' loss is summed."""
    kwargs = {k: (to_backend(backend, v) if isinstance(v, np.ndarray) else v) for k, v in o.items()}
    if backend.name == "torch":
        pred_t = to_backend(backend, pred).requires_grad_()
        y_t = to_backend(backend, y)
        if y_differentiable:
            y_t.requires_grad_()
        loss = getattr(backend.xl, fn)(y_t, pred_t, **kwargs).sum()
        grads = torch.autograd.grad(loss, [pred_t, y_t] if y_differentiable else [pred_t], allow_unused=True)
    else:
        import tensorflow as tf
        pred_t, y_t = to_backend(backend, pred), to_backend(backend, y)
        with tf.GradientTape() as tape:
            tape.watch(pred_t)
            if y_differentiable:
                tape.watch(y_t)
            loss = tf.reduce_sum(getattr(backend.xl, fn)(y_t, pred_t, **kwargs))
        grads = tape.gradient(loss, [pred_t, y_t] if y_differentiable else [pred_t])
    grads = [None if g is None else backend.numpy(g) for g in grads]
    return grads[0], (grads[1] if y_differentiable else None)


# ---- the property -------------------------------------------------------------------------

ALPHA = st.sampled_from([0.0, 0.25, 1.0, 2.0])
GRAD_WEIGHT = st.sampled_from([0.0, 0.25, 1.0, 3.0, 1e4])  # exact in every dtype's compute dtype


@st.composite
def gradient_problems(draw):
    """(fn, dtype name, y_true, y_pred, options): every option of the five losses."""
    fn = draw(st.sampled_from(sorted(ORACLES)))
    elementwise = ORACLES[fn][1]
    dtype_name = draw(st.sampled_from(sorted(FLOATS)))
    dtype, info = FLOATS[dtype_name], finfo(dtype_name)
    from_logits = draw(st.booleans())
    if elementwise:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    else:
        shape = (*draw(hnp.array_shapes(min_dims=0, max_dims=1, min_side=0, max_side=3)), draw(st.integers(1, 4)))
    o = dict(from_logits=from_logits, label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
             reduction=draw(st.sampled_from(["mean", "sum", "none"])))
    if from_logits:
        unit = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1)))
        pred = np.asarray(scaled(unit, draw(scales(dtype_name)), dtype_name))
    elif elementwise:
        extremes = st.sampled_from([0.0, 1.0, float(info.smallest_subnormal), float(info.tiny),
                                    1 - float(info.eps) / 2, 0.5]) | st.floats(0, 1)
        pred = draw(hnp.arrays(np.float64, shape, elements=extremes)).astype(dtype)
    else:
        pred = draw(probability_vectors(shape, dtype_name))
    if fn == "sparse_categorical_cross_entropy":
        o["ignore_index"] = draw(st.sampled_from([None, -1]))
        low = 0 if o["ignore_index"] is None else -1
        y = draw(hnp.arrays(np.int64, shape[:-1], elements=st.integers(low, shape[-1] - 1)))
        o["class_weight"] = draw(st.none() | hnp.arrays(np.float64, shape[-1:], elements=GRAD_WEIGHT))
    elif elementwise:
        targets = st.sampled_from([0.0, 1.0, 0.25, 0.5]) | st.floats(0, 1)
        y = draw(hnp.arrays(np.float64, shape, elements=targets)).astype(dtype)
    else:
        y = draw(probability_vectors(shape, dtype_name))
    if fn == "binary_cross_entropy":
        pw_shape = draw(st.sampled_from([None, ()] + ([shape[-1:]] if shape else [])))
        o["pos_weight"] = None if pw_shape is None else draw(hnp.arrays(np.float64, pw_shape, elements=GRAD_WEIGHT))
    if "focal" in fn:
        o["label_smoothing"] = min(o["label_smoothing"], 0.5)
        o["gamma"] = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0]))
        o["alpha"] = (draw(st.none() | st.sampled_from([0.0, 0.25, 1.0])) if elementwise else
                      draw(st.none() | hnp.arrays(np.float64, shape[-1:], elements=ALPHA)))
    return fn, dtype_name, np.asarray(y), np.asarray(pred), o


def gradient_scales(fn, dtype_name, y, pred, o, items):
    """What a few ulps of the compute dtype are relative to, per entry of d/d pred and d/d y:
    the size of the terms that make the gradient (its value may cancel to 0 between them)."""
    elementwise = ORACLES[fn][1]
    n = max(1, items.size)
    norm = 1.0 / n if o["reduction"] == "mean" else 1.0
    weights = [1.0, *np.ravel(o.get("pos_weight") if o.get("pos_weight") is not None else [])]
    if fn == "sparse_categorical_cross_entropy" and o["reduction"] == "mean":
        w = np.ones(pred.shape[-1]) if o["class_weight"] is None else o["class_weight"]
        kept = np.ones(y.shape, bool) if o["ignore_index"] is None else y != o["ignore_index"]
        denominator = float(w[np.where(kept, y, 0)][kept].sum())
        norm = 1.0 / denominator if denominator else 0.0
    if o.get("class_weight") is not None:
        weights += list(o["class_weight"])
    if "focal" in fn and o["alpha"] is not None:
        weights += list(np.ravel(np.abs(o["alpha"])) + 1)
    unit = norm * max(weights) * (1 + o.get("gamma", 0.0)) * 4
    p = pred.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if o["from_logits"]:
            s_pred = np.full(pred.shape, unit)
            log_terms = (np.logaddexp(0, -p) + np.logaddexp(0, p) if elementwise
                         else np.abs(p).max(axis=-1, keepdims=True, initial=0.0) * 2 + np.log(p.shape[-1]) + 1)
        else:
            logs = np.minimum(np.nan_to_num(-np.log(p), posinf=1500) + np.nan_to_num(-np.log1p(-p), posinf=1500), 1500)
            t = y.astype(np.float64) if fn != "sparse_categorical_cross_entropy" else 1.0
            inverse = (np.where(p > 0, 1 / p, np.where(np.asarray(t) > 0, np.inf, 0.0))
                       + (np.where(p < 1, 1 / (1 - p), np.inf) if elementwise else 0))
            s_pred = unit * (1 + o.get("gamma", 0.0) * logs) * (1 + inverse)
            log_terms = logs + 1
    s_y = unit * log_terms
    return norm, (np.broadcast_to(np.nan_to_num(s_pred, nan=0.0, posinf=np.inf), pred.shape),  # 0 x inf: 0
            np.broadcast_to(np.nan_to_num(s_y, nan=0.0, posinf=np.inf), pred.shape))


@fuzz
@given(gradient_problems())
def test_loss_gradients_match_the_float64_oracle(problem):
    """d loss / d y_pred (and d / d y_true) of binary, categorical, sparse and both focal CEs in
    torch and TF: the oracle's where it is not NaN, never NaN where the item's loss is finite."""
    fn, dtype_name, y, pred, o = problem
    _, elementwise, y_differentiable = ORACLES[fn]
    items, g_pred, g_y = oracle_gradients(fn, y, pred, o)
    with np.errstate(over="ignore", invalid="ignore"):
        finite_items = np.isfinite(np.asarray(items, np.float64).astype(loss_dtype(dtype_name)))
    finite = finite_items if elementwise else np.broadcast_to(finite_items[..., None], pred.shape)
    norm, (s_pred, s_y) = gradient_scales(fn, dtype_name, y, pred, o, items)
    shown = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in o.items()}
    what = f"{fn} {dtype_name} {shown} y={y.tolist()} y_pred={pred.tolist()}"
    grad_dtype = np.float32 if dtype_name == "bfloat16" else FLOATS[dtype_name]
    for backend in BACKENDS[1:]:
        got_pred, got_y = backend_gradients(backend, fn, y, pred, o, y_differentiable)
        for name, got, expected, s, where in (("y_pred", got_pred, g_pred, s_pred, finite),
                                              ("y_true", got_y, g_y, s_y, finite)):
            if expected is None:
                continue
            label = f"{backend.name} d/d{name}: {what}"
            assert got is not None, f"{label}: no gradient"
            assert got.shape == expected.shape and got.dtype == grad_dtype, (label, got.shape, got.dtype)
            assert not np.isnan(got[where]).any(), f"{label}: NaN where the loss is finite: {got}"
            compared = where & ~np.isnan(expected)
            if name == "y_true" and not o["from_logits"]:
                compared &= (pred > 0) & (pred < 1) if elementwise else pred > 0  # log q finite
            # an item's gradient beyond the compute dtype's max is inf there, as an item is (the documented
            # rule), before the mean divides it (bfloat16 z -1.7e38, y 0, pos_weight 3: d/dy 2.5e38 = 5.1e38 / 2),
            # and d/dy before (1 - eps) multiplies it (-log q 4.2e38 beyond float32's max, eps 0.5: 2.1e38)
            reach = norm * (1 - o["label_smoothing"] if name == "y_true" else 1.0)
            with np.errstate(over="ignore", invalid="ignore"):
                compared &= ~(np.isinf(got) & (np.sign(got) == np.sign(expected))
                              & (np.abs(expected) >= loss_max(dtype_name) * reach))
            if compared.any():
                close(got[compared], expected[compared], dtype_name=dtype_name, scale=s[compared],
                      rounds_to=dtype_name, what=label)
