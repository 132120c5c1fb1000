r"""xentlib.numpy: the reference implementation of every formula in the book.

``from xentlib import numpy as xl`` gives the same names, with the same
signatures, as ``xentlib.torch`` and ``xentlib.tensorflow``; those backends are
tested against this one.

Conventions, shared by all three backends
-----------------------------------------
* **Class axis** is the last one (``axis=-1``), as in Keras, ``tf.nn`` and optax.
  PyTorch puts classes on axis 1 for ``(N, C, d1, ...)`` inputs: pass ``axis=1``
  to match it.
* **Logarithms** are natural (nats); information-theory functions take
  ``base=2`` for bits or ``base=10`` for bans.
* **Probabilities are exact**: :math:`0 \log 0 = 0`, and :math:`p > 0` where
  :math:`q = 0` gives :math:`+\infty`, as in SciPy (``xlogy``, ``rel_entr``).
  Keras instead clips probabilities to :math:`[10^{-7}, 1-10^{-7}]` and PyTorch's
  ``binary_cross_entropy`` clamps each log at :math:`-100`; to train, prefer
  ``from_logits=True``, which is exact *and* stable.
* **Dtypes**: float64 stays float64, float32 stays float32. float16 (and, where
  the backend has it, bfloat16) inputs are computed in float32; the building
  blocks return the input dtype, losses return float32 (as Keras does under
  mixed precision), because a loss easily exceeds float16's range. Two
  distributions of different dtypes (``cross_entropy(p, q)``) are computed and
  returned in the wider one, as NumPy promotes; a loss has its prediction's dtype.
* **Reductions**: ``'none'`` keeps one value per item, ``'sum'`` adds them,
  ``'mean'`` divides by the number of items, or, with ``class_weight`` or
  ``ignore_index``, by the summed weight of the kept items, as PyTorch does.
  A mean over zero kept items is 0 (as Keras; PyTorch returns NaN).
* **Weights** (``class_weight``, ``pos_weight``) enter in the compute dtype
  (float32 for float32 and 16-bit predictions), rounded to nearest; a positive
  weight never becomes 0 there (at least the dtype's smallest positive number,
  in TensorFlow its smallest normal: its kernels flush subnormals). A weight
  beyond float32's maximum with such predictions is refused, except
  ``class_weight`` with ``'mean'``, which is scaled by a power of two first
  (the weighted mean does not depend on the weights' scale).
* **Label smoothing** is never dropped: each positive share :math:`\varepsilon/K` of it
  (binary: :math:`\varepsilon/2`) is at least the compute dtype's smallest normal number
  (float32: :math:`1.2 \cdot 10^{-38}`, also for 16-bit inputs, and where targets and
  predictions differ in dtype), so a positive :math:`\varepsilon` is taken as at least
  :math:`K` (binary: 2) times it, in every loss that smooths and in ``smooth_labels``: the
  direction of the weights' convention. Rounded down (to 0, or to a subnormal, which
  TensorFlow flushes) a smoothed target meeting :math:`q = 0` would give a finite loss, where
  it is :math:`+\infty`. PyTorch and Keras just compute :math:`\varepsilon/K` in the dtype.
  (``smooth_labels`` returns its input's dtype: a float16 share below :math:`6 \cdot 10^{-8}`
  rounds to 0 there.)
* **Checks**: bad input raises ``ValueError``/``TypeError`` naming the argument.
  A distribution must sum to 1 within a tolerance set by its dtype
  (float64 :math:`10^{-6}`, float32 :math:`10^{-4}`, float16 :math:`10^{-2}`,
  bfloat16 :math:`2 \cdot 10^{-2}`); a probability may exceed 1 by as much (round-off).
  Losses need finite logits; the building blocks accept
  :math:`-\infty` (a masked class) but not NaN, and ``softmax``/``log_softmax``
  reject :math:`+\infty` and slices of only :math:`-\infty` (their result would be NaN).
  The data-dependent checks can be switched off with
  ``xentlib.value_checks(False)`` (see there).
"""
from __future__ import annotations

import numpy as np

from xentlib import _neutral
from xentlib import _validate as V
from xentlib._docs import public_names, shared
from xentlib._linear_numpy import linear_cross_entropy as linear_cross_entropy  # re-export: in __all__
from xentlib._numpy_ops import front_door as _fd

__all__ = public_names("numpy")


# ---- formula helpers -----------------------------------------------------------

def _compute(x):
    """Work in float32 for float16 inputs: float16 overflows at 65504."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _class_sum(x):
    """The sum over the last axis; in float64 where the float32 sum overflows (log-probabilities
    of logits near float32's maximum), though the loss, this sum over the classes, does not."""
    with np.errstate(over="ignore"):
        total = x.sum(axis=-1)
    if x.dtype == np.float32 and np.isinf(total).any():
        return x.sum(axis=-1, dtype=np.float64)
    return total


def _wide(x):
    """float32 as float64, for weighted item losses: ``w * loss`` (or a weighted sum over
    classes) can pass float32's maximum where the reduced result does not."""
    return x.astype(np.float64) if x.dtype == np.float32 else x


def _loss_dtype(x):
    return np.float32 if x.dtype == np.float16 else x.dtype


def _xlogy(x, y):
    r""":math:`x \log y` with :math:`0 \log y = 0` (also for :math:`y = 0`)."""
    with np.errstate(divide="ignore"):
        return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


def _times(weight, nll):
    """``weight * nll`` with ``0 * inf = 0``: a term of weight 0 adds nothing."""
    with np.errstate(invalid="ignore"):
        return np.where(weight == 0, 0.0, weight * nll)


def _scaled(x, term):
    """``x * term`` for ``x >= 0``, and ``term`` where it is infinite (``x`` > 0 there, or an
    underflow of a positive number)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(term), term, x * term)


def _reduce(per_item, reduction, denominator=None):
    if reduction == "none":
        return per_item
    # float32 items are summed in float64, so that a mean of finite losses stays finite.
    with np.errstate(over="ignore"):
        total = per_item.sum(dtype=np.float64 if per_item.dtype == np.float32 else None)
    if reduction == "sum":
        return total.astype(per_item.dtype)
    count = per_item.size if denominator is None else denominator
    if np.isinf(total) and count:  # float64 items near its maximum: their sum overflows, not their mean
        total, count = (per_item / count).sum(dtype=np.float64), 1
    return (total / count if count else np.zeros_like(total)).astype(per_item.dtype)


def _shift_by_max(z, axis):
    """``(z - m, m)`` with ``m`` the maximum along ``axis``; every exponent of ``z - m`` is <= 0."""
    m = np.max(z, axis=axis, keepdims=True, initial=-np.inf)  # no classes: -inf, as torch and TF
    m = np.where(np.isfinite(m), m, 0)  # rows of -inf: exp(-inf - 0) = 0, log 0 = -inf
    with np.errstate(over="ignore"):  # a spread beyond the dtype's max: -inf, whose exp is 0
        return z - m, m


def _logits_and_log_q(z, axis=-1):
    """``(z, log_softmax(z))``, both in float64 for float32 logits whose spread passes float32's
    maximum: a log-probability of -inf there, where the loss may still be finite (smoothing
    gives that class eps/K)."""
    log_q = log_softmax(z, axis=axis)
    if log_q.dtype == np.float32 and np.isneginf(log_q).any():
        z = z.astype(np.float64)
        log_q = log_softmax(z, axis=axis)
    return z, log_q


def _halved_rows(t, z):
    r""":math:`\sum_c t_c (\operatorname{lse}(z) - z_c)` (classes last) for float64 logits near its
    maximum, where a gap :math:`m - z_c` (a spread beyond the max) or the class sum overflows
    though the result need not: every term is halved, :math:`m/2 - z_c/2` cannot overflow, and
    the doubled half sum is inf only where the result passes the max."""
    m = z.max(axis=-1, keepdims=True)
    half_gap = m / 2 - z / 2
    with np.errstate(over="ignore"):
        log_s = np.log(np.exp(-2 * half_gap).sum(axis=-1))
        return 2 * ((t * half_gap).sum(axis=-1) + t.sum(axis=-1) * (log_s / 2))


def _finite_where_possible(rows, t, z):
    """``rows`` (from float64 logits ``z``, classes last), with the rows that overflowed redone by
    :func:`_halved_rows`; float32 logits are redone in float64 before (:func:`_logits_and_log_q`)."""
    if z.dtype != np.float64 or np.isfinite(rows).all():
        return rows
    return np.where(np.isfinite(rows), rows, _halved_rows(t(), z))  # NaN: a weight 0 times -log 0


def _smoothed(y, epsilon, axis):
    """Label smoothing in the compute dtype (16-bit targets are smoothed in float32)."""
    y = _compute(y)
    return (1 - epsilon) * y + epsilon / y.shape[axis] if epsilon else y


# ---- building blocks -----------------------------------------------------------

@shared
def logsumexp(x, *, axis=-1, keepdims=False):
    x, axis = _fd.one_array(x, axis=axis)
    V.check_bool("keepdims", keepdims)
    shifted, m = _shift_by_max(_compute(x), axis)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axis)
    with np.errstate(over="ignore"):  # float16: above 65504 is inf, as in torch
        return out.astype(x.dtype)


@shared
def softmax(x, *, axis=-1):
    x, axis = _fd.one_array(x, axis=axis, softmax=True)
    e = np.exp(_shift_by_max(_compute(x), axis)[0])
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


@shared
def log_softmax(x, *, axis=-1):
    x, axis = _fd.one_array(x, axis=axis, softmax=True)
    shifted = _shift_by_max(_compute(x), axis)[0]
    with np.errstate(divide="ignore", over="ignore"):  # float16: below -65504 is -inf, as in torch
        return (shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).astype(x.dtype)


@shared
def sigmoid(x):
    x, _ = _fd.one_array(x)
    return np.exp(-np.logaddexp(0, -_compute(x))).astype(x.dtype)


@shared
def log_sigmoid(x):
    x, _ = _fd.one_array(x)
    return (-np.logaddexp(0, -_compute(x))).astype(x.dtype)


# ---- information theory -----------------------------------------------------------

@shared
def entropy(p, *, axis=-1, base=None):
    p, axis, divisor = _fd.distribution_args(p, axis, base)
    pc = _compute(p)
    return (-_xlogy(pc, pc).sum(axis=axis) / divisor).astype(p.dtype)


@shared
def cross_entropy(p, q, *, axis=-1, base=None):
    p, q, axis, divisor = _fd.two_distributions(p, q, axis, base)
    return (-_xlogy(_compute(p), _compute(q)).sum(axis=axis) / divisor).astype(p.dtype)


@shared
def kl_divergence(p, q, *, axis=-1, base=None):
    p, q, axis, divisor = _fd.two_distributions(p, q, axis, base)
    pc, qc = _compute(p), _compute(q)
    with np.errstate(divide="ignore", invalid="ignore"):  # p = 0 entries are masked out
        terms = np.where(pc == 0, 0.0, pc * (np.log(np.where(pc == 0, 1.0, pc)) - np.log(qc)))
    return (terms.sum(axis=axis) / divisor).astype(p.dtype)


@shared
def joint_entropy(p_xy, *, base=None):
    p_xy, divisor = _fd.joint(p_xy, base)
    pc = _compute(p_xy)
    return (-_xlogy(pc, pc).sum(axis=(-2, -1)) / divisor).astype(p_xy.dtype)


@shared
def conditional_entropy(p_xy, *, base=None):
    p_xy, divisor = _fd.joint(p_xy, base)
    pc = _compute(p_xy)
    p_x = pc.sum(axis=-1, keepdims=True)
    h = -_xlogy(pc, pc / np.where(p_x == 0, 1.0, p_x)).sum(axis=(-2, -1))
    return (np.maximum(h, 0.0) / divisor).astype(p_xy.dtype)


@shared
def mutual_information(p_xy, *, base=None):
    p_xy, divisor = _fd.joint(p_xy, base)
    pc = _compute(p_xy)
    product = pc.sum(axis=-1, keepdims=True) * pc.sum(axis=-2, keepdims=True)
    mi = _xlogy(pc, pc / np.where(product == 0, 1.0, product)).sum(axis=(-2, -1))
    return (np.maximum(mi, 0.0) / divisor).astype(p_xy.dtype)


# ---- label smoothing ------------------------------------------------------------------

@shared
def smooth_labels(y, epsilon, *, axis=-1):
    y, epsilon, axis = _fd.smoothing(y, epsilon, axis)
    return _smoothed(y, epsilon, axis).astype(y.dtype)


# ---- losses -------------------------------------------------------------------------

@shared
def categorical_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                              axis=-1, reduction="mean"):
    y_true, y_pred, label_smoothing, axis = _fd.categorical(
        y_true, y_pred, from_logits, label_smoothing, axis, reduction)
    target = _smoothed(y_true, label_smoothing, axis)
    if from_logits:
        z, log_q = _logits_and_log_q(_compute(y_pred), axis)
        per_row = _times(target, -log_q).sum(axis=axis)  # 0 log 0 = 0
        per_row = _finite_where_possible(per_row, lambda: np.moveaxis(target, axis, -1), np.moveaxis(z, axis, -1))
    else:
        per_row = -_xlogy(target, _compute(y_pred)).sum(axis=axis)
    with np.errstate(over="ignore"):  # from float64 (see _logits_and_log_q): beyond float32's max is inf
        return _reduce(per_row, reduction).astype(_loss_dtype(y_pred))


@shared
def sparse_categorical_cross_entropy(labels, y_pred, *, from_logits=False, label_smoothing=0.0,
                                     ignore_index=None, class_weight=None, axis=-1,
                                     reduction="mean"):
    args = _fd.sparse(labels, y_pred, from_logits, label_smoothing, ignore_index, class_weight,
                      axis, reduction)
    return _sparse(*args, from_logits, reduction)


def _sparse(labels, y_pred, label_smoothing, ignore_index, weight, axis, num_classes,
            from_logits, reduction):
    z = np.moveaxis(_compute(y_pred), axis, -1)
    if from_logits:
        z, log_q = _logits_and_log_q(z)
    else:
        with np.errstate(divide="ignore"):
            log_q = np.log(z)
    if weight is not None:
        with np.errstate(over="ignore"):  # a weight beyond the compute dtype's range: inf
            weight = weight.astype(log_q.dtype)

    kept = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe = np.where(kept, labels, 0)
    nll = -np.take_along_axis(log_q, safe[..., None], axis=-1)[..., 0]
    w_y = np.ones_like(nll) if weight is None else weight[safe]
    w_y = np.where(kept, w_y, 0.0)
    if weight is not None:
        nll, w_y = _wide(nll), _wide(w_y)
    per_item = _times((1 - label_smoothing) * w_y, nll)
    if label_smoothing > 0:
        if weight is None:
            uniform = -_class_sum(log_q) / num_classes
        else:
            uniform = _times(_wide(weight), -_wide(log_q)).sum(axis=-1) / num_classes
        per_item = per_item + label_smoothing * np.where(kept, uniform, 0.0)
    if from_logits:  # every item as sum_c t_c (lse - z_c), with t_c = eps w_c / K + (1 - eps) w_y [c = y]
        def targets():
            t = np.broadcast_to(label_smoothing / num_classes * (1.0 if weight is None else _wide(weight)),
                                z.shape).copy()
            np.put_along_axis(t, safe[..., None], np.take_along_axis(t, safe[..., None], -1)
                              + ((1 - label_smoothing) * w_y)[..., None], -1)
            return np.where(kept[..., None], t, 0.0)
        per_item = _finite_where_possible(per_item, targets, z)
    per_item = np.where(kept, per_item, 0.0)  # also hides 0 * inf from ignored items
    with np.errstate(over="ignore"):  # weighted, from float64: beyond float32's max is inf
        return _reduce(per_item, reduction, denominator=w_y.sum()).astype(_loss_dtype(y_pred))


@shared
def binary_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                         pos_weight=None, reduction="mean"):
    y_true, y_pred, label_smoothing, pos_weight = _fd.binary(
        y_true, y_pred, from_logits, label_smoothing, pos_weight, reduction)
    y = _neutral.smoothed_binary(_compute(y_true), label_smoothing)
    w_pos = 1.0 if pos_weight is None else _compute(pos_weight)
    if from_logits:
        z = _compute(y_pred)
        log_p, log_not_p = -np.logaddexp(0, -z), -np.logaddexp(0, z)
        with np.errstate(over="ignore"):  # pos_weight * |z| beyond the dtype's max: inf
            per_elem = -(w_pos * y * log_p + (1 - y) * log_not_p)
    else:
        q = np.clip(_compute(y_pred), 0, 1)  # 1 + 1e-16 from round-off: log(1 - q) stays real
        positive = _xlogy(y, q) if pos_weight is None else _times(w_pos, _xlogy(y, q))  # 0 * -inf = 0
        not_y = _neutral.smoothed_binary(1 - _compute(y_true), label_smoothing)  # not 1 - y: see there
        per_elem = -(positive + _xlogy(not_y, 1 - q))
    return _reduce(per_elem, reduction).astype(_loss_dtype(y_pred))


@shared
def mean_squared_error(y_true, y_pred, *, reduction="mean"):
    y_true, y_pred = _fd.regression(y_true, y_pred, reduction)
    return _reduce((_compute(y_true) - _compute(y_pred)) ** 2, reduction).astype(_loss_dtype(y_pred))


@shared
def gaussian_nll(y_true, mean, variance=1.0, *, full=True, reduction="mean"):
    y_true, mean, variance = _fd.gaussian(y_true, mean, variance, full, reduction)
    var = _compute(variance)
    with np.errstate(over="ignore"):
        per_elem = (_neutral.squared_error_over_twice_variance(_compute(y_true), _compute(mean), np.sqrt(var))
                    + 0.5 * np.log(var))
    if full:
        per_elem = per_elem + 0.5 * np.log(2 * np.pi)
    per_elem = np.broadcast_to(per_elem, y_true.shape)
    return _reduce(per_elem, reduction).astype(_loss_dtype(mean))


@shared
def perplexity(labels, logits, *, ignore_index=None, axis=-1):
    return np.exp(_sparse(*_fd.perplexity(labels, logits, ignore_index, axis), True, "mean"))


@shared
def softmax_cross_entropy_grad(y_true, logits, *, axis=-1):
    y_true, logits, axis = _fd.gradient(y_true, logits, axis)
    return (softmax(_compute(logits), axis=axis) - _compute(y_true)).astype(logits.dtype)


@shared
def sigmoid_cross_entropy_grad(y_true, logits):
    y_true, logits, _ = _fd.gradient(y_true, logits)
    return (sigmoid(_compute(logits)) - _compute(y_true)).astype(logits.dtype)


# ---- focal losses ---------------------------------------------------------------------

def _log_one_minus_softmax(z, axis):
    r""":math:`\log(1 - \operatorname{softmax}(z)_c)` without cancellation: the log-sum-exp of
    the *other* classes (prefix and suffix log-sum-exps) minus the log-sum-exp of all, of logits
    shifted by their maximum (near 1e38 unshifted, :math:`+\log 2` is lost to rounding)."""
    z = np.moveaxis(z, axis, -1)
    z = z - z.max(axis=-1, keepdims=True, initial=-np.inf)
    pad = np.full(z.shape[:-1] + (1,), -np.inf, z.dtype)
    before = np.concatenate([pad, np.logaddexp.accumulate(z, axis=-1)[..., :-1]], axis=-1)
    after = np.concatenate([np.logaddexp.accumulate(z[..., ::-1], axis=-1)[..., ::-1][..., 1:],
                            pad], axis=-1)
    others = np.logaddexp(before, after) - logsumexp(z, axis=-1, keepdims=True)
    return np.moveaxis(others, -1, axis)


@shared
def binary_focal_cross_entropy(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False,
                               label_smoothing=0.0, reduction="mean"):
    y_true, y_pred, label_smoothing, gamma, alpha = _fd.binary_focal(
        y_true, y_pred, gamma, alpha, from_logits, label_smoothing, reduction)
    y, z = _neutral.smoothed_binary(_compute(y_true), label_smoothing), _compute(y_pred)
    with np.errstate(divide="ignore"):
        if from_logits:  # log(1 - p_t) = logaddexp(log y + log(1 - p), log(1 - y) + log p)
            log_p, log_not_p, not_y = -np.logaddexp(0, -z), -np.logaddexp(0, z), 1 - y
            miss = np.exp(gamma * np.logaddexp(np.log(y) + log_not_p, np.log1p(-y) + log_p))
        else:
            q = np.clip(z, 0, 1)
            not_y = _neutral.smoothed_binary(1 - _compute(y_true), label_smoothing)  # not 1 - y: see there
            log_p, log_not_p = np.log(q), np.log1p(-q)
            miss = _neutral.binary_miss(y, not_y, q) ** gamma
        ce = -(_times(y, log_p) + _times(not_y, log_not_p))
    per_elem = _neutral.binary_focal(_times, _scaled, _neutral.unfrozen, y, not_y, ce, miss if gamma else None, alpha)
    return _reduce(per_elem, reduction).astype(_loss_dtype(y_pred))


@shared
def categorical_focal_cross_entropy(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False,
                                    label_smoothing=0.0, axis=-1, reduction="mean"):
    y_true, y_pred, label_smoothing, axis, gamma, alpha = _fd.categorical_focal(
        y_true, y_pred, gamma, alpha, from_logits, label_smoothing, axis, reduction)
    target, z = _smoothed(y_true, label_smoothing, axis), _compute(y_pred)
    if from_logits:
        z, log_q = _logits_and_log_q(z, axis)
        miss = np.exp(gamma * _log_one_minus_softmax(z, axis))
    else:
        with np.errstate(divide="ignore"):
            log_q, miss = np.log(z), np.clip(1 - z, 0, 1) ** gamma
    alpha = None if alpha is None else _compute(np.asarray(alpha))
    terms = _neutral.categorical_focal(_times, _scaled, _neutral.unfrozen, _times(target, -log_q),
                                       miss if gamma else None, alpha)
    with np.errstate(over="ignore"):  # from float64 (see _logits_and_log_q): beyond float32's max is inf
        return _reduce(terms.sum(axis=axis), reduction).astype(_loss_dtype(y_pred))


# ---- calibration ----------------------------------------------------------------------

@shared
def expected_calibration_error(labels, probs, *, n_bins=10, binning="width", axis=-1):
    probs, count, gap = _fd.calibration(labels, probs, n_bins, binning, axis)
    return (gap.sum() / count.sum()).astype(_loss_dtype(probs))


@shared
def maximum_calibration_error(labels, probs, *, n_bins=10, binning="width", axis=-1):
    probs, count, gap = _fd.calibration(labels, probs, n_bins, binning, axis)
    return (gap / count).max().astype(_loss_dtype(probs))


@shared
def brier_score(labels, probs, *, axis=-1, reduction="mean"):
    labels, probs = _fd.scored(labels, probs, axis, reduction)
    p = _compute(probs)
    one_hot = np.arange(p.shape[-1]) == labels[..., None]
    return _reduce(((p - one_hot) ** 2).sum(axis=-1), reduction).astype(_loss_dtype(probs))


def _minimise_convex(slope_and_curvature, low, high, steps=200):
    """Minimiser in [low, high] of a convex function of one variable: Newton steps that stay
    inside a bracket, else bisection (geometric, for a scale)."""
    x = 1.0
    for _ in range(steps):
        slope, curvature = slope_and_curvature(x)
        if slope == 0:
            return x
        low, high = (low, x) if slope > 0 else (x, high)
        newton = x - slope / curvature if curvature > 0 else -1.0
        step = newton if low < newton < high else float(np.sqrt(low * high))
        if abs(step - x) <= 1e-12 * x:
            return step
        x = step
    return x


@shared
def fit_temperature(logits, labels, *, axis=-1):
    logits, labels, axis, _ = _fd.temperature(logits, labels, axis)
    z = np.moveaxis(logits.astype(np.float64), axis, -1)
    z = z.reshape(-1, z.shape[-1])
    z_y = np.take_along_axis(z, labels.reshape(-1, 1), axis=-1)[:, 0]

    def slope_and_curvature(beta):  # d/d(beta) and d2/d(beta)2 of the mean NLL at beta = 1/T
        p = softmax(beta * z)
        mean_z = (p * z).sum(axis=-1)
        return (mean_z - z_y).mean(), (p * (z - mean_z[:, None]) ** 2).sum(axis=-1).mean()

    beta = _minimise_convex(slope_and_curvature, low=0.01, high=100.0) if len(z) else 1.0
    return np.asarray(1.0 / beta, _loss_dtype(logits))[()]


# ---- optimisation -------------------------------------------------------------------

def gradient_descent(loss_and_grad, params, *, learning_rate=0.1, steps=100):
    r"""Plain (full-batch) gradient descent, the seeds' optimisation algorithm.

    .. math:: \theta_{t+1} = \theta_t - \eta \, \nabla_\theta L(\theta_t)

    ``loss_and_grad(params)`` returns ``(loss, grad)``: a finite scalar loss and
    ``grad`` shaped like ``params``. Returns the final parameters and the loss
    before every step (``steps`` values), so a caller can plot the training
    curve. A NaN or infinite loss, gradient or parameter stops it with a ``ValueError``
    that names ``loss_and_grad`` (or ``params``) and the fix.

    >>> from xentlib import numpy as xl
    >>> theta, losses = xl.gradient_descent(lambda t: ((t**2).sum(), 2 * t), [3.0],
    ...                                     learning_rate=0.25, steps=3)
    >>> theta.tolist(), losses.tolist()
    ([0.375], [9.0, 2.25, 0.5625])
    """
    if not callable(loss_and_grad):
        raise TypeError("loss_and_grad must be a callable params -> (loss, grad)")
    (theta,) = _fd.floats((params, "params"))
    if not np.isfinite(theta).all():
        raise ValueError("params must be finite (it contains NaN or inf); start from finite values, e.g. zeros")
    theta = theta.copy()
    learning_rate = V.check_positive("learning_rate", learning_rate)
    steps = V.check_int("steps", steps, minimum=0)
    losses = np.empty(steps, dtype=theta.dtype)
    for t in range(steps):
        returned = loss_and_grad(theta)
        if not (isinstance(returned, tuple) and len(returned) == 2):
            raise TypeError(
                f"loss_and_grad must return a pair (loss, grad); got {type(returned).__name__} "
                f"at step {t}")
        loss, grad = returned
        if loss is None or np.ndim(loss) != 0:
            raise TypeError(
                f"loss_and_grad must return a scalar loss; got {np.shape(loss) if loss is not None else None}"
                f" at step {t}. Reduce it, e.g. with .sum() or .mean()")
        grad = np.asarray(grad)
        if grad.shape != theta.shape:
            raise ValueError(
                f"loss_and_grad returned a gradient of shape {grad.shape} at step {t}, but params has shape "
                f"{theta.shape}; return one derivative per parameter")
        if not np.isfinite(loss):
            raise ValueError(
                f"loss_and_grad returned a loss of {float(loss)} at step {t}: the steps diverged (or the loss "
                f"is undefined there); lower learning_rate (now {learning_rate:g}), e.g. to {learning_rate / 10:g}")
        if not np.isfinite(grad).all():
            raise ValueError(
                f"loss_and_grad returned a gradient with NaN or inf at step {t} (the loss was {float(loss):g}); "
                f"check its gradient, or lower learning_rate (now {learning_rate:g}), e.g. to {learning_rate / 10:g}")
        losses[t] = loss
        with np.errstate(over="ignore", invalid="ignore"):
            theta = theta - learning_rate * grad
        if not np.isfinite(theta).all():
            raise ValueError(
                f"params became NaN or inf at step {t} (learning_rate x grad overflowed); lower learning_rate "
                f"(now {learning_rate:g}), e.g. to {learning_rate / 10:g}")
    return theta, losses
